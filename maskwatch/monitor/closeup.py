"""Close faces, one box each: a face that fills much of the frame is found again on the frame zoomed out.

The detector's largest anchors are smaller than a face that fills the frame, so such a face often comes out as two
shifted boxes, and which boxes come out changes with noise as small as a JPEG re-encoding. Seen at half the scale,
on the frame centred in a grey canvas twice its size, the same face fits the anchors and gets one box. So when the
first pass finds a face whose longer side is at least ``trigger`` of the frame's longer side, the detector runs once
more on that canvas; its faces of at least half that size replace every first-pass box they overlap (a face the
first pass did not find is not added), and a large first-pass box the zoomed-out pass does not confirm is dropped
(there, such faces fit the anchors). Frames without a close face cost nothing extra.
"""

from __future__ import annotations

import numpy as np

from maskwatch.metrics import intersection_over_smaller
from maskwatch.models.base import Detector
from maskwatch.types import FaceDetections

ZOOM_OUT = 2.0
"""The canvas is this many times the frame on each side."""
FILL = 114
"""Grey level of the canvas around the frame."""
REPLACES_IOS = 0.3
"""A first-pass box this much inside (or holding) a zoomed-out face is that face..."""
SAME_SCALE = 0.3
"""...when its longer side is at least this share of the zoomed-out face's (a smaller face beside it is another)."""
SURE = 0.5
"""Only faces the detector is this sure of (the default operating score) start the second pass or replace boxes,
whatever lower score the caller keeps (an evaluation keeps boxes down to 0.05)."""


def zoomed_out(image: np.ndarray, factor: float = ZOOM_OUT) -> tuple[np.ndarray, tuple[int, int]]:
    """``image`` centred in a grey canvas ``factor`` times its size, and the (x, y) of its corner in the canvas."""
    h, w = image.shape[:2]
    ch, cw = int(round(h * factor)), int(round(w * factor))
    y0, x0 = (ch - h) // 2, (cw - w) // 2
    canvas = np.full((ch, cw, 3), FILL, np.uint8)
    canvas[y0 : y0 + h, x0 : x0 + w] = image
    return canvas, (x0, y0)


def longer_sides(xyxy: np.ndarray) -> np.ndarray:
    return np.maximum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])


def needs_closeup_pass(image: np.ndarray, found: FaceDetections, trigger: float) -> bool:
    """True when ``found`` has a sure face whose longer side is at least ``trigger`` of the frame's longer side."""
    sure = found.xyxy[found.det_score >= SURE]
    return trigger > 0 and len(sure) > 0 and float(longer_sides(sure).max()) >= trigger * max(image.shape[:2])


def closeup_pass(
    detector: Detector, image: np.ndarray, found: FaceDetections, *, trigger: float, min_score: float
) -> FaceDetections:
    """``found`` with its close faces taken from a zoomed-out pass (see the module); unchanged without one."""
    if not needs_closeup_pass(image, found, trigger):
        return found
    h, w = image.shape[:2]
    canvas, (x0, y0) = zoomed_out(image)
    far = detector.detect(canvas)
    far = far[far.det_score >= max(min_score, SURE)]
    xyxy = far.xyxy - np.array([x0, y0, x0, y0], np.float32)
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
    overlap = intersection_over_smaller(xyxy, found.xyxy) >= REPLACES_IOS
    overlap &= longer_sides(found.xyxy)[None, :] >= SAME_SCALE * longer_sides(xyxy)[:, None]
    close = (longer_sides(xyxy) >= trigger / 2 * max(h, w)) & overlap.any(axis=1)  # replaces, never adds, a face
    if not close.any():
        return found
    big = FaceDetections(xyxy=xyxy[close], det_score=far.det_score[close])
    # seen zoomed out, large faces fit the anchors: a large first-pass box the second pass does not confirm is a
    # piece of the close face (its hair, its chin) or nothing
    unconfirmed = (longer_sides(found.xyxy) >= trigger / 2 * max(h, w)) & ~overlap.any(axis=0)
    covered = overlap[close].any(axis=0) | unconfirmed
    rest = found[np.flatnonzero(~covered)]
    merged = FaceDetections(
        xyxy=np.concatenate([big.xyxy, rest.xyxy]), det_score=np.concatenate([big.det_score, rest.det_score])
    )
    return merged[np.argsort(-merged.det_score, kind="stable")]
