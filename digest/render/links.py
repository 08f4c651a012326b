"""Unsubscribe links that need no lookup: the address and its HMAC under the installation's key.

The address is base64url-encoded in the token, never written in the URL as is: spam filters
score links that carry the recipient's address (SpamAssassin's GB_CUSTOM_HTM_URI).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from urllib.parse import quote


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, email: str) -> str:
    return _b64(hmac.new(secret.encode(), email.strip().lower().encode(), hashlib.sha256).digest()[:18])


def unsubscribe_token(secret: str, email: str) -> str:
    return f"{_b64(email.strip().lower().encode())}.{_signature(secret, email)}"


def email_from_token(secret: str, token: str) -> str | None:
    """The address a token was made for, or None when it is not genuine."""
    encoded, _, signature = (token or "").partition(".")
    try:
        email = _unb64(encoded).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return email if email and hmac.compare_digest(_signature(secret, email), signature) else None


def unsubscribe_url(base_url: str | None, secret: str, email: str) -> str | None:
    """`{base_url}/unsubscribe/{token}`, or None without a base_url."""
    if not base_url:
        return None
    return f"{base_url.rstrip('/')}/unsubscribe/{unsubscribe_token(secret, email)}"


def unsubscribe_mailto(address: str, email: str) -> str:
    """A mailto: link that asks the sender to unsubscribe `email` (works without a web server)."""
    return f"mailto:{address}?subject={quote('unsubscribe ' + email)}"
