"""The frames of the last seconds before an alert, kept for the next clip (:mod:`maskwatch.outputs.clips`).

Frames are kept as the sinks got them (:class:`~maskwatch.outputs.picture.Picture`: the frame, drawn only if a clip
uses it) while all the kept ones fit in a memory budget (no work per frame: a 480x360 frame is 0.5 MB, 5 s of it at
25 fps 65 MB), and JPEG-encoded beyond it (about 1/20 of the memory, about 1 ms a 480x360 frame to encode and as long
again to decode when a clip is written). A budget too small for all of them keeps as many as fit in memory; a budget
of 0 encodes every frame.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from maskwatch.outputs.picture import Picture


class FrameRing:
    """The kept frames of the last ``seconds``, oldest first, at most ``max_frames`` of them; in memory while their
    images together stay within ``budget_bytes``, JPEG at ``jpeg_quality`` beyond.

    The pictures kept in memory are the ones handed in, not copies: a frame sink's image is not changed after it is
    written."""

    def __init__(self, *, seconds: float, max_frames: int, budget_bytes: float, jpeg_quality: int = 85) -> None:
        self.seconds, self.max_frames = seconds, max(1, max_frames)
        self.budget_bytes, self.jpeg_quality = budget_bytes, jpeg_quality
        self.raw_bytes = 0
        """Bytes of the pictures kept in memory (as they were when kept), never more than ``budget_bytes``."""
        self.encoded = 0
        """How many frames were JPEG-encoded, in all."""
        self._items: deque[tuple[float, Picture, int]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[float, Picture]]:
        return ((t, picture) for t, picture, _ in self._items)

    def span_s(self) -> float:
        """Seconds from the oldest kept frame to the newest (0 with fewer than two)."""
        return self._items[-1][0] - self._items[0][0] if len(self._items) >= 2 else 0.0

    def add(self, t: float, picture: Picture) -> Picture | None:
        """Keep the frame at ``t``, dropping those more than ``seconds`` older; what was kept (None: it could not be
        encoded)."""
        while self._items and self._items[0][0] < t - self.seconds:
            self._pop()
        while len(self._items) >= self.max_frames:
            self._pop()
        size = picture.nbytes
        if self.raw_bytes + size <= self.budget_bytes:
            self._items.append((t, picture, size))
            self.raw_bytes += size
            return picture
        kept = picture.compressed(self.jpeg_quality)
        self.encoded += 1
        if kept is not None:
            self._items.append((t, kept, 0))
        return kept

    def clear(self) -> None:
        self._items.clear()
        self.raw_bytes = 0

    def _pop(self) -> None:
        self.raw_bytes -= self._items.popleft()[2]
