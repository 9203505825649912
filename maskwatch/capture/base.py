"""The capture stage's door: what every frame source provides."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Source(Protocol):
    """A frame source. ``read`` returns the next BGR uint8 frame with its name, or None.

    ``is_live``: frames arrive on their own clock, so a slow consumer drops the oldest instead of waiting.
    ``finite``: None from ``read`` means the end; otherwise it is a stall (waited out up to a timeout).
    """

    name: str
    is_live: bool
    finite: bool
    fps: float
    frame_count: int | None

    def read(self) -> tuple[np.ndarray, str] | None: ...

    def close(self) -> None: ...
