"""Alert notifications through Apprise (``notify:`` URLs, ``--notify URL``): phones, chat, e-mail, any JSON endpoint.

:class:`Notifier` is an :class:`~maskwatch.outputs.events.EventSink`. On each ``alert`` it cuts the face out of the
frame (blurred when faces are blurred) and queues the message; its own thread sends it to every URL, retrying with
backoff. The queue is bounded (the oldest waiting notification is dropped when it is full, counted as a fault of
``notify``); ``close`` delivers what is waiting for at most ``close_timeout_s``.
"""

from __future__ import annotations

import collections
import mimetypes
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np
from loguru import logger

from maskwatch.errors import ConfigError
from maskwatch.monitor.crop import crop_face
from maskwatch.outputs.clips import safe_part, short_source_name
from maskwatch.outputs.render import blur_boxes
from maskwatch.runner.faults import record_fault
from maskwatch.types import Event, MaskClass

INSTALL_HINT = "pip install 'maskwatch[notify]'"
_USERINFO_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/:@\s]*:)[^/@\s]*@")
_SECRET_QUERY = re.compile(r"(?i)([?&](?:pass|password|token|key|apikey|secret|pw)=)[^&#\s]*")
_LONG_TOKEN = re.compile(r"(?<=[/:])[A-Za-z0-9_\-]{20,}")


def mask_url(url: str) -> str:
    """``url`` fit for a log line: the password of ``user:password@``, secret query values (``token=``,
    ``password=``...) and long token-like path parts (a bot token, a webhook key) as ``***``."""
    masked = _USERINFO_PASSWORD.sub(r"\g<head>***@", url)
    masked = _SECRET_QUERY.sub(r"\g<1>***", masked)
    return _LONG_TOKEN.sub("***", masked)


def load_apprise(urls: Sequence[str]) -> Any:
    """An ``apprise.Apprise`` holding ``urls``. One line (:class:`ConfigError`) when apprise is not installed or a
    URL is one apprise cannot use (its password masked)."""
    try:
        import apprise
    except ModuleNotFoundError:
        raise ConfigError(f"notifications (--notify, notify:) need the 'apprise' package: {INSTALL_HINT}") from None
    hub = apprise.Apprise()
    for url in urls:
        if not isinstance(url, str) or not url.strip() or not hub.add(url.strip()):
            raise ConfigError(f"notify URL {mask_url(str(url))!r} is not one apprise can use (see its URL list)")
    mimetypes.init()  # read now what the first picture sent needs, not in the middle of the run
    return hub


@dataclass
class Message:
    """One notification: title, text, the face as JPEG bytes (None: no picture)."""

    title: str
    body: str
    image_jpeg: bytes | None
    image_name: str


def alert_message(event: Event, face_jpeg: bytes | None) -> Message:
    """The notification of an ``alert``: who (label, confidence), where (source) and when (UTC)."""
    try:
        label = MaskClass.from_key(event.label or "").description
    except KeyError:
        label = event.label or "unknown"
    try:
        when = datetime.fromisoformat(event.ts).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        when = event.ts
    body = f"{label} ({event.confidence:.0%} confident), person {event.track_id}, at {when}"
    name = f"{safe_part(event.source)}_{event.track_id}_{event.frame}.jpg"
    return Message(f"Unmasked person at {short_source_name(event.source)}", body, face_jpeg, name)


class Notifier:
    """Sends each alert (text and face picture) to every Apprise URL, from its own thread.

    ``hub``: an ``apprise.Apprise`` (see :func:`load_apprise`). ``send`` never blocks: it cuts and encodes the face
    (``blur``: pixelated; ``crop_margin`` as the classifier's crops) and queues the message (at most
    ``queue_size``). A failed delivery is retried ``retries`` times, ``backoff_s`` doubling between tries.
    """

    def __init__(
        self,
        hub: Any,
        *,
        blur: bool = False,
        crop_margin: float = 0.15,
        queue_size: int = 32,
        retries: int = 2,
        backoff_s: float = 2.0,
        close_timeout_s: float = 10.0,
    ) -> None:
        self.hub = hub
        self.blur, self.crop_margin = blur, crop_margin
        self.queue_size, self.retries, self.backoff_s = max(1, queue_size), retries, backoff_s
        self.close_timeout_s = close_timeout_s
        self.sent = self.failed = self.dropped = 0
        self._pending: collections.deque[Message] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._busy = False
        self._thread = threading.Thread(target=self._work, name="maskwatch-notify", daemon=True)
        self._thread.start()

    def send(self, event: Event, image: np.ndarray) -> None:
        if event.event != "alert" or self._closing:
            return
        message = alert_message(event, self._face(event, image))
        with self._cond:
            if len(self._pending) >= self.queue_size:
                self._pending.popleft()
                self.dropped += 1
                record_fault("notify", f"{self.queue_size} notifications waiting: the oldest was dropped")
            self._pending.append(message)
            self._cond.notify_all()

    def _face(self, event: Event, image: np.ndarray) -> bytes | None:
        """The face of ``event`` as JPEG (blurred with ``blur``), or None when it cannot be cut."""
        try:
            box = np.asarray(event.box, np.float32)
            crop = crop_face(blur_boxes(image, box[None]) if self.blur else image, box, self.crop_margin)
            ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
        except (ValueError, cv2.error):
            return None
        return data.tobytes() if ok else None

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                message = self._pending.popleft()
                self._busy = True
            try:
                self._deliver(message)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, message: Message) -> None:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                if self._notify_once(message):
                    self.sent += 1
                    return
            except Exception as exc:  # a plugin's own fault: counted, never raised into the run
                logger.debug(f"notify: {type(exc).__name__}: {exc}")
            if attempt < self.retries and not self._wait_stop(delay):
                delay *= 2
            elif attempt < self.retries:
                break  # closing: no more waiting between tries
        self.failed += 1
        record_fault("notify", f"could not deliver '{message.title}' to every notify URL")

    def _notify_once(self, message: Message) -> bool:
        attach = None
        if message.image_jpeg is not None:
            from apprise.attachment.memory import AttachMemory

            attach = AttachMemory(content=message.image_jpeg, name=message.image_name, mimetype="image/jpeg")
        return bool(self.hub.notify(body=message.body, title=message.title, attach=attach))

    def _wait_stop(self, seconds: float) -> bool:
        """Wait ``seconds`` before the next try; True when closing began meanwhile."""
        with self._cond:
            self._cond.wait_for(lambda: self._closing, timeout=seconds)
            return self._closing

    def close(self) -> None:
        """Deliver what is waiting, for at most ``close_timeout_s``; then give up (counted as faults)."""
        with self._cond:
            if self._closing:
                return
            deadline = time.monotonic() + self.close_timeout_s
            self._cond.wait_for(lambda: not self._pending and not self._busy, timeout=self.close_timeout_s)
            self._closing = True
            left = len(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()) + 0.1)
        if left:
            self.failed += left
            record_fault("notify", f"{left} notification(s) not sent before the run ended")
        if self.sent or self.failed:
            logger.info(f"notify: {self.sent} sent, {self.failed} failed, {self.dropped} dropped")
