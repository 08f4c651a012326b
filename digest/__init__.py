"""Paper digest: personalised email digests of new research papers.

The public API; everything else is private to the package.
"""

__version__ = "0.1.0"

from .config import Config, load_config  # noqa: E402
from .errors import ConfigError, DigestError, FetchError, ParseError, SourceError, StoreError  # noqa: E402
from .gather import gather  # noqa: E402
from .match import Matcher  # noqa: E402
from .models import Digest, DigestEntry, Listing, Paper, Section, SourceReport  # noqa: E402
from .store import Store  # noqa: E402

__all__ = [
    "Config", "ConfigError", "Digest", "DigestEntry", "DigestError", "FetchError", "Listing", "Matcher",
    "Paper", "ParseError", "Section", "SourceError", "SourceReport", "Store", "StoreError", "gather", "load_config", "__version__",
]
