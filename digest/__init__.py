"""Paper digest: personalised email digests of new research papers.

The public API; everything else is private to the package.
"""

__version__ = "0.1.0"

from .config import Config, load_config  # noqa: E402
from .errors import ConfigError, DigestError, FetchError, ParseError, SourceError, StoreError  # noqa: E402
from .gather import gather  # noqa: E402
from .models import Listing, Paper, SourceReport  # noqa: E402
from .store import Store  # noqa: E402

__all__ = [
    "Config", "ConfigError", "DigestError", "FetchError", "Listing", "Paper", "ParseError",
    "SourceError", "SourceReport", "Store", "StoreError", "gather", "load_config", "__version__",
]
