"""A processed frame as the frame sinks get it: the frame, and its overlay drawn only when a sink needs the pixels.

Drawing a frame costs about as much as a few milliseconds of detection on a small frame, and most frames are never
seen: the HTTP view encodes a frame only while someone watches (and at most ``max_stream_fps`` a second), the clips
write frames only around an alert. A sink that declares itself ``lazy`` (:class:`PictureSink`) is handed a
:class:`Picture` and asks for :meth:`Picture.annotated` only for the frames it uses, on its own thread.
"""

from __future__ import annotations

import threading
from typing import Protocol

import cv2
import numpy as np

from maskwatch.outputs.render import Overlay
from maskwatch.types import FrameResult

Stored = np.ndarray | bytes
"""An image as a picture holds it: the array, or its JPEG bytes."""


class Picture:
    """The image of one processed frame: ``raw`` (the frame as captured) and ``overlay`` (what the renderer planned
    for it; None: nothing is drawn), drawn at the first call of :meth:`annotated`, once, whichever thread asks first;
    the others get the same array, which nobody may change.

    A picture kept for long can be :meth:`compressed` to JPEG (the drawn image when it was drawn, else the frame, with
    its overlay still to draw)."""

    __slots__ = ("overlay", "_raw", "_drawn", "_lock")

    def __init__(self, raw: Stored, overlay: Overlay | None = None, *, drawn: Stored | None = None) -> None:
        self.overlay = overlay
        self._raw = raw
        self._drawn = drawn if drawn is not None else (raw if overlay is None else None)
        self._lock = threading.Lock()

    @classmethod
    def of(cls, image: np.ndarray) -> Picture:
        """A picture whose image is ``image`` as it is (already drawn, or nothing to draw)."""
        return cls(image)

    @property
    def is_drawn(self) -> bool:
        return self._drawn is not None

    @property
    def in_memory(self) -> bool:
        """False for a :meth:`compressed` picture."""
        return isinstance(self._raw, np.ndarray)

    @property
    def nbytes(self) -> int:
        """The memory of the images it holds (raw and drawn, arrays or JPEG bytes)."""
        held = [self._raw] if self._drawn is None or self._drawn is self._raw else [self._raw, self._drawn]
        return sum(part.nbytes if isinstance(part, np.ndarray) else len(part) for part in held)

    def raw(self) -> np.ndarray | None:
        """The frame without the overlay (decoded when compressed; None if it cannot be)."""
        return _image(self._raw)

    def annotated(self) -> np.ndarray | None:
        """The frame with its overlay: drawn now if no one asked before (None: a compressed picture that cannot be
        decoded)."""
        with self._lock:
            if self._drawn is not None:
                return _image(self._drawn)
            base = _image(self._raw)
            if base is None or self.overlay is None:
                return base
            image = self.overlay.draw(base)
            if isinstance(self._raw, np.ndarray):  # a compressed one is drawn when written, and not kept drawn
                self._drawn = image
            return image

    def compressed(self, quality: int) -> Picture | None:
        """A copy holding JPEG bytes at ``quality`` (about 1/20 of the memory); None when it cannot be encoded."""
        with self._lock:
            if self._drawn is not None:
                data = _jpeg(self._drawn, quality)
                return None if data is None else Picture(data, drawn=data)
            raw = _jpeg(self._raw, quality)
            return None if raw is None else Picture(raw, self.overlay)


class PictureSink(Protocol):
    """A frame sink that draws only what it uses (``lazy`` True): it is handed each frame's :class:`Picture` through
    ``write_picture`` instead of the drawn image through ``write``. ``write_picture`` must not wait for drawing."""

    lazy: bool

    def write_picture(self, result: FrameResult, picture: Picture) -> None: ...


def _image(data: Stored) -> np.ndarray | None:
    if isinstance(data, np.ndarray):
        return data
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _jpeg(data: Stored, quality: int) -> bytes | None:
    if isinstance(data, bytes):
        return data
    ok, encoded = cv2.imencode(".jpg", data, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return encoded.tobytes() if ok else None
