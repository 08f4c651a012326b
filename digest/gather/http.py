"""Getting a source's document: HTTP(S) with conditional GET, retries and limits, or a local file.

The only module that touches the network. urllib3 does the retrying (back-off, Retry-After,
status codes); this module adds what a feed reader needs on top: validators kept per source,
a response size limit, a wall-clock deadline, and arXiv's minimum interval between requests.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import getproxies, proxy_bypass

import urllib3
from urllib3.exceptions import (
    HTTPError,
    LocationValueError,
    MaxRetryError,
    ProtocolError,
    TimeoutError,
)
from urllib3.util import Retry, Timeout

from ..errors import FetchError
from ..models import VERSION, Validators
from ..readfile import NotAFile, TooLarge, read_regular

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Document:
    location: str
    body: bytes | None  # None when not modified
    status: int | None = None
    validators: Validators = Validators()
    content_type: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.body is None


class _Retry(Retry):
    """urllib3's Retry with a floor under back-off (arXiv: 3 s) and a cap on Retry-After."""

    min_backoff: float = 0.0
    max_retry_after: float = 120.0

    def new(self, **kw):  # type: ignore[no-untyped-def]
        retry = super().new(**kw)
        retry.min_backoff, retry.max_retry_after = self.min_backoff, self.max_retry_after
        return retry

    def get_backoff_time(self) -> float:
        return max(super().get_backoff_time(), self.min_backoff)

    def get_retry_after(self, response):  # type: ignore[no-untyped-def]
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, self.max_retry_after)


def is_local(location: str) -> bool:
    return "://" not in location or location.startswith("file://")


def local_path(location: str) -> Path:
    """The file a local location (a path, or a file:// URL) names."""
    return Path(unquote(urlsplit(location).path)) if location.startswith("file://") else Path(location)


class Fetcher:
    """Fetches documents for sources; one shared connection pool, safe to use from threads."""

    def __init__(
        self,
        *,
        user_agent: str | None = None,
        retries: int = 3,
        backoff: float = 1.0,
        max_retry_after: float = 120.0,
        stop: threading.Event | None = None,
    ) -> None:
        self.user_agent = user_agent or default_user_agent()
        self.stop = stop or threading.Event()  # set: every download under way ends now
        self.retries = retries
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self._pool = urllib3.PoolManager(num_pools=16, maxsize=8)  # one per gather thread: none discarded
        self._proxies = _proxy_pools()  # $https_proxy, $http_proxy (a lab's network), minus $no_proxy
        self._last_request: dict[str, float] = {}
        self._host_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(
        self,
        source: str,
        location: str,
        *,
        timeout: float = 30.0,
        max_bytes: int = 20_000_000,
        validators: Validators | None = None,
        min_interval: float = 0.0,
        deadline: float | None = None,
    ) -> Document:
        """The document at `location` (URL or local path); FetchError if it cannot be had.
        `deadline` (time.monotonic()) ends the download however the server trickles it."""
        if is_local(location):
            return self._read_file(source, location, max_bytes)
        deadline = deadline if deadline is not None else time.monotonic() + 3 * timeout
        host = urlsplit(location).netloc
        if min_interval > 0:
            # One request at a time per host, spaced by min_interval (arXiv's terms of use).
            with self._host_lock(host):
                self._wait_turn(host, min_interval)
                try:
                    return self._http_get(source, location, timeout, max_bytes, validators, min_interval, deadline)
                finally:
                    self._last_request[host] = time.monotonic()
        return self._http_get(source, location, timeout, max_bytes, validators, 0.0, deadline)

    # ------------------------------------------------------------------ HTTP

    def retry_policy(self, min_backoff: float = 0.0) -> Retry:
        """How a request is retried: 429 and 5xx, time-outs and resets, with back-off that
        doubles (never under `min_backoff`), honouring Retry-After up to `max_retry_after`."""
        retry = _Retry(
            total=self.retries, connect=self.retries, read=self.retries, status=self.retries,
            backoff_factor=self.backoff, backoff_max=60, status_forcelist=RETRY_STATUSES,
            allowed_methods={"GET"}, respect_retry_after_header=True, raise_on_status=False,
            redirect=5,
        )
        retry.min_backoff, retry.max_retry_after = min_backoff, self.max_retry_after
        return retry

    def _http_get(self, source: str, url: str, timeout: float, max_bytes: int,
                  validators: Validators | None, min_backoff: float, deadline: float) -> Document:
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": "gzip, deflate"}
        if validators and validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators and validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        retry = self.retry_policy(min_backoff)
        retry.max_retry_after = max(0.0, min(retry.max_retry_after, deadline - time.monotonic()))
        wait = max(0.1, min(timeout, deadline - time.monotonic()))  # no single wait past the deadline
        try:
            response = self._pool_for(source, url).request(
                "GET", url, headers=headers, retries=retry, preload_content=False,
                timeout=Timeout(connect=min(wait, 10.0), read=wait),
            )
        except MaxRetryError as exc:
            raise FetchError(source, f"cannot reach {url}: {_reason(exc.reason)}",
                             hint="check the url and your network; other sources are unaffected") from None
        except (HTTPError, OSError) as exc:
            raise FetchError(source, f"cannot reach {url}: {_reason(exc)}") from None

        try:
            status = response.status
            if status == 304:
                return Document(url, None, status, validators or Validators())
            if status >= 400:
                raise FetchError(source, f"HTTP {status} {response.reason or ''} from {url}".rstrip(),
                                 hint=_status_hint(status))
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise FetchError(source, f"response of {int(length):,} bytes exceeds max_bytes ({max_bytes:,})",
                                 hint="raise max_bytes for this source if the feed is really that large")
            body = self._read_limited(source, response, max_bytes, deadline)
            return Document(
                url, body, status,
                Validators(response.headers.get("ETag"), response.headers.get("Last-Modified")),
                response.headers.get("Content-Type"),
            )
        finally:
            response.release_conn()

    def _read_limited(self, source: str, response, max_bytes: int, deadline: float) -> bytes:  # type: ignore[no-untyped-def]
        """The body, whatever arrives as it arrives (read1: a server that sends a byte every half
        second is seen at once), within max_bytes and the deadline, unless stopped."""
        chunks, size = [], 0
        try:
            while chunk := response.read1(64 * 1024, decode_content=True):
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(source, f"response exceeds max_bytes ({max_bytes:,} bytes)",
                                     hint="raise max_bytes for this source if the feed is really that large")
                if time.monotonic() > deadline:
                    raise FetchError(source, "the server sent too slowly to finish within the deadline; gave up",
                                     hint="raise `deadline` for this source if it is just slow")
                if self.stop.is_set():
                    raise FetchError(source, "stopped")
                chunks.append(chunk)
        except (TimeoutError, ProtocolError, HTTPError) as exc:
            raise FetchError(source, f"the response was cut off: {_reason(exc)}") from None
        return b"".join(chunks)

    # ------------------------------------------------------------------ files

    @staticmethod
    def _read_file(source: str, location: str, max_bytes: int) -> Document:
        path = local_path(location)
        try:
            return Document(str(path), read_regular(path, max_bytes))
        except FileNotFoundError:
            raise FetchError(source, f"file not found: {path}", hint="check the url of this source") from None
        except IsADirectoryError:
            raise FetchError(source, f"{path} is a folder, not a feed file") from None
        except NotAFile as exc:  # /dev/zero never ends, a pipe may never answer
            raise FetchError(source, str(exc), hint="point the url at a feed file, or at an http(s) address") from None
        except TooLarge as exc:
            raise FetchError(source, f"{exc} (max_bytes)") from None
        except OSError as exc:
            raise FetchError(source, f"cannot read {path}: {exc.strerror or exc}") from None

    # ------------------------------------------------------------------ pacing

    def _host_lock(self, host: str) -> threading.Lock:
        with self._lock:
            return self._host_locks.setdefault(host, threading.Lock())

    def _wait_turn(self, host: str, min_interval: float) -> None:
        last = self._last_request.get(host)
        if last is not None:
            wait = last + min_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)

    def _pool_for(self, source: str, url: str) -> urllib3.PoolManager:
        """The connections to `url`: through the scheme's proxy unless $no_proxy or loopback says not."""
        parts = urlsplit(url)
        proxy = self._proxies.get(parts.scheme)
        host = parts.hostname or ""
        if proxy is None or host in ("localhost", "::1") or host.startswith("127.") or proxy_bypass(host):
            return self._pool
        if isinstance(proxy, str):
            raise FetchError(source, proxy, hint="correct or unset the variable (e.g. https_proxy=http://proxy.lab:3128)")
        return proxy

    def close(self) -> None:
        self._pool.clear()
        for proxy in self._proxies.values():
            if not isinstance(proxy, str):
                proxy.clear()


