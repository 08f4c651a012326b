"""Cross-site request forgery: every form carries a token only our own pages can show.

Signed double submit (OWASP's recommendation for servers without sessions): a random value in
a cookie (SameSite=Strict, HttpOnly; `__Host-` and Secure when the request came over HTTPS,
as the proxy in front says), and in each form the
HMAC of that value under the installation's key. Another site can make a browser post to us,
but can read neither the cookie nor our pages, so it cannot produce the field. A browser's
`Sec-Fetch-Site: cross-site` or an `Origin` of another host is refused as well.

Written here rather than taken from a package: the ASGI ones either read the token from a
header only (forms without JavaScript cannot send one) or skip the check for a request with no
cookies, which is exactly what a forged first visit is.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

FIELD = "csrf"
_VALUE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


class Csrf:
    def __init__(self, secret: str, *, site_host: str | None = None) -> None:
        self.site_host = site_host  # base_url's host: what Origin says behind a proxy that rewrites Host
        self.key = hashlib.sha256(b"csrf:" + secret.encode()).digest()

    @staticmethod
    def _cookie(request: Request) -> str:
        return "__Host-csrf" if request.url.scheme == "https" else "digest_csrf"

    def _sign(self, value: str) -> str:
        return hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()

    def token(self, request: Request) -> tuple[str, str | None]:
        """(the form field's value, a new cookie value to set or None when the visitor has one)."""
        value = request.cookies.get(self._cookie(request), "")
        if _VALUE.match(value):
            return self._sign(value), None
        value = secrets.token_urlsafe(32)
        return self._sign(value), value

    def set_cookie(self, request: Request, response: Response, value: str | None) -> Response:
        if value is not None:
            response.set_cookie(self._cookie(request), value, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https", path="/")
        return response

    def valid(self, request: Request, form: dict[str, list[str]]) -> bool:
        """The posted form came from one of our pages in this browser."""
        if request.headers.get("sec-fetch-site") == "cross-site":
            return False
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc not in (request.headers.get("host"), self.site_host):
            return False
        value = request.cookies.get(self._cookie(request), "")
        sent = (form.get(FIELD) or [""])[0]
        return bool(_VALUE.match(value)) and hmac.compare_digest(sent, self._sign(value))
