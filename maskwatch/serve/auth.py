"""Who may use the HTTP view: the token typed once into ``/login``, then an opaque session cookie.

With a token configured, a request is let in when it carries a live session cookie (set by ``POST /login``:
HttpOnly, SameSite=Strict, a random value that is not the token, expiring after ``ttl_s``) or an
``Authorization: Bearer TOKEN`` header (scripts, Prometheus). ``?token=`` is accepted only on the MJPEG stream
and the snapshot, for players that cannot send a header or a cookie. A refused page request is sent to
``/login``; any other request gets 401. Without a token (loopback only) everything is open.
"""

from __future__ import annotations

import hmac
import html
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from maskwatch.serve.routes import HTML, Reply

QUERY_TOKEN_PATHS = frozenset({"/stream.mjpg", "/snapshot.jpg"})
"""The only paths that accept ``?token=`` (players that can send neither a header nor a cookie)."""
PAGE_PATHS = frozenset({"/"})
"""Built-in paths that are pages (a refused browser is sent to the login form); others answer 401."""
MAX_FORM_BYTES = 4096
FAILED_LOGIN_DELAY_S = 0.5


class Headers(Protocol):
    """A request's headers: a mapping, or the :class:`email.message.Message` of :mod:`http.server`."""

    def get(self, name: str, /) -> str | None: ...


class Sessions:
    """Live login sessions: random ids with an expiry; at most ``max_sessions`` (the oldest go first)."""

    def __init__(self, ttl_s: float = 12 * 3600, max_sessions: int = 256, clock: Callable[[], float] = time.monotonic):
        self.ttl_s, self.max_sessions, self.clock = float(ttl_s), int(max_sessions), clock
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def create(self) -> str:
        """A new session id (256 random bits), valid for ``ttl_s``."""
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            for old in [s for s, t in self._expiry.items() if t <= now]:
                del self._expiry[old]
            while len(self._expiry) >= self.max_sessions:
                del self._expiry[next(iter(self._expiry))]  # dicts keep insertion order: the oldest
            self._expiry[sid] = now + self.ttl_s
        return sid

    def valid(self, sid: str | None) -> bool:
        """True for a session that exists and has not expired (an expired one is forgotten)."""
        if not sid:
            return False
        with self._lock:
            expiry = self._expiry.get(sid)
            if expiry is not None and expiry <= self.clock():
                del self._expiry[sid]
                expiry = None
        return expiry is not None

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._expiry.pop(sid or "", None)

    def __len__(self) -> int:
        return len(self._expiry)


def cookie_value(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie:`` header, or None."""
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip().strip('"')
    return None


def _first(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def matches(offered: str | None, token: str) -> bool:
    """Constant-time comparison of an offered token with the configured one."""
    return offered is not None and hmac.compare_digest(offered.encode(), token.encode())


def log_line(message: str, path: str, requestline: str) -> str:
    """An HTTP log message with the request's query string cut from its path (it may hold ``?token=``)."""
    if requestline and path:
        message = message.replace(requestline, requestline.replace(path, urlsplit(path).path))
    return message.replace(path, urlsplit(path).path) if path else message


def scrub_token(message: str, token: str | None) -> str:
    """``message`` with the token, wherever it appears, as ``***``."""
    return message.replace(token, "***") if token else message


def local_path(target: str | None) -> str:
    """``target`` when it is a path on this server (``/x?y``), else ``/``: a login never redirects elsewhere."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or any(c < " " for c in target):
        return "/"
    return target


class Access:
    """The view's access rules (see the module's docstring); ``token`` None means open."""

    def __init__(self, token: str | None, *, ttl_s: float = 12 * 3600, cookie: str = "maskwatch_session") -> None:
        self.token = token or None
        self.sessions = Sessions(ttl_s)
        self.cookie = cookie

    def allows(self, path: str, headers: Headers, query: Mapping[str, list[str]]) -> bool:
        """True when the request may be served."""
        if self.token is None:
            return True
        auth = headers.get("Authorization") or ""
        if auth[:7].lower() == "bearer " and matches(auth[7:].strip(), self.token):
            return True
        if self.sessions.valid(cookie_value(headers.get("Cookie"), self.cookie)):
            return True
        return path in QUERY_TOKEN_PATHS and matches(_first(query, "token"), self.token)

    def refuse(self, path: str, query: Mapping[str, list[str]], headers: Headers) -> Reply:
        """A browser asking for a page goes to the login form (and back here after); anything else gets 401."""
        if path in PAGE_PATHS or "text/html" in (headers.get("Accept") or ""):
            kept = {k: v for k, v in query.items() if k != "token"}
            target = path + ("?" + urlencode(kept, doseq=True) if kept else "")
            return Reply(b"login required\n", code=303, headers={"Location": "/login?next=" + quote(target, safe="/")})
        headers_out = {"WWW-Authenticate": 'Bearer realm="maskwatch"'}
        return Reply(b"unauthorized: log in at /login or send Authorization: Bearer\n", code=401, headers=headers_out)

    def login_form(self, query: Mapping[str, list[str]]) -> Reply:
        """``GET /login``: the form (or straight back when there is no token to ask for)."""
        target = local_path((query.get("next") or ["/"])[0])
        if self.token is None:
            return Reply(b"", code=303, headers={"Location": target})
        return _form(target, error=False)

    def login(self, body: bytes, query: Mapping[str, list[str]]) -> Reply:
        """``POST /login`` with ``token=...`` (a form): a session cookie and a redirect, or the form again (401)."""
        form = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", errors="replace"))
        target = local_path((form.get("next") or query.get("next") or ["/"])[0])
        if self.token is None:
            return Reply(b"", code=303, headers={"Location": target})
        if not matches(_first(form, "token"), self.token):
            time.sleep(FAILED_LOGIN_DELAY_S)  # slows guessing; only this client's thread waits
            return _form(target, error=True)
        sid = self.sessions.create()
        cookie = f"{self.cookie}={sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age={int(self.sessions.ttl_s)}"
        return Reply(b"", code=303, headers={"Location": target, "Set-Cookie": cookie})

    def logout(self, headers: Headers) -> Reply:
        """``POST /logout``: forget the session and clear the cookie."""
        self.sessions.drop(cookie_value(headers.get("Cookie"), self.cookie))
        cookie = f"{self.cookie}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        return Reply(b"", code=303, headers={"Location": "/login", "Set-Cookie": cookie})


_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>maskwatch: log in</title>
<style>
body{margin:0;font:16px system-ui,sans-serif;background:#16181d;color:#e6e6e6;display:grid;place-items:center;
min-height:100vh} form{background:#20232b;padding:24px 28px;border-radius:6px;display:grid;gap:12px;min-width:280px}
h1{margin:0;font-size:20px} input{font:inherit;padding:8px;border-radius:4px;border:1px solid #3a3f4b;
background:#16181d;color:inherit} button{font:inherit;padding:8px;border:0;border-radius:4px;background:#3b82f6;
color:#fff;cursor:pointer} #error{color:#ff8a8e;margin:0}
</style></head><body>
<form method="post" action="/login"><h1>maskwatch</h1>
{{error}}<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<input type="hidden" name="next" value="{{next}}"><button type="submit">Log in</button></form>
</body></html>
"""


def _form(target: str, *, error: bool) -> Reply:
    message = '<p id="error" role="alert">Wrong token.</p>\n' if error else ""
    body = _FORM.replace("{{error}}", message).replace("{{next}}", html.escape(target, quote=True))
    headers = {"Content-Security-Policy": _CSP}
    return Reply(body.encode(), ctype=HTML, code=401 if error else 200, headers=headers)
