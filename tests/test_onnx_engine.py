"""The ONNX Runtime engine: the same faces, scores and class probabilities as the torch models it was exported from,
model files refused as the .pt files are, and a ``run`` with ``--engine onnx`` that never imports torch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from maskwatch.cli import _parser
from maskwatch.commands.export import export_all
from maskwatch.commands.options import overrides
from maskwatch.config import load_config
from maskwatch.errors import ConfigError, WeightsError
from maskwatch.models import retinaface as rf
from maskwatch.models.base import Classifier, Detector
from maskwatch.models.classifier import MaskClassifier
from maskwatch.models.detector import load_detector
from maskwatch.models.manifest import WEIGHTS_DIRS, write_manifest_entry
from maskwatch.types import CLASS_NAMES, FaceDetections
from maskwatch.wiring import build_pipeline, effective_engine, effective_precision, runtime_label, with_runtime
from tests.helpers import ROOT, mismatch, truncated, unlisted

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
from maskwatch.models.onnx_engine import OnnxMaskClassifier, OnnxRetinaFaceDetector, prior_boxes  # noqa: E402

SHIPPED = WEIGHTS_DIRS[0]
LOW = 0.02
"""Detector threshold of the parity checks: low, so that the shipped detector finds boxes in drawn images too."""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped fp32 models exported as ``maskwatch export`` does (with SHA256SUMS)."""
    out = tmp_path_factory.mktemp("onnx")
    export_all(out, "detector.pt", "classifier.pt")
    return out


@pytest.fixture(scope="module")
def torch_models() -> tuple[rf.RetinaFaceDetector, MaskClassifier]:
    return load_detector("detector.pt", score_threshold=LOW), MaskClassifier("classifier.pt")


