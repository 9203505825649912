"""The tracker's arithmetic (numpy only): optimal assignment, IoU-gated matching, and a constant-velocity Kalman
filter on ``(cx, cy, w/h, h)`` with noise that scales with the box height (as in SORT / ByteTrack)."""

from __future__ import annotations

import numpy as np

from maskwatch.metrics import box_iou

STD_POS = 1.0 / 20.0  # position noise per pixel of box height (as in SORT/ByteTrack)
STD_VEL = 1.0 / 160.0  # velocity noise per pixel of box height


def linear_assignment(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost assignment of a rectangular cost matrix (Hungarian method with potentials).

    Returns ``(row, col)`` pairs sorted by row; ``min(rows, cols)`` pairs, each row and column used once.
    """
    cost = np.asarray(cost, np.float64)
    if cost.size == 0:
        return []
    if cost.shape[0] > cost.shape[1]:
        return sorted((r, c) for c, r in linear_assignment(cost.T))
    n, m = cost.shape
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    owner = np.zeros(m + 1, np.int64)  # owner[j]: 1-based row assigned to column j (0: free)
    way = np.zeros(m + 1, np.int64)
    for i in range(1, n + 1):
        owner[0], j0 = i, 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while True:
            used[j0] = True
            i0 = owner[j0]
            free = ~used[1:]
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[owner[used]] += delta
            v[used] -= delta
            minv[~used] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    return sorted((int(owner[j]) - 1, j - 1) for j in range(1, m + 1) if owner[j])


def box_area(xyxy: np.ndarray) -> np.ndarray:
    return np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)


def buffered(xyxy: np.ndarray, b: float) -> np.ndarray:
    """Boxes (N, 4) widened by ``b`` times their width and height on every side."""
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
    pad = np.concatenate([xyxy[:, 2:] - xyxy[:, :2]] * 2, axis=1) * b
    return xyxy + pad * np.array([-1, -1, 1, 1], np.float32)


def match(
    tracks_xyxy: np.ndarray,
    dets_xyxy: np.ndarray,
    min_iou: float,
    max_scale: float = 2.0,
    allowed: np.ndarray | None = None,
) -> list[tuple[int, int]]:
    """Optimal track-detection pairs with IoU >= ``min_iou`` whose areas differ by at most ``max_scale`` times.

    A gated pair costs as much as leaving both unmatched. The scale gate keeps a face that appears where a
    different-sized one was lost a moment ago (the next person at a door, a scene cut) from inheriting its id.
    ``allowed`` (tracks x detections, bool) gates pairs further (after a cut: only faces that look alike).
    """
    if len(tracks_xyxy) == 0 or len(dets_xyxy) == 0:
        return []
    iou = box_iou(tracks_xyxy, dets_xyxy)
    ratio = box_area(tracks_xyxy)[:, None] / np.maximum(box_area(dets_xyxy)[None, :], 1e-6)
    ok = (iou >= min_iou) & (ratio <= max_scale) & (ratio >= 1.0 / max_scale)
    if allowed is not None:
        ok &= allowed
    cost = np.where(ok, 1.0 - iou, 1.0 - min_iou + 1e-6)
    return [(t, d) for t, d in linear_assignment(cost) if ok[t, d]]


def xyxy_to_z(xyxy: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    w, h = max(x2 - x1, 1e-3), max(y2 - y1, 1e-3)
    return np.array([x1 + w / 2, y1 + h / 2, w / h, h])


def state_to_xyxy(mean: np.ndarray) -> np.ndarray:
    """Box of a Kalman state, made valid (positive width and height)."""
    cx, cy, aspect, h = mean[:4]
    h = max(float(h), 1.0)
    w = max(float(aspect) * h, 1.0)
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)


_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)


def kf_init(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = z[3]
    mean = np.concatenate([z, np.zeros(4)])
    std = [2 * STD_POS * h, 2 * STD_POS * h, 1e-2, 2 * STD_POS * h]
    std += [10 * STD_VEL * h, 10 * STD_VEL * h, 1e-5, 10 * STD_VEL * h]
    return mean, np.diag(np.square(std))


def kf_predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = max(abs(mean[3]), 1.0)
    std = [STD_POS * h, STD_POS * h, 1e-2, STD_POS * h, STD_VEL * h, STD_VEL * h, 1e-5, STD_VEL * h]
    return _F @ mean, _F @ cov @ _F.T + np.diag(np.square(std))


def kf_update(mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = max(abs(mean[3]), 1.0)
    r = np.diag(np.square([STD_POS * h, STD_POS * h, 1e-1, STD_POS * h]))
    s = _H @ cov @ _H.T + r
    gain = np.linalg.solve(s, _H @ cov).T  # cov H^T S^-1 (S and cov symmetric)
    return mean + gain @ (z - _H @ mean), cov - gain @ s @ gain.T
