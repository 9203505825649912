"""Cutting face crops out of frames: one function, shared by the pipeline and the classifier's training.

The classifier is trained on crops cut by :func:`crop_face` and fed crops cut by it at run time, so the
context margin and clipping rules are the same in both places.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DEFAULT_CROP_MARGIN = 0.15
"""Context added per side, as a fraction of the box width (left/right) and height (top/bottom)."""


def crop_bounds(
    size_wh: tuple[int, int], box_xyxy: Sequence[float] | np.ndarray, margin: float
) -> tuple[int, int, int, int]:
    """Integer pixel bounds ``(x0, y0, x1, y1)`` (end-exclusive) of :func:`crop_face`'s crop in a ``size_wh`` frame.

    The box is widened by ``margin`` * its width/height on each side, rounded outwards, clipped to the frame
    and kept at least one pixel wide and high, even for zero-size boxes or boxes outside the frame.
    """
    w, h = int(size_wh[0]), int(size_wh[1])
    if w < 1 or h < 1:
        raise ValueError(f"cannot crop from an empty frame of size {w}x{h}")
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"box {list(box_xyxy)} has non-finite coordinates")
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    ix0 = min(max(math.floor(x0 - mx), 0), w - 1)
    iy0 = min(max(math.floor(y0 - my), 0), h - 1)
    ix1 = max(min(math.ceil(x1 + mx), w), ix0 + 1)
    iy1 = max(min(math.ceil(y1 + my), h), iy0 + 1)
    return ix0, iy0, ix1, iy1


def crop_face(
    image_bgr: np.ndarray, box_xyxy: Sequence[float] | np.ndarray, margin: float = DEFAULT_CROP_MARGIN
) -> np.ndarray:
    """Cut the face in ``box_xyxy`` (pixels) with ``margin`` context per side out of ``image_bgr``.

    The crop is clipped to the frame and never empty (at least 1x1). It is a view into the frame,
    so copy it before changing it in place.
    """
    h, w = image_bgr.shape[:2]
    x0, y0, x1, y1 = crop_bounds((w, h), box_xyxy, margin)
    return image_bgr[y0:y1, x0:x1]
