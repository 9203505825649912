"""The latest frame of one source of the HTTP view, and its JPEG (encoded once, shared by every client)."""

from __future__ import annotations

import threading

import cv2
import numpy as np

from maskwatch.errors import OutputError


class Channel:
    """The latest frame of one source: the array, its index, a write counter (streams key on it) and its JPEG."""

    def __init__(self) -> None:
        self.frame: np.ndarray | None = None
        self.index: int | None = None
        self.seq = -1
        self.jpeg: tuple[int, bytes] | None = None
        self._lock = threading.Lock()

    def encode(self, seq: int, frame: np.ndarray, quality: int) -> tuple[int, bytes]:
        """(seq, JPEG) of write number ``seq`` (``frame``): encoded by the first client that asks, then shared."""
        with self._lock:
            if self.jpeg is None or self.jpeg[0] < seq:
                ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
                if not ok:
                    raise OutputError("cannot encode the frame as JPEG")
                self.jpeg = (seq, buf.tobytes())
            return self.jpeg
