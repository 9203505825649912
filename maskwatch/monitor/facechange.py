"""Non-rigid change inside a face: what tells a still living face from a picture of one.

A print, a painting or a frozen screen changes between two frames only as a whole (the camera's motion, the
face's own shift) plus sensor noise; a living face also changes inside itself (eyes blink, the mouth moves, the
head turns a little, light moves on skin) even when it stands still. :func:`interior_change` registers the face
window of the previous detector frame onto this one by the rigid motion (the camera's similarity transform plus
the face's own shift), and returns the share of pixels of the face's interior (eyes to mouth) whose residual
change is above what noise and a small misregistration explain: the noise level is measured on the whole
registered window (median absolute deviation, robust to the few pixels that really change), the misregistration
allowance grows with the local gradient (an edge shifted by a fraction of a pixel changes more than a flat patch).
"""

from __future__ import annotations

import cv2
import numpy as np

NOISE_FLOOR = 4.0
"""Smallest change (gray levels, after a light blur) ever counted: below it is compression and sensor noise."""
NOISE_SIGMAS = 3.0
"""A pixel changes when its residual exceeds this many noise standard deviations (and the floor)."""
SHIFT_PX = 0.5
"""Misregistration allowed (pixels): a pixel's residual must also exceed its gradient times this."""


def face_motion(before: np.ndarray, after: np.ndarray, camera: np.ndarray, step: np.ndarray) -> np.ndarray:
    """The face's rigid motion (2x3) from its points followed by optical flow (``before`` -> ``after``, N x 2,
    pixels): a similarity transform fitted to them, more precise than the camera's motion (measured on a small
    frame); the camera's motion plus the face's median shift ``step`` when the fit fails."""
    matrix = None
    if len(before) >= 6:
        matrix, _ = cv2.estimateAffinePartial2D(before.astype(np.float32), after.astype(np.float32), method=cv2.LMEDS)
    if matrix is None:
        matrix = np.asarray(camera, np.float64).copy()
        matrix[:, 2] += step
    return np.asarray(matrix, np.float64)


def interior_change(
    prev: np.ndarray, gray: np.ndarray, box: np.ndarray, motion: np.ndarray, *, size: int = 64
) -> float | None:
    """Share (0..1) of the face's interior that changed non-rigidly from ``prev`` to ``gray`` (one channel, the
    same size), or None when the face is too small or too close to the border to tell.

    ``box``: the face in ``gray`` (pixels); ``motion``: the 2x3 transform that maps ``prev`` onto ``gray`` at the
    face (camera motion plus the face's own shift). The window (the box with a quarter of its size around it) is
    resampled to about ``size`` pixels high, so the cost does not grow with the face.
    """
    h, w = gray.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = x2 - x1, y2 - y1
    if bw < 12 or bh < 12:
        return None
    a, b = int(max(x1 - 0.25 * bw, 0)), int(max(y1 - 0.25 * bh, 0))
    c, d = int(min(x2 + 0.25 * bw, w)), int(min(y2 + 0.25 * bh, h))
    scale = min(size / max(d - b, 1), 1.0)
    out_w, out_h = max(int(round((c - a) * scale)), 8), max(int(round((d - b) * scale)), 8)
    # map prev -> this window, resampled: window = scale * (gray - (a, b)) = scale * (motion @ prev - (a, b))
    to_window = np.asarray(motion, np.float64).copy()
    to_window[:, 2] -= (a, b)
    to_window *= scale
    before = cv2.warpAffine(prev, to_window, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    now = cv2.resize(gray[b:d, a:c], (out_w, out_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    before = cv2.GaussianBlur(before.astype(np.float32), (3, 3), 0)
    now = cv2.GaussianBlur(now.astype(np.float32), (3, 3), 0)
    residual = np.abs(now - before)
    # the noise: the residual's median absolute value on the ring around the face (the scene, the hair, the
    # collar: what a blink or a smile does not change)
    ring = np.ones(residual.shape, bool)
    ring[int((y1 - b) * scale) : int((y2 - b) * scale), int((x1 - a) * scale) : int((x2 - a) * scale)] = False
    if ring.sum() < 32:
        return None
    sigma = 1.4826 * float(np.median(residual[ring]))
    # an edge shifted a little is in both views; one that appears or vanishes (an eyelid, a lip) is in one only
    gradient = np.minimum(_gradient(now), _gradient(before))
    threshold = max(NOISE_SIGMAS * sigma, NOISE_FLOOR) + SHIFT_PX * gradient / 4  # Sobel: 4x the per-pixel gradient
    # the interior: eyes to mouth, no hair, no background at the edges
    ia, ib = int((x1 + 0.2 * bw - a) * scale), int((y1 + 0.2 * bh - b) * scale)
    ic, id_ = int((x2 - 0.2 * bw - a) * scale), int((y2 - 0.1 * bh - b) * scale)
    if ic - ia < 4 or id_ - ib < 4:
        return None
    changed = residual > threshold
    inner = float(changed[ib:id_, ia:ic].mean())
    around = float(changed[ring].mean()) if ring.any() else 0.0
    # a passer-by or a shadow over a picture changes its surroundings as much: only what changed inside counts
    return max(inner - 2.0 * around, 0.0)


def _gradient(image: np.ndarray) -> np.ndarray:
    """Absolute gradient (Sobel, x plus y; 4x the per-pixel difference on a ramp)."""
    return np.abs(cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3)) + np.abs(cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3))