def drawn(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random background with a few drawn faces (skin ellipse, eyes, mouth) of different sizes."""
    rng = np.random.default_rng(seed)
    low = cv2.GaussianBlur(rng.integers(0, 255, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8), (3, 3), 0)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(4):
        r = int(rng.integers(12, max(13, min(h, w) // 5)))
        cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
        cv2.ellipse(img, (cx, cy), (r, int(r * 1.3)), 0, 0, 360, (120, 160, 210), -1)
        for dx in (-r // 3, r // 3):
            cv2.circle(img, (cx + dx, cy - r // 4), max(r // 8, 2), (40, 30, 30), -1)
        cv2.ellipse(img, (cx, cy + r // 2), (r // 3, max(r // 8, 2)), 0, 0, 180, (60, 60, 150), -1)
    return img


IMAGES = {
    "example 640x360": lambda: cv2.imread(str(ROOT / "docs" / "example.png")),
    "drawn 640x480": lambda: drawn(480, 640, 0),
    "drawn 1280x720 (shrunk)": lambda: drawn(720, 1280, 1),
    "drawn 200x300 (enlarged)": lambda: drawn(300, 200, 2),
}


def assert_same_faces(got: FaceDetections, want: FaceDetections, margin: float = 2e-3) -> None:
    """Each face clearly above the threshold in one result is in the other: box within 1 px, score within 1e-3.

    Faces within ``margin`` of the threshold may fall on either side of it in the two engines' rounding.
    """
    assert len(want) > 0, "the image should give the torch detector something to find"
    for a, b in ((got, want), (want, got)):
        for box, score in zip(a.xyxy, a.det_score, strict=True):
            if score < LOW + margin:
                continue
            errors = np.abs(b.xyxy - box).max(axis=1) if len(b) else np.array([np.inf])
            j = int(errors.argmin())
            assert errors[j] <= 1.0, f"box {box} (score {score:.4f}) has no partner within 1 px"
            assert abs(b.det_score[j] - score) <= 1e-3


def test_metadata_comes_from_the_file(exported: Path, torch_models) -> None:
    det, cls = OnnxRetinaFaceDetector(exported / "detector.onnx"), OnnxMaskClassifier(exported / "classifier.onnx")
    torch_det, torch_cls = torch_models
    assert (det.input_size, det.min_sizes) == (torch_det.input_size, torch_det.min_sizes)
    assert (det.steps, det.variances) == (rf.STEPS, rf.VARIANCES)
    assert cls.input_size == torch_cls.input_size and tuple(cls.meta["class_names"]) == CLASS_NAMES
    assert isinstance(det, Detector) and isinstance(cls, Classifier) and det.precision == cls.precision == "fp32"


@pytest.mark.parametrize(("h", "w"), [(480, 640), (366, 512), (33, 47), (640, 360)])
def test_priors_equal_torch(h: int, w: int) -> None:
    for sizes in (rf.MIN_SIZES, rf.PRETRAINED_MIN_SIZES):
        np.testing.assert_array_equal(prior_boxes(h, w, sizes, rf.STEPS), rf.prior_boxes(h, w, sizes).numpy())


def test_decoding_equals_torch_on_the_same_outputs(exported: Path, torch_models) -> None:
    """The same raw network outputs decode to the same faces: threshold, top-k, NMS and max_faces included."""
    torch_det = load_detector("detector.pt", score_threshold=0.01, max_faces=12)
    torch_det.pre_nms_top_k = 40
    det = OnnxRetinaFaceDetector(exported / "detector.onnx", score_threshold=0.01, max_faces=12, pre_nms_top_k=40)
    image = drawn(300, 200, 2)
    x, box = torch_det.preprocess(image)
    with torch.inference_mode():
        loc, logits, _ = torch_det._net(x)
    want = torch_det.postprocess(loc[0], logits[0], box, image.shape[:2])
    got = det.postprocess(loc[0].numpy(), logits[0].numpy(), box, image.shape[:2])
    assert 1 < len(got) == len(want) <= 12
    np.testing.assert_allclose(got.xyxy, want.xyxy, rtol=0, atol=1e-3)
    np.testing.assert_allclose(got.det_score, want.det_score, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", list(IMAGES))
def test_detector_matches_torch(exported: Path, torch_models, name: str) -> None:
    image = IMAGES[name]()
    det = OnnxRetinaFaceDetector(exported / "detector.onnx", score_threshold=LOW)
    got, want = det.detect(image), torch_models[0].detect(image)
    assert_same_faces(got, want)
    (batched,) = det.detect_batch([image])
    np.testing.assert_array_equal(batched.xyxy, got.xyxy)


def test_classifier_matches_torch(exported: Path, torch_models) -> None:
    cls = OnnxMaskClassifier(exported / "classifier.onnx")
    image = cv2.imread(str(ROOT / "docs" / "example.png"))
    crops = [image[40:200, 60:180], image[:30, :20], drawn(120, 90, 3), drawn(40, 300, 4), image[100:101, :5]]
    got, want = cls.classify(crops), torch_models[1].classify(crops)
    assert got.shape == (len(crops), len(CLASS_NAMES)) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert cls.classify([]).shape == (0, len(CLASS_NAMES))


def test_sessions_use_the_given_threads_without_spinning(exported: Path) -> None:
    options = OnnxMaskClassifier(exported / "classifier.onnx", threads=2).session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def _onnx_cfg(folder: Path, detector: Path | None = None, **runtime) -> object:
    return load_config(
        None,
        {
            "runtime.engine": "onnx",
            "runtime.precision": "fp32",
            "detector.onnx_weights": str(detector or folder / "detector.onnx"),
            "classifier.onnx_weights": str(folder / "classifier.onnx"),
            **{f"runtime.{k}": v for k, v in runtime.items()},
        },
    )


def test_build_pipeline_picks_the_engine(exported: Path) -> None:
    cfg = _onnx_cfg(exported)
    pipeline = build_pipeline(cfg)
    assert isinstance(pipeline.detector, OnnxRetinaFaceDetector) and isinstance(pipeline.classifier, OnnxMaskClassifier)
    assert effective_precision(cfg) == "fp32" and runtime_label(cfg) == "cpu, onnx fp32"
    assert load_config(None, {}).runtime.engine == "auto"
    assert effective_engine(with_runtime(load_config(None, {}), precision="fp32")) == "onnx"  # auto: onnx on the CPU
    with pytest.raises(ConfigError, match="CPU only"):
        build_pipeline(_onnx_cfg(exported, device="cuda"))
    with pytest.raises(WeightsError, match=r"not found: .*nope\.onnx.*maskwatch export"):
        build_pipeline(_onnx_cfg(exported, detector=exported / "nope.onnx"))


@pytest.mark.parametrize("command", ["run", "eval", "bench"])
def test_engine_flag(command: str) -> None:
    extra = {"run": ["--source", "x.mp4"], "eval": ["--data", "d"], "bench": []}[command]
    args = _parser().parse_args([command, "--engine", "onnx", *extra])
    assert args.engine == "onnx"
    assert _parser().parse_args([command, *extra]).engine is None  # the config decides
    if command == "run":
        assert overrides(args)["runtime.engine"] == "onnx"
    with pytest.raises(SystemExit):
        _parser().parse_args([command, "--engine", "tensorrt", *extra])


# --- bad files: the same one-line messages as the .pt files get (tests/reliability/test_model_files.py)
def _shape(message: str, path: Path) -> str:
    """A message with the file, digests and the loader's exception name taken out."""
    message = message.replace(str(path), "FILE").replace(str(path.parent), "DIR")
    message = re.sub(r"[0-9a-f]{12}…", "DIGEST…", message).replace("torch file", "FILE").replace("ONNX file", "FILE")
    return re.sub(r" \(\w+\)$", "", message)


@pytest.mark.parametrize("damage", [truncated, mismatch, unlisted], ids=["truncated", "mismatch", "unlisted"])
def test_bad_onnx_files_fail_like_pt_files(exported: Path, tmp_path: Path, damage) -> None:
    (tmp_path / "pt").mkdir()
    (tmp_path / "onnx").mkdir()
    pt = damage(SHIPPED / "detector.pt", tmp_path / "pt" / "detector.pt")
    onnx = damage(exported / "detector.onnx", tmp_path / "onnx" / "detector.onnx")
    with pytest.raises(WeightsError) as pt_error:
        build_pipeline(
            load_config(None, {"runtime.engine": "torch", "runtime.precision": "fp32", "detector.weights": str(pt)})
        )
    with pytest.raises(WeightsError) as onnx_error:
        build_pipeline(_onnx_cfg(exported, detector=onnx))
    message = str(onnx_error.value)
    assert "\n" not in message and str(onnx) in message and len(message) < 300
    assert _shape(message, onnx) == _shape(str(pt_error.value), pt)


def test_wrong_model_and_missing_metadata_are_named(exported: Path, tmp_path: Path) -> None:
    import onnx

    with pytest.raises(WeightsError, match="holds a 'mask_classifier_mnv1_025' model, expected 'retinaface_mnet025'"):
        OnnxRetinaFaceDetector(exported / "classifier.onnx")
    bare = onnx.load(str(exported / "detector.onnx"))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    write_manifest_entry(tmp_path / "bare.onnx")
    with pytest.raises(WeightsError, match=r"bare\.onnx lacks maskwatch's 'arch' metadata.*maskwatch export"):
        OnnxRetinaFaceDetector(tmp_path / "bare.onnx")


NO_TORCH_RUN = """
import sys, runpy
sys.argv = ["maskwatch", *sys.argv[1:]]
try:
    runpy.run_module("maskwatch", run_name="__main__")
finally:
    print("imported:", *sorted(m for m in ("torch", "torchvision", "onnxruntime") if m in sys.modules))
"""


def test_run_with_the_onnx_engine_never_imports_torch(exported: Path, tmp_path: Path) -> None:
    config = tmp_path / "onnx.yaml"
    config.write_text(
        f"detector:\n  onnx_weights: {exported / 'detector.onnx'}\n"
        f"classifier:\n  onnx_weights: {exported / 'classifier.onnx'}\n"
    )
    image, out = tmp_path / "in.png", tmp_path / "out.png"
    cv2.imwrite(str(image), cv2.imread(str(ROOT / "docs" / "example.png")))
    argv = ["run", "--source", str(image), "--output", str(out), "--engine", "onnx", "--config", str(config)]
    argv += ["--precision", "fp32"]
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH_RUN, *argv], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "imported: onnxruntime"
    assert "onnx fp32" in done.stderr and cv2.imread(str(out)).shape == (360, 640, 3)
