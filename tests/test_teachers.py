"""Teachers and what the students learn from them: pseudo-labels with ignore regions for the detector, an
EfficientNet-Lite0 classifier and soft-target distillation. No weights or data from outside the test."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from maskwatch.data.voc import AnnotatedImage
from maskwatch.models.efficientnet_lite import TEACHER_ARCH, EfficientNetLite0, build_teacher_net
from maskwatch.models.manifest import write_manifest_entry
from maskwatch.models.weights import save_model_file
from maskwatch.train.classifier import DistillationLoss, SoftTargetLoss, load_teacher
from maskwatch.train.detector import Settings, augment_with_ignore, match, multibox_loss, with_pseudo_labels
from maskwatch.train.pseudo import (
    apply_box_style,
    covered,
    crops_half,
    decode_centerface,
    fit_box_style,
    read_pseudo_labels,
)


def test_decode_centerface_one_face() -> None:
    heat = np.zeros((1, 1, 20, 30), np.float32)
    size = np.zeros((1, 2, 20, 30), np.float32)
    offset = np.zeros((1, 2, 20, 30), np.float32)
    heat[0, 0, 10, 15] = 0.9
    heat[0, 0, 10, 16] = 0.6  # a weaker neighbour of the same face: suppressed
    size[0, :, 10, 15] = np.log(40 / 4), np.log(32 / 4)  # 40 px tall, 32 px wide
    size[0, :, 10, 16] = np.log(40 / 4), np.log(32 / 4)
    found = decode_centerface(heat, size, offset, (2.0, 2.0), 0.5)
    assert found.shape == (1, 5)
    cx, cy = (15 + 0.5) * 4, (10 + 0.5) * 4
    np.testing.assert_allclose(found[0, :4], np.array([cx - 16, cy - 20, cx + 16, cy + 20]) * 2, atol=1e-3)
    assert found[0, 4] == pytest.approx(0.9)
    assert decode_centerface(heat, size, offset, (1.0, 1.0), 0.95).shape == (0, 5)


def test_covered_by_iou_or_inside() -> None:
    gt = np.array([[0, 0, 100, 100]], np.float32)
    teacher = np.array([[5, 5, 95, 105], [40, 40, 60, 60], [200, 200, 240, 240]], np.float32)
    assert covered(teacher, gt, 0.3).tolist() == [True, True, False]
    assert covered(teacher, np.zeros((0, 4), np.float32), 0.3).tolist() == [False, False, False]


def test_box_style_maps_teacher_boxes_onto_annotations() -> None:
    teacher = [np.array([10, 20, 50, 70], np.float32), np.array([100, 100, 120, 125], np.float32)]
    # annotations: 10 % wider on each side, 10 % higher at the top
    pairs = [(t, t + np.array([-0.1, -0.1, 0.1, 0.0]) * np.tile(t[2:] - t[:2], 2)) for t in teacher]
    style = fit_box_style(pairs)
    np.testing.assert_allclose(style, [-0.1, -0.1, 0.1, 0.0], atol=1e-6)
    np.testing.assert_allclose(apply_box_style(np.stack(teacher), style), np.stack([p[1] for p in pairs]), atol=1e-4)
    assert fit_box_style([]).tolist() == [0, 0, 0, 0]


def test_ignore_regions_get_no_loss() -> None:
    priors = torch.tensor([[0.25, 0.25, 0.2, 0.2], [0.75, 0.75, 0.2, 0.2], [0.25, 0.75, 0.2, 0.2]])
    face = torch.tensor([[0.15, 0.15, 0.35, 0.35]])
    ignore = torch.tensor([[0.65, 0.65, 0.85, 0.85]])
    labels, _ = match(face, priors, 0.35, 0, ignore)
    assert labels.tolist() == [1, -1, 0]
    labels_without, _ = match(face, priors, 0.35)
    assert labels_without.tolist() == [1, 0, 0]

    s = Settings(neg_pos_ratio=3)
    loc = torch.zeros(1, 3, 4)
    logits = torch.tensor([[[0.0, 0.0], [-5.0, 5.0], [0.0, 0.0]]])  # the ignored prior confidently says "face"
    targets = torch.zeros(1, 3, 4)
    _, cls_ignored = multibox_loss(loc, logits, labels[None], targets, s)
    _, cls_background = multibox_loss(loc, logits, labels_without[None], targets, s)
    assert torch.isfinite(cls_ignored)
    assert cls_background > cls_ignored + 4  # as background, the confident "face" costs about 10 nats


def test_augment_carries_ignore_regions() -> None:
    image = np.full((200, 200, 3), 120, np.uint8)
    faces = np.array([[40, 40, 90, 90]], np.float32)
    ignore = np.array([[120, 120, 160, 160]], np.float32)
    s = Settings(input_size=200, crop_size=200)
    kept_faces = kept_ignore = 0
    for seed in range(20):
        crop, boxes, ign = augment_with_ignore(image, faces, ignore, random.Random(seed), s)
        assert crop.shape == (200, 200, 3)
        assert boxes.shape[1] == 4 and ign.shape[1] == 4
        kept_faces += len(boxes)
        kept_ignore += len(ign)
        both = np.concatenate([boxes, ign])
        if len(boxes) and len(ign) and (both[:, :2] > 0).all() and (both[:, 2:] < 200).all():
            ratio = (ign[0, 2] - ign[0, 0]) / (boxes[0, 2] - boxes[0, 0])  # one geometry for both: ratio kept
            assert ratio == pytest.approx(0.8, abs=0.02)
    assert kept_faces >= 15 and kept_ignore >= 5


def test_pseudo_labels_join_the_scenes(tmp_path: Path) -> None:
    path = tmp_path / "pseudo.json"
    path.write_text(
        json.dumps({"labels": {"a": {"extra": [[1, 2, 30, 40, 0.9]], "ignore": [[50, 50, 60, 60]]}, "b": {}}})
    )
    raw = read_pseudo_labels(path)
    assert raw["a"]["extra"].shape == (1, 4)
    items = [
        AnnotatedImage(Path("x/a.jpg"), np.array([[5, 5, 9, 9]], np.float32), np.array([1]), (64, 64)),
        AnnotatedImage(Path("x/c.jpg"), np.zeros((0, 4), np.float32), np.zeros(0, np.int64), (64, 64)),
    ]
    scenes, ignores = with_pseudo_labels(items, path)
    assert len(scenes) == 1  # the scene without any face is left out, as without pseudo-labels
    assert scenes[0].xyxy.shape == (2, 4) and scenes[0].class_id.tolist() == [1, -1]
    assert ignores is not None and ignores[0].shape == (1, 4)
    plain, none = with_pseudo_labels(items, None)
    assert len(plain) == 1 and none is None


def test_efficientnet_lite0_matches_the_published_layout(tmp_path: Path) -> None:
    body = EfficientNetLite0()
    keys = body.state_dict()
    assert len(keys) == 294  # the ImageNet checkpoint's 296 tensors less its classifier (_fc.weight, _fc.bias)
    assert tuple(keys["_blocks.15._project_conv.weight"].shape) == (320, 1152, 1, 1)
    assert tuple(keys["_blocks.3._depthwise_conv.weight"].shape) == (144, 1, 5, 5)
    published = {k: torch.randn(v.shape) if v.dtype.is_floating_point else v for k, v in keys.items()}
    published["_fc.weight"], published["_fc.bias"] = torch.zeros(1000, 1280), torch.zeros(1000)
    path = tmp_path / "lite0.pth"
    torch.save(published, path)
    write_manifest_entry(path)
    net = build_teacher_net(3, path).eval()
    torch.testing.assert_close(net.backbone._conv_stem.weight, published["_conv_stem.weight"])
    assert net(torch.rand(2, 3, 64, 64) * 255).shape == (2, 3)


def test_teacher_model_file_round_trip(tmp_path: Path) -> None:
    net = build_teacher_net(3).eval()
    path = tmp_path / "teacher.pt"
    save_model_file(path, TEACHER_ARCH, net.state_dict(), {"input_size": 64})
    loaded = load_teacher(path, torch.device("cpu"))
    x = torch.rand(2, 3, 64, 64) * 255
    torch.testing.assert_close(loaded(x), net(x))


def test_distillation_loss() -> None:
    label_loss = SoftTargetLoss(3, 0.0)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([0, 1])
    only_labels = DistillationLoss(label_loss, 0.0, 2.0)
    assert only_labels(logits, y, torch.zeros(2, 3)) == pytest.approx(float(label_loss(logits, y)))
    only_teacher = DistillationLoss(label_loss, 1.0, 2.0)
    assert float(only_teacher(logits, y, logits)) == pytest.approx(0.0, abs=1e-6)  # agreeing with the teacher
    assert float(only_teacher(logits, y, -logits)) > 0.1


def test_photo_scenes_join_training(tmp_path: Path) -> None:
    photos = tmp_path / "photos.json"
    photos.write_text(
        json.dumps({"scenes": {str(tmp_path / "p.jpg"): {"extra": [[2, 3, 40, 50]], "ignore": []}}, "labels": {}})
    )
    items = [AnnotatedImage(Path("x/a.jpg"), np.array([[5, 5, 9, 9]], np.float32), np.array([1]), (64, 64))]
    scenes, ignores = with_pseudo_labels(items, [photos])
    assert [s.image_path.name for s in scenes] == ["a.jpg", "p.jpg"]
    assert scenes[1].xyxy.tolist() == [[2, 3, 40, 50]] and scenes[1].class_id.tolist() == [-1]
    assert ignores is not None and len(ignores) == 2


def test_crops_halves_are_fixed_and_both_used() -> None:
    names = [Path(f"crop_{i}.jpg") for i in range(200)]
    halves = [crops_half(n) for n in names]
    assert halves == [crops_half(n) for n in names]
    assert 60 < halves.count("train") < 140
