"""Render: takes a `Digest`, and hands on the finished e-mail (HTML within its size budget, text, the MIME message)."""

from .compose import Composer, Email
from .notice import notice_message

__all__ = ["Composer", "Email", "notice_message"]
