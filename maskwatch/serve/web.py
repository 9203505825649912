"""``--http HOST:PORT``: a small remote view (status page, MJPEG stream, JSON and Prometheus metrics).

:class:`WebView` is a sink: ``write`` only stores the latest annotated frame and events; HTTP clients
are served from daemon threads of a stdlib :class:`~http.server.ThreadingHTTPServer`. Nothing is read
from disk, so unknown paths are simply 404. With several sources (``sources=[names]``) it keeps the latest
frame of each, by the frame's name; ``?source=NAME`` picks one for the stream and the snapshot.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qs, urlsplit

import numpy as np
from loguru import logger

from maskwatch.errors import ConfigError, OutputError
from maskwatch.media import scrub_url
from maskwatch.outputs.picture import Picture
from maskwatch.serve.auth import MAX_FORM_BYTES, Access, log_line, scrub_token
from maskwatch.serve.bind import is_loopback
from maskwatch.serve.channel import Channel
from maskwatch.serve.metrics import status_registry
from maskwatch.serve.page import status_page
from maskwatch.serve.routes import Page, Reply, Request
from maskwatch.types import Event, FrameResult

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from maskwatch.runner.status import RunStatus

BOUNDARY = "frame"
TEXT = "text/plain; charset=utf-8"
_ROUTES = {"/": "_page", "/status": "_status", "/events": "_events", "/metrics": "_metrics"}
_ROUTES |= {"/stream.mjpg": "_stream", "/snapshot.jpg": "_snapshot"}  # path -> handler method; nothing else
_RESERVED = {"/login", "/logout"}  # answered by the access rules (maskwatch.serve.auth)


class Watcher(Protocol):
    """Something that follows the view's frames and events (the door display): cheap calls, on the inference
    thread; ``write`` gets the frame undrawn; ``close`` ends its pages' streams."""

    def write(self, result: FrameResult, image: np.ndarray) -> None: ...

    def send(self, event: Event, image: np.ndarray) -> None: ...

    def close(self) -> None: ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # never join handler threads: a stuck client must not hang close()

    def __init__(self, address: tuple, family: int, view: WebView) -> None:
        self.address_family, self.view = family, view
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skip HTTPServer's reverse DNS lookup
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def handle_error(self, request, client_address) -> None:
        logger.opt(exception=True).debug("HTTP handler error")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version, sys_version = "maskwatch", ""
    timeout = 10.0  # seconds a silent or stuck client may hold its thread
    _sent = False  # headers already sent (a late failure cannot become a 500)

    def __getattr__(self, name: str):
        if name.startswith("do_"):  # any method but GET and HEAD
            return self._not_allowed
        raise AttributeError(name)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_POST(self) -> None:
        """Only the login form posts (``/login``, ``/logout``); any other path answers 405."""
        path = urlsplit(self.path).path
        if path not in ("/login", "/logout"):
            return self._not_allowed()
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > MAX_FORM_BYTES:
            return self._send(413, b"form too large\n", TEXT)
        body = self.rfile.read(int(length))
        try:
            access, query = self.server.view.access, parse_qs(urlsplit(self.path).query)
            self._reply(access.login(body, query) if path == "/login" else access.logout(self.headers), False)
        except OSError:  # the client went away
            pass

    def _not_allowed(self) -> None:
        length = self.headers.get("Content-Length", "0")
        if length.isdigit() and 0 < int(length) <= 1 << 16:
            self.rfile.read(int(length))  # drain so the client reads the answer rather than a reset
        self._send(405, b"method not allowed\n", TEXT, extra={"Allow": "GET, HEAD"})

    def _dispatch(self, head: bool) -> None:
        view, parts = self.server.view, urlsplit(self.path)
        query = parse_qs(parts.query)
        try:
            if parts.path == "/login":
                return self._reply(view.access.login_form(query), head)
            if parts.path == "/logout":
                return self._send(405, b"log out with a form post\n", TEXT, head, {"Allow": "POST"})
            if not view.access.allows(parts.path, self.headers, query):
                return self._reply(view.access.refuse(parts.path, query, self.headers), head)
            route = _ROUTES.get(parts.path)
            if route is not None:
                return getattr(self, route)(head, query)
            page = view.routes.get(parts.path)
            if page is None:
                return self._send(404, b"not found\n", TEXT, head)
            self._reply(page(Request(parts.path, query, dict(self.headers.items()), self.client_address[0])), head)
        except OSError:  # the client went away
            pass
        except Exception:
            logger.opt(exception=True).warning(f"HTTP view: {self.command} {parts.path} failed")
            if not self._sent:
                self._send(500, b"internal error\n", TEXT, head)

    def _send(self, code: int, body: bytes, ctype: str, head: bool = False, extra: dict | None = None) -> None:
        self.send_response(code)
        headers = {"Content-Type": ctype, "Content-Length": str(len(body)), "Cache-Control": "no-store"}
        for key, value in (headers | {"X-Content-Type-Options": "nosniff"} | (extra or {})).items():
            self.send_header(key, value)
        self.end_headers()
        self._sent = True
        if not head:
            self.wfile.write(body)

    def _reply(self, reply: Reply, head: bool) -> None:
        if reply.stream is None:
            return self._send(reply.code, reply.body, reply.ctype, head, dict(reply.headers))
        self.send_response(reply.code)
        headers = {"Content-Type": reply.ctype, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        for key, value in (headers | dict(reply.headers)).items():
            self.send_header(key, value)
        self.end_headers()
        self._sent = True
        if head:
            return
        self.server.view.count_client(+1)
        try:
            for chunk in reply.stream:
                self.wfile.write(chunk)
                self.wfile.flush()
        finally:
            self.server.view.count_client(-1)
            self.close_connection = True

    def _json(self, data: object, head: bool) -> None:
        body = json.dumps(data, default=lambda v: v.item() if isinstance(v, np.generic) else str(v))
        self._send(200, body.encode(), "application/json", head)

    def _page(self, head: bool, query: dict) -> None:
        status = self.server.view.status()
        source = scrub_url(status.source if status is not None else "")
        pages = [path for path in self.server.view.routes if "/" not in path[1:]]  # pages, not their streams
        self._reply(status_page(source, pages=pages, login=self.server.view.token is not None), head)

    def _status(self, head: bool, query: dict) -> None:
        self._json(self.server.view.status_json(), head)

    def _events(self, head: bool, query: dict) -> None:
        limit = query.get("limit", [None])[0]
        if limit is not None and not limit.strip().isdigit():
            return self._send(400, b"limit must be a non-negative integer\n", TEXT, head)
        self._json(self.server.view.recent_events(None if limit is None else int(limit)), head)

    def _metrics(self, head: bool, query: dict) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self._send(200, generate_latest(self.server.view.registry), CONTENT_TYPE_LATEST, head)

    def _channel(self, head: bool, query: dict) -> str | None:
        """The ``?source=`` asked for (None: the first); answers 404 and returns "" when there is no such source."""
        name = query.get("source", [None])[0]
        if name is not None and not self.server.view.has_source(name):
            self._send(404, b"no such source\n", TEXT, head)
            return ""
        return name

    def _snapshot(self, head: bool, query: dict) -> None:
        source = self._channel(head, query)
        if source == "":
            return
        jpeg = self.server.view.latest_jpeg(source)
        if jpeg is None:
            return self._send(503, b"no frame yet\n", TEXT, head, {"Retry-After": "1"})
        self._send(200, jpeg[1], "image/jpeg", head)

    def _stream(self, head: bool, query: dict) -> None:
        """MJPEG until the client leaves or the view closes; ``?frames=N`` ends after N parts."""
        view = self.server.view
        source = self._channel(head, query)
        if source == "":
            return
        frames = query.get("frames", [""])[0]
        remaining = int(frames) if frames.isdigit() and int(frames) > 0 else -1
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self._sent = True
        if head:
            return
        view.count_client(+1)
        try:
            last, interval = -1, 1.0 / max(view.max_stream_fps, 1e-3)
            while remaining != 0 and not view.closed:
                jpeg = view.wait_newer(last, timeout=1.0, source=source)
                if jpeg is None:
                    continue
                sent_at, (last, data) = time.monotonic(), jpeg
                part = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                self.wfile.write(part.encode() + data + b"\r\n")
                remaining -= 1
                if remaining and view.wait_closed(interval - (time.monotonic() - sent_at)):
                    return
        finally:
            view.count_client(-1)

    def log_message(self, format: str, *args) -> None:
        """Requests go to loguru at debug level, without query strings or the token."""
        line = log_line(format % args, getattr(self, "path", "") or "", getattr(self, "requestline", ""))
        logger.debug(f"HTTP {self.client_address[0]}: {scrub_token(line, self.server.view.token)}")


class WebView:
    """The ``--http`` remote view, used as a sink (``write`` stores the frame, HTTP threads encode and serve it) and
    as an event output (``send`` keeps the latest ``max_events`` events for ``/events``)."""

    data_only = False
    takes_events = False
    lazy = True

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        token: str | None = None,
        status: Callable[[], RunStatus | None] | None = None,
        max_events: int = 200,
        jpeg_quality: int = 80,
        max_stream_fps: float = 15.0,
        sources: list[str] | None = None,
        session_ttl_s: float = 12 * 3600,
    ) -> None:
        if not is_loopback(host) and not token:
            raise ConfigError(
                f"--http on {host or '*'} serves beyond this machine: set --http-token (or MASKWATCH_HTTP_TOKEN)"
            )
        if not 0 <= int(port) <= 65535:
            raise ConfigError(f"--http port must be 0..65535, got {port}")
        self.host, self.port, self.token = host, int(port), token or None
        self.max_stream_fps, self.jpeg_quality = float(max_stream_fps), int(jpeg_quality)
        self._status_fn = status
        self._events: deque[dict] = deque(maxlen=max(1, int(max_events)))
        self._cond = threading.Condition()
        self._closed = threading.Event()
        # the latest frame per source; one unnamed channel for a single source, else one per name, first is default
        names: list[str | None] = list(sources) if sources else [None]
        self._channels = {name: Channel() for name in names}
        self._default = next(iter(self._channels))
        self.clients = 0
        self._registry: CollectorRegistry | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.routes: dict[str, Page] = {}
        self.access = Access(self.token, ttl_s=session_ttl_s)
        self._watchers: list[Watcher] = []

    def add_route(self, path: str, page: Page) -> None:
        """Serve ``page`` on ``path`` (behind the same access rules as the rest); built-in paths cannot be replaced."""
        if path in _ROUTES or path in _RESERVED or not path.startswith("/"):
            raise ValueError(f"cannot mount a page on {path!r}")
        self.routes[path] = page

    def watch(self, watcher: Watcher) -> None:
        """Hand ``watcher`` every frame and event this view gets (a page that shows live state); closed with it."""
        self._watchers.append(watcher)

    def start(self) -> WebView:
        """Bind and serve in a daemon thread; port 0 picks a free port (``self.port`` is updated)."""
        if self._server is not None:
            return self
        if self.closed:
            raise OutputError("the HTTP view is closed")
        try:
            info = socket.getaddrinfo(self.host or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, *_, address = min(info, key=lambda a: a[0] != socket.AF_INET)  # IPv4 first for names
            self._server = _Server(address, family, self)
        except (OSError, OverflowError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise OutputError(
                f"cannot serve HTTP on {self.host}:{self.port}: {reason[:1].lower()}{reason[1:]}"
            ) from None
        self.port = int(self._server.server_address[1])
        self.access.cookie = f"maskwatch_session_{self.port}"  # two views on one host keep their own sessions
        self._thread = threading.Thread(target=self._serve, args=(self._server,), name="maskwatch-http", daemon=True)
        self._thread.start()
        logger.info(f"HTTP view on {self.url}")
        return self

    def _serve(self, server: _Server) -> None:
        try:
            server.serve_forever(poll_interval=0.2)
        except Exception:  # the socket closed under a slow shutdown: expected once closed
            if not self.closed:
                logger.opt(exception=True).error("HTTP view stopped")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else (self.host or "0.0.0.0")
        return f"http://{host}:{self.port}/"

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Stop serving and wake stream clients; returns within about 2 s. Idempotent."""
        with self._cond:
            if self.closed:
                return
            self._closed.set()
            self._cond.notify_all()
        for watcher in self._watchers:  # first: their streams end before the server stops
            watcher.close()
        if self._server is not None and self._thread is not None:
            if self._thread.is_alive():
                stopper = threading.Thread(target=self._server.shutdown, daemon=True)
                stopper.start()
                stopper.join(timeout=1.5)
            self._server.server_close()
            self._thread.join(timeout=0.5)

    def __enter__(self) -> WebView:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        """Keep ``annotated`` as the latest frame (see :meth:`write_picture`)."""
        self.write_picture(result, Picture.of(annotated))

    def write_picture(self, result: FrameResult, picture: Picture) -> None:
        """Keep a reference to the frame (no copy; drawn and encoded only when a client asks); wake stream clients.

        With several sources the frame is kept as the latest of the source its name matches. Watchers get the
        frame undrawn.
        """
        with self._cond:
            channel = self._channels.get(result.frame.name) or self._channels[self._default]
            channel.frame, channel.index = picture, int(result.frame.index)
            channel.seq += 1
            self._cond.notify_all()
        for watcher in self._watchers:
            watcher.write(result, result.frame.image)

    def send(self, event: Event, image: np.ndarray) -> None:
        """Keep ``event`` for ``/events`` (the oldest goes beyond ``max_events``)."""
        with self._cond:
            self._events.append(event.to_json())
        for watcher in self._watchers:
            watcher.send(event, image)

    def has_source(self, name: str) -> bool:
        """True when ``name`` is one of the sources this view was given."""
        return name in self._channels and name is not None

    def status(self) -> RunStatus | None:
        """What the application's status callback reports, or None without one."""
        return self._status_fn() if self._status_fn is not None else None

    def status_json(self) -> dict:
        """``status()`` as JSON, plus the latest frame index (per source too) and the number of stream clients."""
        status = self.status()
        data = status.to_json() if status is not None else {}
        if "source" in data:
            data["source"] = scrub_url(str(data["source"]))
        with self._cond:
            for row in data.get("sources") or ():
                if row["name"] in self._channels:
                    row["frame"] = self._channels[row["name"]].index
            return data | {"frame": self._channels[self._default].index, "clients": self.clients}

    @property
    def registry(self) -> CollectorRegistry:
        """This view's own Prometheus registry (built on first use); its collector reads ``status()`` per scrape."""
        with self._cond:
            if self._registry is None:
                self._registry = status_registry(lambda: (self.status(), self.clients))
            return self._registry

    def count_client(self, delta: int) -> None:
        with self._cond:
            self.clients += delta

    def recent_events(self, limit: int | None = None) -> list[dict]:
        """The kept events, oldest first; the last ``limit`` only when given."""
        with self._cond:
            events = list(self._events)
        return events if limit is None else events[len(events) - min(limit, len(events)) :]

    def latest_jpeg(self, source: str | None = None) -> tuple[int, bytes] | None:
        """(write number, JPEG bytes) of the latest frame (of ``source``, default the first); None before the first."""
        channel = self._channels.get(source) or self._channels[self._default]
        with self._cond:
            seq, frame = channel.seq, channel.frame
        return None if frame is None else channel.encode(seq, frame, self.jpeg_quality)

    def wait_newer(self, last: int, timeout: float, source: str | None = None) -> tuple[int, bytes] | None:
        """Wait up to ``timeout`` s for a frame written after write number ``last``; its JPEG, or None."""
        channel = self._channels.get(source) or self._channels[self._default]
        with self._cond:
            self._cond.wait_for(lambda: self.closed or channel.seq > last, timeout=timeout)
            if self.closed or channel.seq <= last or channel.frame is None:
                return None
            seq, frame = channel.seq, channel.frame
        return channel.encode(seq, frame, self.jpeg_quality)

    def wait_closed(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (stream pacing); True once the view is closed."""
        return self._closed.wait(seconds) if seconds > 0 else self.closed
