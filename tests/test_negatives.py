"""Non-face crops: background boxes, the "not a face" training target, and eval's non-face check."""

from pathlib import Path

import cv2
import numpy as np
import torch

from maskwatch.commands.evaluate import non_face_check
from maskwatch.data.negatives import background_boxes, expand, is_background, overlap_shares
from maskwatch.data.voc import AnnotatedImage
from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.train.classifier import SoftTargetLoss
from maskwatch.train.classifier_crops import NOT_A_FACE, Recipe, Sample, sample_weights

FACES = np.array([[100, 50, 160, 125], [300, 200, 330, 240]], np.float32)


def test_background_boxes_hold_no_face_and_look_like_faces() -> None:
    boxes = background_boxes((640, 480), FACES, 20, np.random.default_rng(0))
    assert len(boxes) == 20
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 640).all() and (boxes[:, 3] <= 480).all()
    for box in boxes:
        of_face, of_box = overlap_shares(expand(box, 0.15), FACES)  # what the crop holds
        assert of_face.max() <= 0.2 and of_box.max() <= 0.2
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert side.min() >= 12 and side.max() <= 75 * 1.5 * 1.35**0.5 + 1e-3  # 0.7-1.5x a face of the scene
    ratio = (boxes[:, 3] - boxes[:, 1]) / (boxes[:, 2] - boxes[:, 0])
    assert (ratio >= 1.0 - 1e-6).all() and (ratio <= 1.35 + 1e-6).all()
    again = background_boxes((640, 480), FACES, 20, np.random.default_rng(0))
    np.testing.assert_array_equal(boxes, again)


def test_is_background_rejects_a_box_around_a_face() -> None:
    assert not is_background(np.array([90, 40, 170, 135]), FACES)  # holds a whole face
    assert not is_background(np.array([305, 205, 325, 235]), FACES)  # inside a face
    assert is_background(np.array([400, 300, 450, 360]), FACES)
    assert is_background(np.array([0, 0, 20, 20]), np.zeros((0, 4)))


def test_no_room_gives_no_boxes() -> None:
    full = np.array([[0, 0, 64, 48]], np.float32)
    assert background_boxes((64, 48), full, 5, np.random.default_rng(0)).shape == (0, 4)


def test_not_a_face_target_is_uniform() -> None:
    loss = SoftTargetLoss(3, label_smoothing=0.1)
    y = torch.tensor([NOT_A_FACE])
    flat = loss(torch.zeros(1, 3), y)
    peaked = loss(torch.tensor([[4.0, 0.0, 0.0]]), y)
    assert flat < peaked  # equal probabilities are the target
    logits = torch.zeros(1, 3, requires_grad=True)
    loss(logits, y).backward()
    assert torch.allclose(logits.grad, torch.zeros(1, 3), atol=1e-6)
    faces = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]])
    labels = torch.tensor([0, 1])
    expected = torch.nn.functional.cross_entropy(faces, labels, label_smoothing=0.1)
    assert torch.allclose(loss(faces, labels), expected, atol=1e-6)


def test_negative_draw_share() -> None:
    samples = [Sample(Path("a"), 0, (0, 0, 1, 1))] * 6 + [Sample(Path("a"), 1, (0, 0, 1, 1))] * 3
    samples += [Sample(Path("a"), NOT_A_FACE, (0, 0, 1, 1))] * 5 + [Sample(Path("c"), 0)] * 4
    weights = sample_weights(samples, 4, Recipe(negative_share=0.2, extra_share=0.3)).numpy()
    labels = np.array([s.label for s in samples])
    assert np.isclose(weights.sum(), 1.0)
    assert np.isclose(weights[labels == NOT_A_FACE].sum(), 0.2)
    assert np.isclose(weights[-4:].sum(), 0.3)


class _Fixed:
    """A classifier that calls every crop with the same probabilities."""

    def __init__(self, prob) -> None:
        self.prob = np.asarray(prob, np.float32)

    def classify(self, crops):
        return np.tile(self.prob, (len(crops), 1))


def test_eval_non_face_check(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    scenes = [AnnotatedImage(tmp_path / "a.png", np.array([[20, 20, 60, 70]], np.float32), np.array([1]), (320, 240))]
    masked = non_face_check(FacePipeline(None, _Fixed([0.8, 0.1, 0.1])), scenes, per_image=4, progress=False)
    assert masked == {"crops": 4, "with_mask_ge_0.5": 1.0, "any_class_ge_0.5": 1.0, "mean_top_prob": 0.8}
    unsure = non_face_check(FacePipeline(None, _Fixed([0.4, 0.35, 0.25])), scenes, per_image=4, progress=False)
    assert unsure["with_mask_ge_0.5"] == 0.0 and unsure["any_class_ge_0.5"] == 0.0
