"""Ultra-Light detector: random-init net, priors vs head outputs, weights round trip, a tiny training run."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from maskwatch.errors import WeightsError
from maskwatch.models.base import Detector
from maskwatch.models.ultralight import (
    UltraLightDetector,
    UltraLightNet,
    decode,
    encode,
    load_ultralight,
    make_priors,
)
from maskwatch.models.weights import save_model_file, write_manifest_entry
from maskwatch.types import FaceDetections


@pytest.fixture(scope="module")
def net() -> UltraLightNet:
    torch.manual_seed(0)
    return UltraLightNet(num_classes=2, rfb=True).eval()


def test_random_net_gives_well_formed_detections(net: UltraLightNet) -> None:
    det = UltraLightDetector(net=net, input_size=320, score_threshold=0.3, max_faces=50)
    assert isinstance(det, Detector)
    image = np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    faces = det.detect(image)
    assert isinstance(faces, FaceDetections)
    assert faces.xyxy.shape == (len(faces), 4) and len(faces) <= 50
    if len(faces):
        assert (faces.xyxy[:, [0, 2]] >= 0).all() and (faces.xyxy[:, [0, 2]] <= 500).all()
        assert (faces.xyxy[:, [1, 3]] >= 0).all() and (faces.xyxy[:, [1, 3]] <= 300).all()
        assert ((faces.det_score > 0.3) & (faces.det_score <= 1)).all()


def test_threshold_one_gives_empty(net: UltraLightNet) -> None:
    det = UltraLightDetector(net=net, score_threshold=1.0)
    faces = det.detect(np.zeros((240, 320, 3), np.uint8))
    assert len(faces) == 0 and faces.xyxy.shape == (0, 4)


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [(320, 240, 4420), (640, 480, None), (480, 360, None), (333, 250, None), (240, 320, None)],
)
def test_prior_count_matches_heads(net: UltraLightNet, width: int, height: int, expected: int | None) -> None:
    priors = make_priors(width, height)
    with torch.inference_mode():
        logits, loc = net(torch.rand(1, 3, height, width) * 255)
    assert logits.shape == (1, len(priors), 2) and loc.shape == (1, len(priors), 4)
    if expected is not None:
        assert len(priors) == expected
    assert float(priors.min()) >= 0 and float(priors.max()) <= 1


def test_encode_decode_round_trip() -> None:
    priors = make_priors(320, 240)[:50]
    boxes = torch.cat([priors[:, :2] - 0.03, priors[:, :2] + 0.05], dim=1)
    assert torch.allclose(decode(encode(boxes, priors), priors), boxes, atol=1e-5)


def test_input_size_keeps_aspect(net: UltraLightNet) -> None:
    det = UltraLightDetector(net=net, input_size=320)
    assert det.input_wh((640, 480)) == (320, 240)
    assert det.input_wh((1280, 720)) == (320, 180)
    assert det.input_wh((480, 640)) == (240, 320)


def test_model_file_round_trip(tmp_path: Path, net: UltraLightNet) -> None:
    path = tmp_path / "ul.pt"
    save_model_file(path, "ultralight_rfb", net.state_dict(), {"num_classes": 2, "input_size": 320})
    loaded, meta = load_ultralight(path)
    assert meta["num_classes"] == 2 and meta["input_size"] == 320
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_raw_state_dict_with_module_prefix_and_three_classes(tmp_path: Path) -> None:
    three = UltraLightNet(num_classes=3, rfb=True)
    path = tmp_path / "masked.pth"
    torch.save({f"module.{k}": v for k, v in three.state_dict().items()}, path)
    write_manifest_entry(path)
    loaded, meta = load_ultralight(path)
    assert meta["num_classes"] == 3 and loaded.rfb
    slim = UltraLightNet(num_classes=2, rfb=False)
    path = tmp_path / "slim.pth"
    torch.save(slim.state_dict(), path)
    write_manifest_entry(path)
    assert not load_ultralight(path)[0].rfb


def test_wrong_shape_is_refused(tmp_path: Path, net: UltraLightNet) -> None:
    state = dict(net.state_dict())
    state["extras.0.0.bias"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    write_manifest_entry(path)
    with pytest.raises(WeightsError, match="does not fit"):
        load_ultralight(path)


def test_merged_masked_head_keeps_background_probability() -> None:
    from maskwatch.train.ultralight import merge_masked_head

    torch.manual_seed(0)
    three = UltraLightNet(num_classes=3).eval()
    two = UltraLightNet(num_classes=2).eval()
    two.load_state_dict(merge_masked_head(three.state_dict()))
    x = torch.rand(1, 3, 120, 160) * 255
    with torch.inference_mode():
        p3 = torch.softmax(three(x)[0], -1)[..., 0]
        p2 = torch.softmax(two(x)[0], -1)[..., 0]
    assert (p2 - p3).abs().max() < 0.1


def _write_voc(root: Path, n: int = 4) -> None:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        x, y = 20 + 10 * i, 30
        cv2.rectangle(image, (x, y), (x + 40, y + 40), (40, 160, 220), -1)
        cv2.imwrite(str(root / "images" / f"s{i}.png"), image)
        (root / "annotations" / f"s{i}.xml").write_text(
            f"<annotation><filename>s{i}.png</filename><size><width>160</width><height>120</height></size>"
            f"<object><name>{'with_mask' if i % 2 else 'without_mask'}</name>"
            f"<bndbox><xmin>{x}</xmin><ymin>{y}</ymin><xmax>{x + 40}</xmax><ymax>{y + 40}</ymax></bndbox>"
            "</object></annotation>"
        )
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("s0\ns1\ns2\n")
    (root / "splits" / "val.txt").write_text("s3\n")


@pytest.mark.slow
def test_two_step_training_run(tmp_path: Path, monkeypatch) -> None:
    from maskwatch.train.ultralight import train

    monkeypatch.chdir(tmp_path)  # checkpoints go to ./runs/ultralight

    data = tmp_path / "voc"
    _write_voc(data)
    out = tmp_path / "run" / "detector_ultralight.pt"
    kwargs = dict(split=data / "splits" / "train.txt", device="cpu", out=out, input_size=160, batch_size=2)
    path = train(data, epochs=2, val_split=data / "splits" / "val.txt", **kwargs)  # 1 batch per epoch
    assert path == out and out.is_file()
    last = tmp_path / "runs" / "ultralight" / "last.pt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert set(ckpt) >= {"model", "optimizer", "lr_scheduler", "args", "epoch", "history"} and ckpt["epoch"] == 1
    assert (last.parent / "epoch_000.pt").is_file() and [h["epoch"] for h in ckpt["history"]] == [0, 1]
    det = UltraLightDetector(out, input_size=160, score_threshold=0.0)
    assert isinstance(det.detect(np.zeros((120, 160, 3), np.uint8)), FaceDetections)
    resumed = train(data, epochs=3, resume=last, **kwargs)
    assert torch.load(last, weights_only=True)["epoch"] == 2 and resumed.is_file()
