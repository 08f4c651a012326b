"""Match: takes stored papers and subscribers' topics, and hands on one ranked, explained `Digest` per subscriber."""

from .matcher import Matcher
from .newly_seen import newly_seen

__all__ = ["Matcher", "newly_seen"]
