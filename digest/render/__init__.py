"""Render: takes a `Digest`, and hands on the finished e-mail (HTML within its size budget, text, the MIME message)."""

from .compose import Composer, Email

__all__ = ["Composer", "Email"]
