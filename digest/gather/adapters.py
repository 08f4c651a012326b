"""One module per source type; each turns its document into a `Listing` of papers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import ModuleType
from typing import Any

from . import arxiv, arxiv_api, feed, huggingface
from .http import Document, Fetcher

ADAPTERS: dict[str, ModuleType] = {
    "arxiv": arxiv,
    "arxiv-api": arxiv_api,
    "huggingface": huggingface,
    "feed": feed,
}


def adapter(source: Any) -> ModuleType:
    return ADAPTERS[source.type]


Parse = Callable[[Any, bytes, datetime], Any]

__all__ = ["ADAPTERS", "Document", "Fetcher", "adapter"]
