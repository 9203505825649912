"""The frames of the last seconds before an alert, kept for the next clip (:mod:`maskwatch.outputs.clips`).

Frames are kept as they are while all the kept ones fit in a memory budget (no work per frame: a 480x360 frame is
0.5 MB, 5 s of it at 25 fps 65 MB), and JPEG-encoded beyond it (about 1/20 of the memory, about 1 ms a 480x360 frame
to encode and as long again to decode when a clip is written). A budget too small for all of them keeps as many as
fit uncompressed; a budget of 0 encodes every frame.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import cv2
import numpy as np

Kept = bytes | np.ndarray
"""A kept frame: the image itself, or its JPEG bytes."""


def as_image(data: Kept) -> np.ndarray | None:
    """The image of a kept frame (decoded when it was encoded; None if it cannot be)."""
    if isinstance(data, np.ndarray):
        return data
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


class FrameRing:
    """The kept frames of the last ``seconds``, oldest first, at most ``max_frames`` of them; raw while their
    images together stay within ``budget_bytes``, JPEG at ``jpeg_quality`` beyond.

    The images kept raw are the frames handed in, not copies: a frame sink's image is not changed after it is
    written."""

    def __init__(self, *, seconds: float, max_frames: int, budget_bytes: float, jpeg_quality: int = 85) -> None:
        self.seconds, self.max_frames = seconds, max(1, max_frames)
        self.budget_bytes, self.jpeg_quality = budget_bytes, jpeg_quality
        self.raw_bytes = 0
        """Bytes of the images kept raw, never more than ``budget_bytes``."""
        self.encoded = 0
        """How many frames were JPEG-encoded, in all."""
        self._items: deque[tuple[float, Kept]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[float, Kept]]:
        return iter(self._items)

    def span_s(self) -> float:
        """Seconds from the oldest kept frame to the newest (0 with fewer than two)."""
        return self._items[-1][0] - self._items[0][0] if len(self._items) >= 2 else 0.0

    def add(self, t: float, image: np.ndarray) -> Kept | None:
        """Keep the frame at ``t``, dropping those more than ``seconds`` older; what was kept (None: it could not be
        encoded)."""
        while self._items and self._items[0][0] < t - self.seconds:
            self._pop()
        while len(self._items) >= self.max_frames:
            self._pop()
        data = self._keepable(image)
        if data is not None:
            self._items.append((t, data))
            if isinstance(data, np.ndarray):
                self.raw_bytes += data.nbytes
        return data

    def clear(self) -> None:
        self._items.clear()
        self.raw_bytes = 0

    def _keepable(self, image: np.ndarray) -> Kept | None:
        if self.raw_bytes + image.nbytes <= self.budget_bytes:
            return image
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        self.encoded += 1
        return encoded.tobytes() if ok else None

    def _pop(self) -> None:
        _, data = self._items.popleft()
        if isinstance(data, np.ndarray):
            self.raw_bytes -= data.nbytes
