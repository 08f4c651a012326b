"""Where results of pure computations are kept between processes: the user's cache folder
(`$XDG_CACHE_HOME/paper-digest`, else `~/.cache/paper-digest`). Nothing depends on it: without
a home folder, or read-only, every process computes again."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path | None:
    """This tool's cache folder; None without a home folder (a user with no passwd entry, say)."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except (RuntimeError, KeyError):
            return None
    return Path(base) / "paper-digest"
