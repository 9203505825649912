"""int8 on ONNX Runtime: static QDQ quantization of random-weight models, the int8 files through the facades and the
pipeline, ``maskwatch quantize`` on a tiny synthetic VOC set, and int8 files refused as the fp32 ones are."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from maskwatch.config import load_config
from maskwatch.errors import ConfigError, MaskwatchError, WeightsError
from maskwatch.models import retinaface as rf
from maskwatch.models.classifier import MaskClassifierNet
from maskwatch.models.manifest import WEIGHTS_DIRS, sha256_of, write_manifest_entry
from maskwatch.types import CLASS_NAMES
from maskwatch.wiring import (
    build_pipeline,
    effective_engine,
    effective_precision,
    model_files,
    runtime_label,
    with_runtime,
)
from tests.helpers import maskwatch, mismatch, truncated, unlisted

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from maskwatch.commands.export import export_classifier, export_detector  # noqa: E402
from maskwatch.commands.quantize import quantize_files  # noqa: E402
from maskwatch.models.onnx_engine import OnnxMaskClassifier, OnnxRetinaFaceDetector  # noqa: E402
from maskwatch.models.onnx_quant import (  # noqa: E402
    QuantizeError,
    Recipe,
    classifier_inputs,
    detector_inputs,
    quantize_onnx,
)

SHIPPED = WEIGHTS_DIRS[0]
SIZE = 160
"""Detector input size of the synthetic models (small, so the tests run in seconds)."""


def _settle(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random but well-conditioned BatchNorm statistics, so the random model's activations stay in range."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


def scene(seed: int, h: int = 120, w: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random image with two drawn faces, and their boxes (xyxy pixels)."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    boxes = []
    for cx, cy, r in ((w // 4, h // 2, 14 + seed % 5), (3 * w // 4, h // 2, 18)):
        cv2.ellipse(img, (cx, cy), (r, int(r * 1.3)), 0, 0, 360, (120, 160, 210), -1)
        boxes.append([cx - r, cy - 1.3 * r, cx + r, cy + 1.3 * r])
    return img, np.asarray(boxes, np.float32)


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-weight detector and classifier exported to ONNX with maskwatch's metadata, listed in SHA256SUMS."""
    out = tmp_path_factory.mktemp("fp32")
    torch.manual_seed(0)
    meta = {
        "format": "maskwatch-onnx/1",
        "arch": rf.ARCH,
        "input_size": SIZE,
        "min_sizes": [list(s) for s in rf.MIN_SIZES],
    }
    meta |= {"steps": list(rf.STEPS), "variances": list(rf.VARIANCES)}
    export_detector(_settle(rf.RetinaFace(), 0), out / "detector.onnx", example_hw=(120, 160), metadata=meta)
    export_classifier(_settle(MaskClassifierNet(len(CLASS_NAMES)), 1), out / "classifier.onnx", 80)
    for name in ("detector.onnx", "classifier.onnx"):
        write_manifest_entry(out / name)
    return out


@pytest.fixture(scope="module")
def scenes() -> list[tuple[np.ndarray, np.ndarray]]:
    return [scene(i) for i in range(6)]


