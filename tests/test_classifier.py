"""Tests of the mask classifier, the face-crop helper and the classifier's training program (no shared data)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from maskwatch.errors import WeightsError
from maskwatch.models.base import Classifier
from maskwatch.models.classifier import (
    ARCH,
    MaskClassifier,
    MobileNetV1x025,
    build_classifier_net,
    crops_to_tensor,
)
from maskwatch.models.manifest import write_manifest_entry
from maskwatch.models.weights import save_model_file
from maskwatch.monitor.crop import DEFAULT_CROP_MARGIN, crop_bounds, crop_face
from maskwatch.train.classifier import Recipe, metrics_from_confusion, train
from maskwatch.types import CLASS_NAMES


def random_crops(sizes: list[tuple[int, int]], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_classifier_net()


def test_random_init_probabilities(net: torch.nn.Module) -> None:
    clf = MaskClassifier.from_net(net, input_size=64)
    assert isinstance(clf, Classifier)
    crops = random_crops([(1, 1), (5, 80), (200, 30), (64, 64), (300, 250)])
    crops.append(np.zeros((7, 9), np.uint8))  # grayscale crop
    prob = clf.classify(crops)
    assert prob.shape == (len(crops), len(CLASS_NAMES))
    assert prob.dtype == np.float32
    assert np.all(prob >= 0)
    np.testing.assert_allclose(prob.sum(1), 1.0, atol=1e-5)


def test_empty_list_gives_zero_rows(net: torch.nn.Module) -> None:
    prob = MaskClassifier.from_net(net).classify([])
    assert prob.shape == (0, len(CLASS_NAMES))


def test_empty_crop_is_an_error(net: torch.nn.Module) -> None:
    with pytest.raises(ValueError):
        MaskClassifier.from_net(net).classify([np.zeros((0, 5, 3), np.uint8)])


def test_batch_matches_single(net: torch.nn.Module) -> None:
    clf = MaskClassifier.from_net(net, input_size=64)
    crops = random_crops([(30, 20), (90, 100), (12, 12)], seed=1)
    together = clf.classify(crops)
    alone = np.concatenate([clf.classify([c]) for c in crops])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_fused_inference_matches_net(net: torch.nn.Module) -> None:
    clf = MaskClassifier.from_net(net, input_size=64)
    crops = random_crops([(30, 20), (90, 100)], seed=2)
    with torch.inference_mode():
        expected = torch.softmax(clf.net(crops_to_tensor(crops, 64)), dim=1).numpy()
    np.testing.assert_allclose(clf.classify(crops), expected, atol=1e-5)


def test_model_file_round_trip(tmp_path: Path, net: torch.nn.Module) -> None:
    path = tmp_path / "classifier.pt"
    save_model_file(path, ARCH, net.state_dict(), {"input_size": 48, "class_names": list(CLASS_NAMES)})
    clf = MaskClassifier(path)
    assert clf.input_size == 48
    assert MaskClassifier(path, input_size=64).input_size == 64
    crops = random_crops([(40, 30), (3, 3)])
    np.testing.assert_allclose(clf.classify(crops), MaskClassifier.from_net(net, 48).classify(crops), atol=1e-5)


def test_model_file_wrong_arch(tmp_path: Path, net: torch.nn.Module) -> None:
    path = tmp_path / "other.pt"
    save_model_file(path, "something_else", net.state_dict(), {})
    with pytest.raises(WeightsError, match="something_else"):
        MaskClassifier(path)


def test_pretrained_backbone_keys(tmp_path: Path) -> None:
    """An ImageNet-style checkpoint (``module.`` prefix, ``fc`` head) loads into the backbone strictly."""
    source = MobileNetV1x025()
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["module.fc.weight"], state["module.fc.bias"] = torch.zeros(1000, 256), torch.zeros(1000)
    path = tmp_path / "mnv1.tar"
    torch.save({"epoch": 1, "state_dict": state}, path)
    write_manifest_entry(path)
    loaded = build_classifier_net(pretrained_backbone=path)
    for k, v in source.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[k], v)

    del state["module.stage3.1.4.weight"]
    torch.save({"state_dict": state}, path)
    write_manifest_entry(path)
    with pytest.raises(WeightsError, match="missing"):
        build_classifier_net(pretrained_backbone=path)


def test_conv_bn_relu_blocks_fuse(net: torch.nn.Module) -> None:
    net.eval()
    fused = net.fused_for_inference()
    x = torch.rand(2, 3, 64, 64) * 255
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), net(x), atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())


FRAME = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)


@pytest.mark.parametrize(
    ("box", "margin", "expected"),
    [
        ((50, 20, 90, 60), 0.0, (50, 20, 90, 60)),
        ((50, 20, 90, 60), 0.25, (40, 10, 100, 70)),
        ((50.4, 20.6, 89.2, 59.1), 0.0, (50, 20, 90, 60)),  # rounded outwards
        ((-30, -10, 20, 30), 0.15, (0, 0, 28, 36)),  # partially outside: clipped
        ((180, 90, 260, 150), 0.15, (168, 81, 200, 100)),
        ((300, 300, 400, 400), 0.15, (199, 99, 200, 100)),  # fully outside: a 1x1 corner crop
        ((-50, -50, -10, -10), 0.15, (0, 0, 1, 1)),
        ((70, 40, 70, 40), 0.15, (70, 40, 71, 41)),  # zero-size box
        ((90, 60, 50, 20), 0.0, (50, 20, 90, 60)),  # swapped corners
    ],
)
def test_crop_bounds(box: tuple[float, ...], margin: float, expected: tuple[int, int, int, int]) -> None:
    assert crop_bounds((200, 100), box, margin) == expected
    x0, y0, x1, y1 = expected
    crop = crop_face(FRAME, np.array(box, np.float32), margin)
    assert crop.shape == (y1 - y0, x1 - x0, 3)
    np.testing.assert_array_equal(crop, FRAME[y0:y1, x0:x1])


@pytest.mark.parametrize(
    ("size_wh", "box"),
    [((200, 100), (float("nan"), 0, 10, 10)), ((0, 100), (0, 0, 10, 10))],
)
def test_crop_bounds_errors(size_wh: tuple[int, int], box: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        crop_bounds(size_wh, box, DEFAULT_CROP_MARGIN)


def test_metrics_from_confusion() -> None:
    m = metrics_from_confusion(np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]]))
    assert m["recall"]["with_mask"] == 0.8
    assert m["precision"]["without_mask"] == 0.6
    assert m["balanced_accuracy"] == pytest.approx((0.8 + 0.75) / 2, abs=1e-4)


def write_tiny_voc(root: Path, n_images: int = 4) -> None:
    """A synthetic Pascal VOC folder: coloured rectangles as 'faces' of all three classes."""
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    (root / "splits").mkdir()
    rng = np.random.default_rng(0)
    stems = []
    for i in range(n_images):
        stem = f"scene{i}"
        image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        objects = []
        for j, name in enumerate(CLASS_NAMES):
            x0, y0 = 10 + 45 * j, 20 + 5 * i
            cv2.rectangle(image, (x0, y0), (x0 + 30, y0 + 36), (60 * j, 200, 255 - 60 * j), -1)
            objects.append(
                f"<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                f"<xmax>{x0 + 30}</xmax><ymax>{y0 + 36}</ymax></bndbox></object>"
            )
        cv2.imwrite(str(root / "images" / f"{stem}.png"), image)
        (root / "annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.png</filename><size><width>160</width><height>120</height>"
            f"<depth>3</depth></size>{''.join(objects)}</annotation>"
        )
        stems.append(stem)
    (root / "splits" / "train.txt").write_text("\n".join(stems[:-1]) + "\n")
    (root / "splits" / "val.txt").write_text(stems[-1] + "\n")


def write_tiny_crops(root: Path) -> None:
    rng = np.random.default_rng(1)
    for name in ("with_mask", "without_mask"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            h, w = int(rng.integers(20, 60)), int(rng.integers(20, 60))
            cv2.imwrite(str(root / name / f"{i}.jpg"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.slow
def test_two_step_training_and_resume(tmp_path: Path) -> None:
    voc, crops, runs = tmp_path / "voc", tmp_path / "crops", tmp_path / "runs"
    write_tiny_voc(voc)
    write_tiny_crops(crops)
    recipe = Recipe(samples_per_epoch=16, warmup_steps=1)
    common = {
        "data": voc,
        "split": voc / "splits/train.txt",
        "device": "cpu",
        "extra_crops": crops,
        "val_split": voc / "splits/val.txt",
        "input_size": 48,
        "batch_size": 8,
        "seed": 0,
        "checkpoint_dir": runs,
        "pretrained": None,
        "recipe": recipe,
    }
    out = train(epochs=1, out=tmp_path / "weights" / "classifier.pt", **common)
    assert out.is_file()
    assert (tmp_path / "weights" / "SHA256SUMS").read_text().count("classifier.pt") == 1
    ckpt = torch.load(runs / "last.pt", map_location="cpu", weights_only=True)
    assert set(ckpt) >= {"model", "optimizer", "lr_scheduler", "args", "epoch"}
    assert ckpt["epoch"] == 0
    assert ckpt["lr_scheduler"]["last_epoch"] == 2  # two optimisation steps

    clf = MaskClassifier(out)
    assert clf.input_size == 48
    assert clf.meta["val"]["confusion"] is not None
    assert np.asarray(clf.meta["val"]["confusion"]).sum() == 3  # the val scene's three boxes
    assert clf.meta["history"][0]["val_non_face"]["crops"] > 0  # background boxes of the val scene
    prob = clf.classify(random_crops([(10, 10), (1, 1)]))
    np.testing.assert_allclose(prob.sum(1), 1.0, atol=1e-5)

    resumed = train(epochs=2, out=tmp_path / "weights" / "classifier2.pt", resume=runs / "last.pt", **common)
    ckpt = torch.load(runs / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1
    assert len(MaskClassifier(resumed).meta["history"]) == 2