def _proxy_pools() -> dict[str, urllib3.ProxyManager | str]:
    """A pool per proxied scheme, as the environment sets them; for one that is not a proxy
    URL, why (said when a source would go through it)."""
    pools: dict[str, urllib3.ProxyManager | str] = {}
    for scheme, address in getproxies().items():
        if scheme in ("http", "https"):
            try:
                pools[scheme] = urllib3.ProxyManager(address if "://" in address else f"http://{address}",
                                                     num_pools=16, maxsize=8)
            except (ValueError, urllib3.exceptions.HTTPError) as exc:
                pools[scheme] = f"${scheme}_proxy is not a proxy URL ({address!r}: {exc})"
    return pools


def default_user_agent(contact: str | None = None) -> str:
    contact_part = f"; mailto:{contact}" if contact else ""
    return f"paper-digest/{VERSION} (self-hosted research paper digest{contact_part})"


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc)
    # urllib3 wraps the OS error in a long repr; keep the part a person can act on.
    # (Checked before timeouts: urllib3's NewConnectionError subclasses ConnectTimeoutError.)
    for marker in ("Connection refused", "Name or service not known", "nodename nor servname",
                   "Temporary failure in name resolution", "Network is unreachable",
                   "certificate verify failed", "Connection reset"):
        if marker in text:
            return marker.lower()
    if isinstance(exc, TimeoutError) or "timed out" in text.lower():
        return "no response in time (timed out)"
    if "too many 429" in text.lower() or "too many error responses" in text.lower():
        return "the server kept answering with errors after retries"
    if isinstance(exc, LocationValueError):  # the configured url is checked: a Location header was not
        return f"it sent a redirect to something that is not an http(s) address ({text.rstrip('.')})"
    return text


def _status_hint(status: int) -> str:
    if status == 404:
        return "the address does not exist: check the url or categories of this source"
    if status in (401, 403):
        return "the server refused access"
    if status == 429:
        return "rate limited; retried already, will try again on the next fetch"
    if status >= 500:
        return "the server failed; retried already, will try again on the next fetch"
    return ""
