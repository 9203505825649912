"""Association rules beyond box overlap, for faces that move by more than their size between detector frames.

:func:`lookalike_swaps`: a person's track whose box overlaps a face that does not look like them, while a face
that does is free close by, takes that face instead. A fast walker leaves the place where the tracker expects
them, and a face that was behind them (a bystander, a poster) appears there: overlap alone hands the walker's
track, votes and all, to that face.

:func:`motion_pairs`: what is left of the people seen recently and of the confident detections is matched on the
distance from the motion model's predicted centre, within a reach that grows with the face's size and the time
since the track was last seen, when the face is of a similar size and does not look like someone else.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from maskwatch.monitor.kalman import box_area, linear_assignment
from maskwatch.monitor.reid import similarity

SWAP_MARGIN = 0.15
"""How much more alike (signature similarity) the free face must be than the overlapping one to be taken instead."""
SWAP_REACH = 3.0
"""How far (face heights, centre to centre) from the track's expected box a free face may be taken from."""
MOTION_REACH = 1.5
"""The motion pass's reach from the predicted centre (face heights), plus the same again per detector frame unseen."""
MAX_AREA_RATIO = 2.0


def _centres(xyxy: np.ndarray) -> np.ndarray:
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return (xyxy[:, :2] + xyxy[:, 2:]) / 2


def _heights(xyxy: np.ndarray) -> np.ndarray:
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.maximum(xyxy[:, 3] - xyxy[:, 1], 1.0)


def _similar_size(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)): whether the boxes' areas differ by at most :data:`MAX_AREA_RATIO` times."""
    ratio = box_area(np.asarray(a, np.float64).reshape(-1, 4))[:, None] / np.maximum(
        box_area(np.asarray(b, np.float64).reshape(-1, 4))[None, :], 1e-6
    )
    return (ratio <= MAX_AREA_RATIO) & (ratio >= 1.0 / MAX_AREA_RATIO)


def lookalike_swaps(
    pairs: list[tuple[int, int]],
    track_xyxy: np.ndarray,
    track_features: list[np.ndarray | None],
    det_xyxy: np.ndarray,
    free: list[int],
    feature: Callable[[int], np.ndarray | None],
    similar: float,
) -> list[tuple[int, int]]:
    """``pairs`` (track index, detection index) with a track moved to a free detection (``free``: detection
    indices) that looks like it (signature similarity ``>= similar`` and :data:`SWAP_MARGIN` above its paired
    one's, which is below ``similar``), of a similar size, within :data:`SWAP_REACH` face heights of its box.
    ``track_features[t]`` None (unknown appearance) keeps the pair; ``feature(d)`` is detection ``d``'s
    signature (computed only where a free face is within reach)."""
    if not pairs or not free:
        return pairs
    free = list(free)
    out = []
    for t, d in pairs:
        known = track_features[t]
        box = np.asarray(track_xyxy[t], np.float64)
        near = [
            f
            for f in free
            if np.hypot(*(_centres(det_xyxy[f])[0] - _centres(box)[0])) <= SWAP_REACH * _heights(box)[0]
            and _similar_size(box, det_xyxy[f])[0, 0]
        ]
        if known is None or not near:
            out.append((t, d))
            continue
        held = similarity(known, feature(d))
        best, best_sim = None, max(similar, held + SWAP_MARGIN)
        for f in near:
            sim = similarity(known, feature(f))
            if held < similar and sim >= best_sim:
                best, best_sim = f, sim
        if best is None:
            out.append((t, d))
        else:
            out.append((t, best))
            free = [f for f in free if f != best] + [d]
    return out


def motion_pairs(
    predicted_xyxy: np.ndarray,
    unseen_updates: np.ndarray,
    track_features: list[np.ndarray | None],
    det_xyxy: np.ndarray,
    feature: Callable[[int], np.ndarray | None],
    different: float | np.ndarray,
) -> list[tuple[int, int]]:
    """Optimal (track, detection) pairs by the distance of the detection's centre from the track's predicted
    centre, in face heights, within ``MOTION_REACH * (1 + unseen_updates)`` of it; of a similar size; and, where
    both signatures are known, not looking different (similarity ``>= different``)."""
    if len(predicted_xyxy) == 0 or len(det_xyxy) == 0:
        return []
    gap = np.linalg.norm(_centres(predicted_xyxy)[:, None, :] - _centres(det_xyxy)[None, :, :], axis=-1)
    gap /= _heights(predicted_xyxy)[:, None]
    reach = MOTION_REACH * (1.0 + np.asarray(unseen_updates, np.float64))[:, None]
    ok = (gap <= reach) & _similar_size(predicted_xyxy, det_xyxy)
    floor = np.broadcast_to(np.asarray(different, np.float64), (len(predicted_xyxy),))
    for t, d in zip(*np.nonzero(ok), strict=True):
        known = track_features[int(t)]
        if known is not None:
            sig = feature(int(d))
            ok[t, d] = sig is None or similarity(known, sig) >= floor[t]
    cost = np.where(ok, gap / reach, 1.0 + 1e-6)
    return [(t, d) for t, d in linear_assignment(cost) if ok[t, d]]
