"""POST each event as JSON to a webhook from a background thread, never blocking the pipeline."""

from __future__ import annotations

import json
import math
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass

from loguru import logger

from maskwatch.media import scrub_url
from maskwatch.types import Event

_WARN_EVERY_S = 60.0


@dataclass
class WebhookStats:
    """Events delivered, given up on (after retries or a non-retryable answer), dropped unsent, and retries made."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0


class _Retryable(Exception):
    """A failed attempt worth repeating; ``retry_after`` is the server's wish in seconds, if any."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Webhook:
    """An event output (:class:`~maskwatch.outputs.events.EventSink`): POSTs each event's JSON record, in order,
    from one daemon thread with retries and exponential backoff.

    ``send`` only queues; a full queue loses its oldest event (counted in ``stats.dropped``). Connection
    errors, timeouts, 5xx and 429 are retried ``retries`` times; other 4xx count as failed.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        retries: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        queue_size: int = 1000,
        headers: dict[str, str] | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(str(url))
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook URL must look like http(s)://host/path, got {scrub_url(url)!r}")
        if queue_size < 1:
            raise ValueError(f"webhook queue_size must be at least 1, got {queue_size}")
        self.url = str(url)
        self.name = scrub_url(f"{parts.scheme}://{parts.netloc}")  # the path and query may hold tokens
        self.timeout_s, self.retries = timeout_s, retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.queue_size = queue_size
        self.headers = {"Content-Type": "application/json", "User-Agent": "maskwatch", **(headers or {})}
        self.stats = WebhookStats()
        self._queue: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._closed = False
        self._abort = threading.Event()
        self._last_warn: dict[str, float] = {}
        self._random = random.Random()
        self._thread = threading.Thread(target=self._run, name="maskwatch-webhook", daemon=True)
        self._thread.start()

    def __enter__(self) -> Webhook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Events queued and not yet taken by the worker."""
        return len(self._queue)

    def send(self, event: Event | dict, image: object = None) -> None:
        """Queue ``event`` (or a JSON record) for delivery and return at once; the oldest queued event is dropped
        when full. ``image`` is not sent."""
        record = event.to_json() if isinstance(event, Event) else event
        body = json.dumps(record, ensure_ascii=False, default=str).encode("utf-8")
        with self._cond:
            if self._closing:
                self.stats.dropped += 1
                self._warn("closed", f"webhook {self.name} is closed; event dropped")
                return
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self.stats.dropped += 1
                n = self.stats.dropped
                self._warn("full", f"webhook {self.name} is behind: queue full, dropping oldest events ({n} so far)")
            self._queue.append(body)
            self._cond.notify()

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout_s``, then drop the rest, stop the worker and log what it did;
        idempotent.

        Returns within about ``timeout_s + 1`` s; a POST still in flight then ends on its own timeout.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=max(timeout_s, 0.0))
        if self._thread.is_alive():
            self._abort.set()  # interrupts backoff waits; the event in flight is counted by the worker
            with self._cond:
                left = len(self._queue)
                self.stats.dropped += left
                self._queue.clear()
            if left:
                logger.warning(f"webhook {self.name}: {left} queued events not delivered before close")
            self._thread.join(timeout=1.0)  # a POST in flight may still run out its own timeout
        w = self.stats
        logger.info(f"webhook: {w.sent} sent ({w.retries} retries), {w.failed} failed, {w.dropped} dropped")

    def _warn(self, key: str, message: str) -> None:
        """Log ``message`` at most once a minute per ``key``."""
        now = time.monotonic()
        if now - self._last_warn.get(key, -_WARN_EVERY_S) >= _WARN_EVERY_S:
            self._last_warn[key] = now
            logger.warning(message)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                body = self._queue.popleft()
            try:
                self._deliver(body)
            except Exception as exc:  # never let the worker die: count it and go on
                self.stats.failed += 1
                logger.warning(f"webhook {self.name}: unexpected error: {scrub_url(exc)}")

    def _deliver(self, body: bytes) -> None:
        for attempt in range(self.retries + 1):
            if self._abort.is_set():
                break
            try:
                self._post(body)
            except _Retryable as exc:
                if attempt >= self.retries:
                    self.stats.failed += 1
                    self._warn("failed", f"webhook {self.name}: gave up after {attempt + 1} attempts: {exc}")
                    return
                wait = min(self.backoff_s * 2**attempt, self.max_backoff_s) * self._random.uniform(0.8, 1.2)
                if exc.retry_after is not None:
                    wait = min(exc.retry_after, self.max_backoff_s)
                self.stats.retries += 1
                logger.debug(f"webhook {self.name}: {exc}; retry {attempt + 1} in {wait:.2f} s")
                if self._abort.wait(wait):
                    break
                continue
            except urllib.error.HTTPError as exc:
                self.stats.failed += 1
                self._warn("rejected", f"webhook {self.name} rejected an event: HTTP {exc.code} {exc.reason}")
                return
            self.stats.sent += 1
            return
        with self._cond:
            self.stats.dropped += 1  # closed before it could be delivered

    def _post(self, body: bytes) -> None:
        """One POST; raises _Retryable for what is worth retrying and HTTPError for a final refusal."""
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                raise _Retryable(f"HTTP {exc.code}", retry_after) from None
            raise
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retryable(scrub_url(f"{type(exc).__name__}: {reason}")) from None


def _retry_after(value: str | None) -> float | None:
    """The seconds of a ``Retry-After`` header, or None (HTTP dates are ignored)."""
    try:
        seconds = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None
