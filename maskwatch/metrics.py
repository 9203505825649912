"""Detection metrics (numpy only): greedy IoU matching, VOC all-point average precision and recall.

Everything is class-agnostic: for per-class AP, call :func:`average_precision` once per class with that class's
predictions and ground truth. Boxes are ``xyxy`` in pixels; IoU uses continuous coordinates (no VOC "+1").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU (len(a), len(b)) of two sets of ``xyxy`` boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class ImageMatch:
    """Greedy matching of one image: ``pred_tp`` (per prediction, input order), ``gt_matched`` (per GT box)
    and ``pred_gt`` (per prediction, the index of its matched GT box or -1)."""

    pred_tp: np.ndarray
    gt_matched: np.ndarray
    pred_gt: np.ndarray


def match_image(pred_boxes: np.ndarray, pred_scores: np.ndarray, gt_boxes: np.ndarray, iou: float = 0.5) -> ImageMatch:
    """Match predictions to ground truth as VOC does: by descending score, each to its highest-IoU GT box;
    a true positive if that IoU >= ``iou`` and the GT box is still free, else a false positive."""
    pred_boxes = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
    pred_scores = np.asarray(pred_scores, np.float64).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    if len(pred_boxes) != len(pred_scores):
        raise ValueError(f"{len(pred_boxes)} predicted boxes but {len(pred_scores)} scores")
    tp = np.zeros(len(pred_boxes), bool)
    matched = np.zeros(len(gt_boxes), bool)
    pred_gt = np.full(len(pred_boxes), -1, np.int64)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return ImageMatch(tp, matched, pred_gt)
    overlaps = box_iou(pred_boxes, gt_boxes)
    for i in np.argsort(-pred_scores, kind="stable"):
        j = int(np.argmax(overlaps[i]))
        if overlaps[i, j] >= iou and not matched[j]:
            tp[i] = True
            matched[j] = True
            pred_gt[i] = j
    return ImageMatch(tp, matched, pred_gt)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision/recall curve with all-point interpolation (VOC 2010+)."""
    mrec = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope, non-increasing in recall
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def average_precision(
    pred_boxes_per_image: Sequence[np.ndarray],
    pred_scores_per_image: Sequence[np.ndarray],
    gt_boxes_per_image: Sequence[np.ndarray],
    iou: float = 0.5,
) -> tuple[float, np.ndarray, np.ndarray]:
    """VOC all-point AP over a set of images; returns (ap, precision, recall) along the score-ranked predictions.

    AP is 0.0 when there is no ground truth at all (and the curves are empty when there are no predictions).
    """
    if not (len(pred_boxes_per_image) == len(pred_scores_per_image) == len(gt_boxes_per_image)):
        raise ValueError("pred_boxes, pred_scores and gt_boxes must have one entry per image")
    scores, tps = [], []
    n_gt = 0
    for boxes, sc, gt in zip(pred_boxes_per_image, pred_scores_per_image, gt_boxes_per_image, strict=True):
        m = match_image(boxes, sc, gt, iou)
        scores.append(np.asarray(sc, np.float64).reshape(-1))
        tps.append(m.pred_tp)
        n_gt += len(m.gt_matched)
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_tp = np.concatenate(tps) if tps else np.zeros(0, bool)
    order = np.argsort(-all_scores, kind="stable")
    tp_cum = np.cumsum(all_tp[order])
    fp_cum = np.cumsum(~all_tp[order])
    precision = tp_cum / np.maximum(tp_cum + fp_cum, 1)
    recall = tp_cum / n_gt if n_gt else np.zeros_like(precision, dtype=np.float64)
    ap = voc_ap(recall, precision) if n_gt else 0.0
    return ap, precision, recall


def gt_recall_flags(
    pred_boxes_per_image: Sequence[np.ndarray],
    pred_scores_per_image: Sequence[np.ndarray],
    gt_boxes_per_image: Sequence[np.ndarray],
    iou: float = 0.5,
    score_threshold: float = 0.0,
) -> list[np.ndarray]:
    """Per image, a boolean per GT box: was it matched by a prediction scoring >= ``score_threshold``?"""
    flags = []
    for boxes, sc, gt in zip(pred_boxes_per_image, pred_scores_per_image, gt_boxes_per_image, strict=True):
        sc = np.asarray(sc, np.float64).reshape(-1)
        keep = sc >= score_threshold
        flags.append(match_image(np.asarray(boxes).reshape(-1, 4)[keep], sc[keep], gt, iou).gt_matched)
    return flags


def recall(
    pred_boxes_per_image: Sequence[np.ndarray],
    pred_scores_per_image: Sequence[np.ndarray],
    gt_boxes_per_image: Sequence[np.ndarray],
    iou: float = 0.5,
    score_threshold: float = 0.0,
    gt_select: Sequence[np.ndarray] | None = None,
) -> float:
    """Fraction of GT boxes found at ``score_threshold`` (matching is done against all GT boxes);
    ``gt_select`` (one boolean mask per image) restricts the count to a subset, e.g. masked or small faces.
    Returns NaN when the selection is empty."""
    flags = gt_recall_flags(pred_boxes_per_image, pred_scores_per_image, gt_boxes_per_image, iou, score_threshold)
    if gt_select is not None:
        flags = [f[np.asarray(s, bool).reshape(-1)] for f, s in zip(flags, gt_select, strict=True)]
    total = sum(len(f) for f in flags)
    return float(sum(int(f.sum()) for f in flags) / total) if total else float("nan")


def intersection_over_smaller(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection of each pair of boxes over the smaller box's area ("IoS"; 0 for empty boxes)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=-1)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.where(smaller > 0, inter / np.where(smaller > 0, smaller, 1), 0.0)


def suppress_nested(xyxy: np.ndarray, scores: np.ndarray, overlap: float = 0.8) -> np.ndarray:
    """Indices (by descending score) of the boxes to keep when a box that lies mostly inside a stronger one is
    the same face seen twice (a close face's chin or beard boxed again inside its face box).

    Plain IoU NMS misses such pairs, because a small box nested in a large one has a small IoU. Here a box is
    dropped when at least ``overlap`` of its own area lies inside a box with a higher score, or when it holds a
    stronger box that covers ``overlap`` of that box (intersection over the smaller area, "IoS").
    """
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    if len(order) < 2:
        return order
    ios = intersection_over_smaller(xyxy, xyxy)
    keep: list[int] = []
    for i in order:
        if all(ios[i, k] < overlap for k in keep):
            keep.append(int(i))
    return np.asarray(keep, np.int64)
