"""Paper digest: personalised email digests of new research papers.

The public API; everything else is private to the package. Its names are imported on first
use (PEP 562): a command loads only the stages it runs (`digest send` never imports feedparser,
`digest validate` never imports the renderer), which is a third of a command's start-up.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .errors import (
    ConfigError,
    DigestError,
    FetchError,
    ParseError,
    SourceError,
    StoreError,
    UnknownSubscriber,
)
from .models import VERSION as __version__

if TYPE_CHECKING:
    from .config import Config, load_config
    from .deliver import Delivery
    from .gather import gather
    from .match import Matcher
    from .models import Digest, DigestEntry, Listing, Paper, Section, SourceReport
    from .render import Composer, notice_message
    from .store import Store

_WHERE = {
    "Config": "config", "load_config": "config", "Delivery": "deliver", "gather": "gather", "Matcher": "match",
    "Digest": "models", "DigestEntry": "models", "Listing": "models", "Paper": "models", "Section": "models",
    "SourceReport": "models", "Composer": "render", "notice_message": "render", "Store": "store",
}

__all__ = [
    "Composer", "Config", "ConfigError", "Delivery", "Digest", "DigestEntry", "DigestError", "FetchError",
    "Listing", "Matcher", "Paper", "ParseError", "Section", "SourceError", "SourceReport", "Store",
    "StoreError", "UnknownSubscriber", "__version__", "gather", "load_config",
    "notice_message",
]


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'digest' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next look-up is an ordinary one
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
