"""A cheap appearance signature of a face (with its hair) for re-identifying a person after a gap.

The signature is a hue-saturation histogram plus a coarse brightness layout of the face box widened upwards
(hair, forehead), L2-normalised, so the similarity of two signatures is their dot product (1 = the same).
"""

from __future__ import annotations

import cv2
import numpy as np

_HUE_BINS, _SAT_BINS, _GRID = 12, 4, 4


def appearance(image_bgr: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The signature of the face in ``box`` (pixels) of ``image_bgr``, or None when the box is (nearly) outside."""
    h, w = image_bgr.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = x2 - x1, y2 - y1
    a, b = int(max(x1 - 0.1 * bw, 0)), int(max(y1 - 0.3 * bh, 0))
    c, d = int(min(x2 + 0.1 * bw, w)), int(min(y2 + 0.05 * bh, h))
    if c - a < 4 or d - b < 4:
        return None
    crop = cv2.resize(image_bgr[b:d, a:c], (24, 24), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [_HUE_BINS, _SAT_BINS], [0, 180, 0, 256]).reshape(-1)
    hist = np.sqrt(hist / max(float(hist.sum()), 1.0))  # Hellinger: the dot product is the Bhattacharyya coefficient
    value = cv2.resize(hsv[:, :, 2], (_GRID, _GRID), interpolation=cv2.INTER_AREA).astype(np.float32).reshape(-1)
    value -= value.mean()
    value /= max(float(np.linalg.norm(value)), 1e-3)
    signature = np.concatenate([hist.astype(np.float32), 0.5 * value])
    return signature / max(float(np.linalg.norm(signature)), 1e-6)


def similarity(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Dot product of two signatures; 0 when either is unknown."""
    if a is None or b is None:
        return 0.0
    return float(np.dot(a, b))
