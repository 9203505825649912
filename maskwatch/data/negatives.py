"""Non-face boxes cut from annotated scenes: the classifier's "not a face" training target and its check.

A background box is sized like the scene's faces (so it looks like a detector box), shaped like a face box, and
overlaps no annotated face by more than a small share of either box. Sampling is deterministic for a given
generator, so the same scenes give the same check set.
"""

from __future__ import annotations

import numpy as np

MAX_FACE_OVERLAP = 0.2
"""A background box may cover at most this share of any face, and a face at most this share of the box."""
MIN_SIDE = 12.0


def non_face_rates(prob: np.ndarray) -> dict:
    """Class probabilities (N, 3) of crops holding no face -> the share called ``with_mask`` at p >= 0.5, the share
    with any class at p >= 0.5, and the mean top probability (what ``eval`` and training report)."""
    prob = np.asarray(prob, np.float64).reshape(-1, 3)
    if not len(prob):
        return {"crops": 0}
    return {
        "crops": len(prob),
        "with_mask_ge_0.5": round(float((prob[:, 0] >= 0.5).mean()), 4),
        "any_class_ge_0.5": round(float((prob.max(1) >= 0.5).mean()), 4),
        "mean_top_prob": round(float(prob.max(1).mean()), 4),
    }


def overlap_shares(box: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersection of ``box`` with each face as a share of the face's area and of the box's area."""
    if len(faces) == 0:
        return np.zeros(0), np.zeros(0)
    ix = np.clip(np.minimum(box[2], faces[:, 2]) - np.maximum(box[0], faces[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], faces[:, 3]) - np.maximum(box[1], faces[:, 1]), 0, None)
    inter = ix * iy
    face_area = np.maximum((faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1]), 1e-6)
    box_area = max(float((box[2] - box[0]) * (box[3] - box[1])), 1e-6)
    return inter / face_area, inter / box_area


def is_background(box: np.ndarray, faces: np.ndarray, max_overlap: float = MAX_FACE_OVERLAP) -> bool:
    """True when ``box`` holds no real share of any face in ``faces`` (N, 4)."""
    of_face, of_box = overlap_shares(np.asarray(box, np.float64), np.asarray(faces, np.float64).reshape(-1, 4))
    return bool(len(of_face) == 0 or (of_face.max() <= max_overlap and of_box.max() <= max_overlap))


def expand(box: np.ndarray, margin: float) -> np.ndarray:
    """``box`` grown by ``margin`` of its width / height on each side (the region a crop with that margin holds)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return np.array([x0 - dx, y0 - dy, x1 + dx, y1 + dy])


def background_boxes(
    size: tuple[int, int],
    faces: np.ndarray,
    n: int,
    rng: np.random.Generator,
    margin: float = 0.15,
    tries: int = 50,
) -> np.ndarray:
    """Up to ``n`` background boxes (K, 4) float32 in a ``size`` = (width, height) image with ``faces`` (N, 4).

    Each box takes the side of a random face of the scene (x0.7-1.5; 24-96 px when there is none), a face-like
    height/width ratio of 1.0-1.35, and a random place; a box whose crop (the box grown by ``margin`` per side, as
    the pipeline cuts it) overlaps a face is drawn again.
    """
    w, h = size
    faces = np.asarray(faces, np.float64).reshape(-1, 4)
    sides = np.maximum(faces[:, 2] - faces[:, 0], faces[:, 3] - faces[:, 1]) if len(faces) else np.array([])
    out: list[list[float]] = []
    for _ in range(n * tries):
        if len(out) >= n:
            break
        base = float(rng.choice(sides)) * rng.uniform(0.7, 1.5) if len(sides) else rng.uniform(24, 96)
        bw = max(MIN_SIDE, base / np.sqrt(rng.uniform(1.0, 1.35)))
        bh = bw * rng.uniform(1.0, 1.35)
        if bw >= w or bh >= h:
            continue
        x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        box = np.array([x0, y0, x0 + bw, y0 + bh])
        if is_background(expand(box, margin), faces):
            out.append(box.tolist())
    return np.asarray(out, np.float32).reshape(-1, 4)
