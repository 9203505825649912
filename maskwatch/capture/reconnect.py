"""Reconnect: a live source (camera, stream) that is reopened with backoff when it stops sending frames.

The run goes on through the outage: ``read`` returns None while disconnected, and the outage is logged
(with credentials scrubbed) and counted for the status views.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from loguru import logger

from maskwatch.capture.base import RawFrame, Source
from maskwatch.media import scrub_url


class ReconnectingSource(Source):
    """A live source reopened with backoff when it stops sending frames or disappears.

    ``read`` never blocks longer than one inner read or one ``opener()`` call: between reconnect attempts
    it returns None and the caller polls. ``first`` is the already-opened source (never retried here).
    """

    is_live = True
    finite = False
    frame_count = None
    reconnects = True

    def __init__(
        self,
        opener: Callable[[], Source],
        name: str,
        *,
        stall_s: float = 5.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        first: Source | None = None,
    ) -> None:
        self.opener, self.name, self.clock = opener, scrub_url(name), clock
        self.stall_s, self.backoff_s, self.max_backoff_s = stall_s, backoff_s, max_backoff_s
        self.outages = 0
        self._inner: Source | None = first
        self.fps = float(first.fps) if first is not None else 25.0
        """The frame rate of the source as last opened (25 until it opens)."""
        self._lock = threading.Lock()
        self._closed = self._error_logged = False
        self._last_frame_at = self._next_try_at = clock()
        self._down_since: float | None = None if first is not None else self._last_frame_at
        self._downtime = 0.0
        self._backoff = backoff_s
        self._attempt = 0

    @property
    def connected(self) -> bool:
        return self._inner is not None

    @property
    def downtime_s(self) -> float:
        """Seconds spent disconnected so far, including an ongoing outage."""
        since = self._down_since
        return self._downtime + (max(self.clock() - since, 0.0) if since is not None else 0.0)

    def read(self) -> RawFrame | None:
        inner = self._inner
        if self._closed:
            return None
        if inner is None:
            self._try_reconnect()
            return None
        try:
            item = inner.read()
        except Exception as exc:  # a vanished device may raise instead of returning nothing
            item = None
            if not self._error_logged:
                self._error_logged = True
                logger.warning(f"reading {self.name} failed: {scrub_url(exc)}")
        now = self.clock()
        if item is not None:
            self._last_frame_at, self._error_logged = now, False
            return item
        if now - self._last_frame_at >= self.stall_s:
            logger.warning(f"lost {self.name}: no frames for {now - self._last_frame_at:.1f} s; reconnecting")
            with self._lock:
                self._inner, self.fps = None, float(inner.fps)
                self.outages += 1
                # down since its last frame, not since the stall was noticed: a read that blocked through the
                # whole outage (OpenCV's read timeout) would otherwise leave a reopen at once counting 0 s
                self._down_since, self._next_try_at = self._last_frame_at, now
                self._backoff, self._attempt = self.backoff_s, 0
            _close_quietly(inner, self.name)
        return None

    def _try_reconnect(self) -> None:
        if self.clock() < self._next_try_at:
            return
        self._attempt += 1
        try:
            source = self.opener()
        except Exception as exc:
            wait, self._backoff = self._backoff, min(self._backoff * 2, self.max_backoff_s)
            self._next_try_at = self.clock() + wait
            logger.warning(
                f"reconnecting to {self.name} failed (attempt {self._attempt}, next in {wait:.1f} s): {scrub_url(exc)}"
            )
            return
        now = self.clock()
        with self._lock:
            if not self._closed:
                outage = now - self._down_since if self._down_since is not None else 0.0
                self._downtime += max(outage, 0.0)
                self._inner, self.fps, self._down_since = source, float(source.fps), None
                self._last_frame_at, self._error_logged, self._backoff = now, False, self.backoff_s
        if self._inner is not source:  # closed while the opener ran
            _close_quietly(source, self.name)
            return
        logger.info(f"reconnected to {self.name} after {outage:.1f} s")

    def close(self) -> None:
        """Close the current inner source; idempotent, returns at once during an outage."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            inner, self._inner = self._inner, None
            if self._down_since is not None:
                self._downtime += max(self.clock() - self._down_since, 0.0)
                self._down_since = None
        if inner is not None:
            _close_quietly(inner, self.name)


def _close_quietly(source: Source, name: str) -> None:
    try:
        source.close()
    except Exception as exc:
        logger.debug(f"closing {name} failed: {scrub_url(exc)}")
