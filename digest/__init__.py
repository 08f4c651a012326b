"""Paper digest: personalised email digests of new research papers.

The public API; everything else is private to the package.
"""

from .config import Config, load_config
from .deliver import Delivery
from .errors import (
    ConfigError,
    DigestError,
    FetchError,
    ParseError,
    SourceError,
    StoreError,
    UnknownSubscriber,
)
from .gather import gather
from .match import Matcher
from .models import VERSION as __version__
from .models import Digest, DigestEntry, Listing, Paper, Section, SourceReport
from .render import Composer, notice_message
from .store import Store

__all__ = [
    "Composer", "Config", "ConfigError", "Delivery", "Digest", "DigestEntry", "DigestError", "FetchError",
    "Listing", "Matcher", "Paper", "ParseError", "Section", "SourceError", "SourceReport", "Store",
    "StoreError", "UnknownSubscriber", "__version__", "gather", "load_config",
    "notice_message",
]