@pytest.fixture(scope="module")
def int8(fp32: Path, scenes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both models quantized with the default recipe into a folder of their own (with SHA256SUMS)."""
    out = tmp_path_factory.mktemp("int8")
    det = OnnxRetinaFaceDetector(fp32 / "detector.onnx")
    images = [img for img, _ in scenes]
    quantize_onnx(fp32 / "detector.onnx", out / "detector_int8.onnx", detector_inputs(det, images))
    batches = classifier_inputs(images, [boxes for _, boxes in scenes], 80, 0.15)
    quantize_onnx(fp32 / "classifier.onnx", out / "classifier_int8.onnx", batches, extra_meta={"source": "x"})
    for name in ("detector_int8.onnx", "classifier_int8.onnx"):
        write_manifest_entry(out / name)
    return out


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def _props(path: Path) -> dict[str, object]:
    return {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}


def test_quantized_graphs_are_qdq_and_keep_the_metadata(fp32: Path, int8: Path) -> None:
    for name in ("detector", "classifier"):
        ops = _ops(int8 / f"{name}_int8.onnx")
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops, name
        before, after = _props(fp32 / f"{name}.onnx"), _props(int8 / f"{name}_int8.onnx")
        assert {k: after[k] for k in before} == before and after["precision"] == "int8"
        assert after["quantization"]["format"] == "QDQ" and after["quantization"]["per_channel"] is True
    assert _props(int8 / "classifier_int8.onnx")["source"] == "x"


def test_int8_outputs_stay_close_to_fp32(fp32: Path, int8: Path, scenes) -> None:
    det32, det8 = OnnxRetinaFaceDetector(fp32 / "detector.onnx"), OnnxRetinaFaceDetector(int8 / "detector_int8.onnx")
    assert (det32.precision, det8.precision) == ("fp32", "int8") and det8.input_size == SIZE
    x = det32.preprocess(scene(99)[0])[0]
    for a, b in zip(det32.session.run(None, {"image": x}), det8.session.run(None, {"image": x}), strict=True):
        spread = float(a.max() - a.min()) or 1.0
        assert float(np.abs(a - b).max()) <= 0.25 * spread  # loose: random weights, six calibration images
    cls32, cls8 = OnnxMaskClassifier(fp32 / "classifier.onnx"), OnnxMaskClassifier(int8 / "classifier_int8.onnx")
    img, boxes = scene(98)
    crops = [img[int(b[1]) : int(b[3]), int(b[0]) : int(b[2])] for b in boxes]
    p32, p8 = cls32.classify(crops), cls8.classify(crops)
    assert cls8.precision == "int8" and p8.shape == (2, len(CLASS_NAMES))
    np.testing.assert_allclose(p8, p32, atol=0.15)
    np.testing.assert_allclose(p8.sum(axis=1), 1.0, atol=1e-5)


def _int8_cfg(fp32: Path, int8: Path, **more) -> object:
    return load_config(
        None,
        {
            "runtime.precision": "int8",
            "detector.onnx_weights": str(fp32 / "detector.onnx"),
            "classifier.onnx_weights": str(fp32 / "classifier.onnx"),
            "detector.onnx_int8_weights": str(int8 / "detector_int8.onnx"),
            "classifier.onnx_int8_weights": str(int8 / "classifier_int8.onnx"),
            **more,
        },
    )


def test_precision_picks_the_files_and_int8_runs_on_onnx(fp32: Path, int8: Path) -> None:
    cfg = _int8_cfg(fp32, int8)
    assert effective_engine(cfg) == "onnx"
    assert effective_engine(with_runtime(cfg, engine="torch")) == "onnx"  # int8 on the CPU implies onnx
    assert runtime_label(cfg) == "cpu, onnx int8" and effective_precision(cfg) == "int8"
    pipeline = build_pipeline(cfg)
    assert isinstance(pipeline.detector, OnnxRetinaFaceDetector)
    assert pipeline.detector.precision == pipeline.classifier.precision == "int8"
    result = pipeline.detector.detect(scene(5)[0])
    assert result.xyxy.shape[1] == 4
    fp = build_pipeline(_int8_cfg(fp32, int8, **{"runtime.precision": "fp32", "runtime.engine": "onnx"}))
    assert fp.detector.precision == fp.classifier.precision == "fp32"
    cuda = load_config(None, {"runtime.device": "cuda"})
    assert (effective_engine(cuda), effective_precision(cuda), runtime_label(cuda)) == ("torch", "fp32", "cuda, fp32")
    assert model_files(load_config(None, {}))["detector"]["int8"] == "detector_int8.onnx"


def test_a_file_of_the_wrong_precision_is_a_config_error(fp32: Path, int8: Path) -> None:
    swapped = {"detector.onnx_int8_weights": str(fp32 / "detector.onnx")}
    with pytest.raises(ConfigError, match=r"precision int8 needs a int8 detector file.*is fp32.*maskwatch quantize"):
        build_pipeline(_int8_cfg(fp32, int8, **swapped))
    swapped = {"runtime.precision": "fp32", "runtime.engine": "onnx"}
    swapped["classifier.onnx_weights"] = str(int8 / "classifier_int8.onnx")
    with pytest.raises(ConfigError, match="precision fp32 needs a fp32 classifier file"):
        build_pipeline(_int8_cfg(fp32, int8, **swapped))
    with pytest.raises(QuantizeError, match="already a quantized model"):
        quantize_onnx(int8 / "detector_int8.onnx", int8 / "again.onnx", [np.zeros((1, 3, 32, 32), np.float32)])


def test_recipe_is_checked() -> None:
    for bad in ({"calibrate": "kl"}, {"activations": "i4"}, {"exclude": ("everything",)}):
        with pytest.raises(QuantizeError):
            Recipe(**bad)
    assert Recipe(exclude=("first_conv", "heads", "match:/fpn")).as_meta()["exclude"][2] == "match:/fpn"


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_takes_images_of_different_sizes(fp32: Path, tmp_path: Path, method: str) -> None:
    inputs = [np.random.default_rng(i).uniform(0, 255, (2 + i % 2, 3, 80, 80)).astype(np.float32) for i in range(3)]
    out = quantize_onnx(fp32 / "classifier.onnx", tmp_path / "c.onnx", inputs, Recipe(calibrate=method))
    assert "QuantizeLinear" in _ops(out) and _props(out)["quantization"]["calibrate"] == method


# --- maskwatch quantize on a tiny VOC set
def write_voc(root: Path, n: int = 4) -> Path:
    """``n`` synthetic annotated images in Pascal VOC layout with splits/train.txt; returns ``root``."""
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    (root / "splits").mkdir()
    for i in range(n):
        img, boxes = scene(i)
        cv2.imwrite(str(root / "images" / f"s{i}.jpg"), img)
        objects = "".join(
            f"<object><name>{CLASS_NAMES[k % 3]}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
            f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for k, b in enumerate(boxes)
        )
        xml = f"<annotation><filename>s{i}.jpg</filename><size><width>160</width><height>120</height></size>"
        (root / "annotations" / f"s{i}.xml").write_text(xml + objects + "</annotation>")
    (root / "splits" / "train.txt").write_text("".join(f"s{i}\n" for i in range(n)))
    return root


def test_quantize_files_writes_listed_int8_files(fp32: Path, tmp_path: Path) -> None:
    data = write_voc(tmp_path / "voc")
    out = tmp_path / "out"
    paths = quantize_files(
        data,
        data / "splits" / "train.txt",
        out,
        n_images=3,
        detector_weights=fp32 / "detector.onnx",
        classifier_weights=fp32 / "classifier.onnx",
    )
    assert sorted(p.name for p in paths.values()) == ["classifier_int8.onnx", "detector_int8.onnx"]
    listed = (out / "SHA256SUMS").read_text()
    for path in paths.values():
        assert f"{sha256_of(path)}  {path.name}" in listed
    meta = _props(paths["detector"])
    assert meta["precision"] == "int8" and meta["source_sha256"] == sha256_of(fp32 / "detector.onnx")
    assert meta["calibration"]["images"] == 3 and _props(paths["classifier"])["calibration"]["crops"] == 6
    assert OnnxRetinaFaceDetector(paths["detector"]).precision == "int8"


def test_quantize_command_errors_are_one_line(fp32: Path, tmp_path: Path) -> None:
    data = write_voc(tmp_path / "voc", n=1)
    runs = {
        "no data": ["--data", str(tmp_path / "nowhere")],
        "unlisted source": ["--data", str(data), "--detector", str(tmp_path / "x.onnx")],
        "bad calib": ["--data", str(data), "--calib", "0"],
    }
    for what, argv in runs.items():
        proc = maskwatch("quantize", *argv, "--out", str(tmp_path / "o"), "--classifier", str(fp32 / "classifier.onnx"))
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 1 and len(lines) == 1, (what, proc.stderr)
    assert not (tmp_path / "o" / "detector_int8.onnx").exists()


def test_quantize_parser_has_no_qat() -> None:
    from maskwatch.cli import _parser

    args = _parser().parse_args(["quantize", "--data", "voc"])
    assert (args.detector, args.classifier, args.calib) == ("detector.onnx", "classifier.onnx", 64)
    with pytest.raises(SystemExit):
        _parser().parse_args(["quantize", "--qat-epochs", "1"])


# --- bad int8 files: the same one-line messages as the fp32 .onnx files get
def _wrong_model(src: Path, dst: Path) -> Path:
    shutil.copy(src.parent / src.name.replace("detector", "classifier"), dst)
    write_manifest_entry(dst)
    return dst


def _shape(message: str, path: Path) -> str:
    message = message.replace(str(path), "FILE").replace(str(path.parent), "DIR")
    return re.sub(r"[0-9a-f]{12}…", "DIGEST…", message)


@pytest.mark.parametrize(
    "damage", [truncated, mismatch, unlisted, _wrong_model], ids=["truncated", "mismatch", "unlisted", "wrong"]
)
def test_bad_int8_files_fail_like_fp32_files(fp32: Path, int8: Path, tmp_path: Path, damage) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    bad32 = damage(fp32 / "detector.onnx", tmp_path / "a" / "detector.onnx")
    bad8 = damage(int8 / "detector_int8.onnx", tmp_path / "b" / "detector_int8.onnx")
    with pytest.raises(WeightsError) as error32:
        fp = {"runtime.precision": "fp32", "runtime.engine": "onnx", "detector.onnx_weights": str(bad32)}
        build_pipeline(_int8_cfg(fp32, int8, **fp))
    with pytest.raises(WeightsError) as error8:
        build_pipeline(_int8_cfg(fp32, int8, **{"detector.onnx_int8_weights": str(bad8)}))
    message = str(error8.value)
    assert "\n" not in message and str(bad8) in message and len(message) < 300
    assert _shape(message, bad8) == _shape(str(error32.value), bad32)


def test_old_torch_int8_files_are_refused_in_one_line() -> None:
    from maskwatch.models.weights import refuse_torch_int8

    with pytest.raises(WeightsError, match="torch int8 model file.*onnx engine"):
        refuse_torch_int8("old_int8.pt")
    assert issubclass(QuantizeError, MaskwatchError)


def test_shipped_int8_files_are_listed_qdq_and_int8() -> None:
    for name, arch in (("detector_int8.onnx", rf.ARCH), ("classifier_int8.onnx", "mask_classifier_mnv1_025")):
        path = SHIPPED / name
        meta = _props(path)
        assert (meta["arch"], meta["precision"]) == (arch, "int8") and "QuantizeLinear" in _ops(path)
        source = SHIPPED / meta["source"]
        assert meta["source_sha256"] == sha256_of(source)
    pipeline = build_pipeline(load_config(None, {"runtime.precision": "int8"}))
    assert pipeline.detector.precision == pipeline.classifier.precision == "int8"
