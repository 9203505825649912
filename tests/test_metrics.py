"""VOC AP and recall on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from maskwatch.metrics import average_precision, box_iou, match_image, recall, voc_ap

GT = [
    np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32),
    np.array([[5, 5, 15, 15]], np.float32),
]


def test_box_iou_known_values() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.0]])


def test_perfect_predictions_give_ap_one() -> None:
    scores = [np.array([0.9, 0.8]), np.array([0.7])]
    ap, precision, rec = average_precision(GT, scores, GT)
    assert ap == pytest.approx(1.0)
    np.testing.assert_allclose(precision, [1, 1, 1])
    np.testing.assert_allclose(rec, [1 / 3, 2 / 3, 1])


def test_hand_made_case() -> None:
    # ranked: TP (0.9), FP (0.8), TP (0.7), duplicate of a matched GT = FP (0.6); the third GT is missed.
    preds = [
        np.array([[0, 0, 10, 10], [40, 40, 50, 50], [0, 0, 10, 10]], np.float32),
        np.array([[5, 5, 15, 15]], np.float32),
    ]
    scores = [np.array([0.9, 0.8, 0.6]), np.array([0.7])]
    ap, precision, rec = average_precision(preds, scores, GT)
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 2 / 4])
    np.testing.assert_allclose(rec, [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    # all-point interpolation: 1/3 * 1 + 1/3 * 2/3
    assert ap == pytest.approx(1 / 3 + 2 / 9)


def test_iou_threshold_matters() -> None:
    pred = [np.array([[0, 0, 10, 12]], np.float32), np.zeros((0, 4))]
    scores = [np.array([0.5]), np.zeros(0)]
    gt = [np.array([[0, 0, 10, 10]], np.float32), np.zeros((0, 4))]
    assert average_precision(pred, scores, gt, iou=0.5)[0] == pytest.approx(1.0)
    assert average_precision(pred, scores, gt, iou=0.9)[0] == 0.0


def test_empty_inputs() -> None:
    empty = [np.zeros((0, 4))]
    ap, precision, rec = average_precision(empty, [np.zeros(0)], GT[:1])
    assert ap == 0.0 and len(precision) == 0 and len(rec) == 0
    assert average_precision(GT[:1], [np.array([0.5, 0.4])], empty)[0] == 0.0


def test_voc_ap_envelope() -> None:
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 0.75])) == pytest.approx(0.5 + 0.5 * 0.75)


def test_match_image_prefers_higher_score() -> None:
    m = match_image(np.array([[0, 0, 10, 10], [0, 0, 10, 11]]), np.array([0.2, 0.9]), np.array([[0, 0, 10, 10]]))
    assert m.pred_tp.tolist() == [False, True]
    assert m.gt_matched.tolist() == [True]


def test_recall_with_threshold_and_selection() -> None:
    preds = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([[5, 5, 15, 15]], np.float32)]
    scores = [np.array([0.9, 0.3]), np.array([0.8])]
    assert recall(preds, scores, GT) == pytest.approx(1.0)
    assert recall(preds, scores, GT, score_threshold=0.5) == pytest.approx(2 / 3)
    select = [np.array([False, True]), np.array([False])]
    assert recall(preds, scores, GT, score_threshold=0.5, gt_select=select) == 0.0
    assert np.isnan(recall(preds, scores, GT, gt_select=[np.zeros(2, bool), np.zeros(1, bool)]))


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError):
        average_precision(GT, [np.array([0.1, 0.2])], GT)
    with pytest.raises(ValueError):
        match_image(np.zeros((2, 4)), np.zeros(1), np.zeros((1, 4)))


def test_suppress_nested_drops_a_box_inside_a_stronger_box_of_the_same_face():
    from maskwatch.metrics import suppress_nested

    face = [100, 100, 300, 340]
    chin = [150, 250, 260, 335]  # the beard boxed again: IoU with the face is only ~0.19
    other = [400, 120, 520, 260]  # a second person
    assert box_iou(np.array([face]), np.array([chin]))[0, 0] < 0.4  # why IoU NMS keeps both
    keep = suppress_nested(np.array([face, chin, other]), np.array([0.95, 0.7, 0.8]))
    assert sorted(keep.tolist()) == [0, 2]
    # the stronger box wins whichever is larger
    keep = suppress_nested(np.array([face, chin]), np.array([0.6, 0.9]))
    assert keep.tolist() == [1]
    # side-by-side faces that touch are both kept; empty and single inputs pass through
    assert sorted(suppress_nested(np.array([[0, 0, 50, 50], [45, 0, 95, 50]]), np.array([0.9, 0.8])).tolist()) == [0, 1]
    assert suppress_nested(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    assert suppress_nested(np.array([face]), np.array([0.5])).tolist() == [0]
