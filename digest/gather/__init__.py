"""Gather: takes the configured sources, fetches and parses each one, and hands on `Paper`s stored (first seen, merged by id)."""

from .collect import gather, select_sources

__all__ = ["gather", "select_sources"]
