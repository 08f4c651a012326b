"""`digest preview --serve`: every subscriber's e-mail at desktop and phone widths, with its
text part, re-rendered whenever the configuration or a template changes (the page reloads
itself). Listens on 127.0.0.1 only."""

from __future__ import annotations

import html
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from ..config import Config, find_subscriber, load_config
from ..errors import ConfigError, DigestError, UnknownSubscriber
from ..render.compose import Composer
from ..render.preview import preview_digest
from ..render.renderer import builtin_templates
from ..store.database import Store, open_store
from ..store.directory import Directory
from ..store.ledger import subscriber_key
from ..subscribe.examples import Asking, refresh
from .server import http_server

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:14px system-ui,sans-serif;margin:16px;background:#f3f4f6;color:#111}}
.row{{display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap}} iframe{{border:1px solid #ccc;background:#fff;height:85vh}}
pre{{background:#fff;border:1px solid #ccc;padding:12px;width:80ch;height:85vh;overflow:auto;white-space:pre;margin:0}}
h2{{font-size:13px;margin:4px 0}} .err{{color:#b00020;white-space:pre-wrap}}</style></head><body>{body}
<script>let v=null;setInterval(async()=>{{try{{const r=await fetch('/version');const t=await r.text();
if(v!==null&&t!==v)location.reload();v=t;}}catch(e){{}}}},1000);</script></body></html>"""


class PreviewState:
    """The configuration and renderer, rebuilt when a watched file changes."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._lock = threading.Lock()
        self._version: str | None = None
        self._built: tuple[Config, Composer, Store] | None = None

    def watched(self) -> list[Path]:
        files = [Path(self.config_path or "subscribers.yaml")]
        folders = [builtin_templates()]
        if self._built and self._built[0].templates:
            folders.append(Path(self._built[0].resolve_local(self._built[0].templates)))
        return files + [f for folder in folders if folder.is_dir() for f in sorted(folder.glob("*.j2"))]

    def version(self) -> str:
        stamps = []
        for path in self.watched():
            try:
                stamps.append(f"{path}:{path.stat().st_mtime_ns}")
            except OSError:
                stamps.append(f"{path}:-")
        return str(hash(tuple(stamps)))

    def current(self) -> tuple[Config, Composer, Store]:
        with self._lock:
            version = self.version()
            if self._built is None or version != self._version:
                config = load_config(self.config_path)
                store = open_store(config)
                # Topics whose examples changed since their models were trained: as `digest preview` does.
                refresh(store, config.subscribers, datetime.now(UTC), Asking(config.arxiv_api))
                self._built = (config, Composer(config, secret=store.signing_secret()), store)
                self._version = self.version()
            return self._built


def make_handler(state: PreviewState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            path = unquote(urlsplit(self.path).path)
            try:
                if path == "/version":
                    return self._send(state.version(), "text/plain")
                config, composer, store = state.current()
                if path == "/":
                    return self._send(self._index(config), "text/html")
                parts = path.strip("/").split("/")
                if len(parts) >= 2 and parts[0] == "s":
                    return self._subscriber(config, composer, store, parts[1], parts[2] if len(parts) > 2 else "")
                self.send_error(404)
            except UnknownSubscriber as exc:
                self._send(_PAGE.format(title="not found", body=f'<p class="err">{html.escape(str(exc))}</p>'
                                        "<p><a href='/'>All subscribers</a></p>"), "text/html", status=404)
            except (ConfigError, DigestError) as exc:
                problems = "\n".join(str(p) for p in getattr(exc, "problems", [])) or str(exc)
                self._send(_PAGE.format(title="error", body=f'<p class="err">{html.escape(problems)}</p>'),
                           "text/html", status=500)

        def _subscriber(self, config: Config, composer: Composer, store: Store, email: str, part: str) -> None:
            subscriber = find_subscriber(config, email)
            email_, stored = _render(config, composer, store, subscriber)
            if part in ("html", "text", "eml"):
                if email_ is None:
                    return self._send("nothing would be sent now", "text/plain", status=404)
                body = {"html": email_.html, "text": email_.text, "eml": email_.wire}[part]
                # As a mail client shows it: no script runs (a template's <script> ran in the preview's origin)
                return self._send(body, {"html": "text/html", "text": "text/plain", "eml": "message/rfc822"}[part],
                                  script_free=part == "html")
            link = quote(subscriber.email)
            if email_ is None:
                note = ("<p class='err'>Nothing new matches this subscriber's topics: with <code>send_empty: false</code> "
                        "no e-mail would be sent." + ("" if stored else " No papers are stored in the window: run "
                                                      "<code>digest fetch</code>.") + "</p>")
                return self._send(_PAGE.format(title=html.escape(subscriber.email),
                                               body=f"<p><a href='/'>All subscribers</a></p>{note}"), "text/html")
            note = "" if stored else "<p class='err'>No papers stored in the look-back window: run <code>digest fetch</code>.</p>"
            body = (f"<p><a href='/'>All subscribers</a> · <b>{html.escape(email_.subject)}</b> · "
                    f"{email_.html_bytes:,} bytes of HTML · <a href='/s/{link}/eml'>.eml</a></p>{note}"
                    f"<div class='row'><div><h2>Desktop, 600 px</h2><iframe title='desktop' sandbox='' src='/s/{link}/html' width='600'></iframe></div>"
                    f"<div><h2>Phone, 375 px</h2><iframe title='phone' sandbox='' src='/s/{link}/html' width='375'></iframe></div>"
                    f"<div><h2>Text part</h2><pre>{html.escape(email_.text)}</pre></div></div>")
            self._send(_PAGE.format(title=html.escape(subscriber.email), body=body), "text/html")

        def _index(self, config: Config) -> str:
            rows = "".join(f"<li><a href='/s/{quote(s.email)}'>{html.escape(s.email)}</a> "
                           f"{html.escape(s.name or '')} · {len(s.topics)} topic{'s' * (len(s.topics) != 1)}</li>"
                           for s in config.subscribers)
            return _PAGE.format(title="Paper digest previews", body=f"<h1>Paper digest previews</h1><ul>{rows}</ul>")

        def _send(self, body: str | bytes, kind: str, status: int = 200, script_free: bool = False) -> None:
            data = body.encode("utf-8") if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            if script_free:
                self.send_header("Content-Security-Policy", "script-src 'none'; object-src 'none'; base-uri 'none'")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def _render(config: Config, composer: Composer, store: Store, subscriber) -> tuple:  # type: ignore[no-untyped-def]
    """The e-mail `digest send` would send now (None: nothing, as send_empty is false), and the papers stored."""
    preview = preview_digest(config, store, subscriber, datetime.now(UTC))
    if preview.digest.is_empty and not config.setting(subscriber, "send_empty"):
        return None, preview.stored
    key = subscriber_key(subscriber.email)
    row = Directory(store).get([key]).get(key)  # the manage link as their digests carry it (0: not synced yet)
    generation = row.manage_generation if row is not None else 0
    return composer.email(preview.digest, subscriber, manage_generation=generation), preview.stored


def serve(config_path: str | None, port: int = 8025, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A server ready to `serve_forever()`; port 0 picks a free one."""
    state = PreviewState(config_path)
    state.current()  # fail now, with the config error, rather than on the first page
    return http_server(host, port, make_handler(state), hint="choose another --port")
