"""The latest frame of one source of the HTTP view, and its JPEG (encoded once, shared by every client)."""

from __future__ import annotations

import threading

import cv2

from maskwatch.errors import OutputError
from maskwatch.outputs.picture import Picture


class Channel:
    """The latest frame of one source: its picture (drawn only when a client asks for it), its index, a write counter
    (streams key on it) and its JPEG."""

    def __init__(self) -> None:
        self.frame: Picture | None = None
        self.index: int | None = None
        self.seq = -1
        self.jpeg: tuple[int, bytes] | None = None
        self._lock = threading.Lock()

    def encode(self, seq: int, frame: Picture, quality: int) -> tuple[int, bytes]:
        """(seq, JPEG) of write number ``seq`` (``frame``): drawn and encoded by the first client that asks (on its
        thread), then shared."""
        with self._lock:
            if self.jpeg is None or self.jpeg[0] < seq:
                image = frame.annotated()
                if image is None:
                    raise OutputError("cannot draw the frame")
                ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
                if not ok:
                    raise OutputError("cannot encode the frame as JPEG")
                self.jpeg = (seq, buf.tobytes())
            return self.jpeg
