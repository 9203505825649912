"""RetinaFace network, box coding and the fine-tuning program, on random weights and synthetic data."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from maskwatch.errors import WeightsError
from maskwatch.models.base import Detector
from maskwatch.models.manifest import read_manifest, write_manifest_entry
from maskwatch.models.retinaface import (
    ARCH,
    RetinaFace,
    RetinaFaceDetector,
    build_model,
    decode_boxes,
    encode_boxes,
    load_retinaface,
    prior_boxes,
)
from maskwatch.models.weights import load_model_file, save_model_file
from maskwatch.train.detector import Settings, augment, match, multibox_loss, train
from maskwatch.types import FaceDetections


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize(("h", "w"), [(640, 640), (480, 640), (366, 512), (33, 47)])
def test_prior_count_matches_network_output(h: int, w: int) -> None:
    priors = prior_boxes(h, w)
    expected = sum(-(-h // s) * -(-w // s) * 2 for s in (8, 16, 32))
    assert priors.shape == (expected, 4)
    model = build_model().eval()
    with torch.inference_mode():
        loc, logits, landmarks = model(torch.rand(1, 3, h, w) * 255)
    assert loc.shape == (1, expected, 4)
    assert logits.shape == (1, expected, 2)
    assert landmarks.shape == (1, expected, 10)


def test_prior_layout() -> None:
    priors = prior_boxes(64, 64, min_sizes=((16, 32), (64, 128), (256, 512)))
    # first cell of stride 8: centre (4, 4) px, sizes 16 then 32
    np.testing.assert_allclose(priors[0].numpy(), [4 / 64, 4 / 64, 16 / 64, 16 / 64])
    np.testing.assert_allclose(priors[1].numpy(), [4 / 64, 4 / 64, 32 / 64, 32 / 64])
    np.testing.assert_allclose(priors[2].numpy(), [12 / 64, 4 / 64, 16 / 64, 16 / 64])


def test_encode_decode_roundtrip() -> None:
    priors = prior_boxes(128, 96)
    xy = torch.rand(len(priors), 2) * 0.6
    boxes = torch.cat([xy, xy + 0.05 + torch.rand(len(priors), 2) * 0.3], dim=1)
    torch.testing.assert_close(decode_boxes(encode_boxes(boxes, priors), priors), boxes, atol=1e-5, rtol=1e-5)
    at_prior = decode_boxes(torch.zeros(len(priors), 4), priors)
    torch.testing.assert_close(
        at_prior, torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], 1)
    )


def test_preprocessing_is_inside_the_model() -> None:
    model = build_model().eval()
    assert torch.allclose(model.pixel_mean.flatten(), torch.tensor([104.0, 117.0, 123.0]))
    x = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.inference_mode():
        a = model(x)[0]
        b = model(x.float())[0]
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("shape", [(480, 640, 3), (720, 1280, 3), (100, 50, 3)])
def test_random_detector_gives_well_formed_detections(shape: tuple[int, int, int]) -> None:
    detector = RetinaFaceDetector.random_init(input_size=320, score_threshold=0.3, max_faces=7)
    assert isinstance(detector, Detector)
    image = (np.random.default_rng(0).random(shape) * 255).astype(np.uint8)
    faces = detector.detect(image)
    assert isinstance(faces, FaceDetections)
    assert faces.xyxy.dtype == np.float32 and faces.xyxy.shape[1] == 4
    assert len(faces) <= 7 and len(faces.det_score) == len(faces)
    h, w = shape[:2]
    assert (faces.xyxy[:, [0, 2]] >= 0).all() and (faces.xyxy[:, [0, 2]] <= w).all()
    assert (faces.xyxy[:, [1, 3]] >= 0).all() and (faces.xyxy[:, [1, 3]] <= h).all()
    assert ((faces.det_score >= 0.3) & (faces.det_score <= 1)).all()


def test_detector_rejects_bad_input() -> None:
    detector = RetinaFaceDetector.random_init()
    with pytest.raises(ValueError):
        detector.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        RetinaFaceDetector()


def test_model_file_roundtrip(tmp_path: Path) -> None:
    model = build_model()
    path = tmp_path / "det.pt"
    save_model_file(path, ARCH, model.state_dict(), {"input_size": 320, "min_sizes": [[8, 16], [32, 64], [128, 256]]})
    assert "det.pt" in read_manifest(tmp_path)
    loaded, meta = load_retinaface(path)
    assert meta["input_size"] == 320
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    detector = RetinaFaceDetector(path)
    assert detector.min_sizes == ((8, 16), (32, 64), (128, 256))
    with pytest.raises(WeightsError):
        load_model_file(path, "something_else")


def test_raw_state_dict_with_module_prefix_loads(tmp_path: Path) -> None:
    state = {f"module.{k}": v for k, v in RetinaFace().state_dict().items()}
    path = tmp_path / "raw.pth"
    torch.save(state, path)
    write_manifest_entry(path)
    model, meta = load_retinaface(path)
    assert isinstance(model, RetinaFace) and "min_sizes" in meta
    torch.save({"bogus": torch.zeros(1)}, path)
    write_manifest_entry(path)
    with pytest.raises(WeightsError):
        load_retinaface(path)


def test_unverified_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.pt"
    torch.save(RetinaFace().state_dict(), path)
    with pytest.raises(WeightsError):
        RetinaFaceDetector(path)


def test_match_and_loss() -> None:
    s = Settings(crop_size=128)
    priors = prior_boxes(128, 128, ((8, 16), (32, 64), (128, 256)))
    gt = torch.tensor([[0.1, 0.1, 0.3, 0.3], [0.6, 0.6, 0.65, 0.66]])
    labels, targets = match(gt, priors, 0.35)
    assert labels.sum() >= 2 and targets.shape == (len(priors), 4)
    loc = torch.zeros(1, len(priors), 4, requires_grad=True)
    logits = torch.zeros(1, len(priors), 2, requires_grad=True)
    loss_loc, loss_cls = multibox_loss(loc, logits, labels[None], targets[None], s)
    assert torch.isfinite(loss_loc) and torch.isfinite(loss_cls) and loss_cls > 0
    (loss_loc + loss_cls).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    empty_labels, _ = match(torch.zeros(0, 4), priors, 0.35)
    assert empty_labels.sum() == 0


def test_augment_keeps_boxes_inside() -> None:
    s = Settings(input_size=160, crop_size=96)
    image = np.full((120, 160, 3), 128, np.uint8)
    boxes = np.array([[10, 10, 40, 40], [100, 60, 140, 110]], np.float32)
    rng = random.Random(0)
    for _ in range(20):
        crop, out = augment(image, boxes, rng, s)
        assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8
        assert (out >= 0).all() and (out <= 96).all()
        assert (out[:, 2] > out[:, 0]).all() and (out[:, 3] > out[:, 1]).all()


def _write_tiny_voc(root: Path, n: int = 4) -> None:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = (rng.random((96, 128, 3)) * 60).astype(np.uint8)
        x, y = 20 + 10 * i, 30
        cv2.circle(img, (x + 12, y + 12), 12, (200, 180, 160), -1)
        cv2.imwrite(str(root / "images" / f"s{i}.png"), img)
        (root / "annotations" / f"s{i}.xml").write_text(
            f"<annotation><filename>s{i}.png</filename><size><width>128</width><height>96</height></size>"
            f"<object><name>with_mask</name><bndbox><xmin>{x}</xmin><ymin>{y}</ymin><xmax>{x + 24}</xmax>"
            f"<ymax>{y + 24}</ymax></bndbox></object></annotation>"
        )
    (root / "train.txt").write_text("s0\ns1\ns2\n")
    (root / "val.txt").write_text("s3\n")


@pytest.mark.slow
def test_two_step_training_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # checkpoints go to ./runs/detector
    data = tmp_path / "voc"
    _write_tiny_voc(data)
    out = tmp_path / "weights" / "detector.pt"
    written = train(
        data,
        data / "train.txt",
        epochs=1,
        device="cpu",
        out=out,
        val_split=data / "val.txt",
        input_size=64,
        batch_size=2,
        seed=0,
    )
    assert written == out and out.is_file()
    assert "detector.pt" in read_manifest(out.parent)
    state, meta = load_model_file(out, ARCH)
    assert meta["input_size"] == 64 and len(meta["history"]) == 1
    assert np.isfinite(meta["history"][0]["loss"])
    ckpt = tmp_path / "runs" / "detector" / "last.pt"
    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert set(payload) >= {"model", "optimizer", "lr_scheduler", "args", "epoch"}
    # resume to a second epoch
    train(
        data,
        data / "train.txt",
        epochs=2,
        device="cpu",
        out=out,
        resume=ckpt,
        input_size=64,
        batch_size=2,
        seed=0,
    )
    _, meta = load_model_file(out, ARCH)
    assert [h["epoch"] for h in meta["history"]] == [0, 1]
    detector = RetinaFaceDetector(out, input_size=64)
    assert isinstance(detector.detect(np.zeros((96, 128, 3), np.uint8)), FaceDetections)
