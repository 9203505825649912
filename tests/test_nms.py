"""The detector's NMS (OpenCV's ``cv2.dnn.NMSBoxes``) keeps the boxes a plain greedy NMS keeps, in the same order."""

from __future__ import annotations

import numpy as np
import pytest

from maskwatch.models.onnx_engine import nms


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou: float, limit: int | None) -> list[int]:
    """The textbook algorithm: best box first, drop every box overlapping a kept one by IoU > ``iou``."""
    keep: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if limit is not None and len(keep) == limit:
            break
        a = boxes[i]
        overlaps = []
        for j in keep:
            b = boxes[j]
            w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
            overlaps.append(w * h / union)
        if not any(o > iou for o in overlaps):
            keep.append(int(i))
    return keep


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("iou", [0.3, 0.5])
def test_nms_keeps_what_greedy_nms_keeps(seed: int, iou: float) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    xy = rng.uniform(0, 200, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (n, 2))], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    scores[:10] = scores[10]  # ties keep their index order
    assert nms(boxes, scores, iou, 20).tolist() == greedy_nms(boxes, scores, iou, 20)
    assert nms(boxes, scores, iou).tolist() == greedy_nms(boxes, scores, iou, None)


def test_nms_of_nothing_is_nothing() -> None:
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.4).tolist() == []
