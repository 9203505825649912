"""Detector backends come from one table: loading by the architecture a file names, ONNX by its metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from maskwatch.errors import WeightsError
from maskwatch.models import registry
from maskwatch.models.detector import load_detector
from maskwatch.models.manifest import WEIGHTS_DIRS
from maskwatch.models.onnx_engine import OnnxRetinaFaceDetector
from maskwatch.models.registry import DetectorBackend, backend, exportable_detectors, load_onnx_detector
from maskwatch.types import FaceDetections


class StubDetector:
    """A backend in a test module: what a new detector's module provides."""

    precision = "fp32"

    def __init__(self, weights: Path, *, input_size: int, **settings: object) -> None:
        self.weights, self.input_size, self.settings = weights, input_size, settings

    def detect(self, image_bgr: np.ndarray) -> FaceDetections:
        return FaceDetections.empty()


def test_the_shipped_detector_is_the_one_exportable_backend() -> None:
    assert exportable_detectors() == ["retinaface_mnet025"]
    assert backend("retinaface_mnet025").shipped and not backend("fasterrcnn_resnet50_fpn").exportable


def test_onnx_files_are_loaded_by_the_backend_their_metadata_names() -> None:
    detector = load_onnx_detector(WEIGHTS_DIRS[0] / "detector.onnx", score_threshold=0.4)
    assert isinstance(detector, OnnxRetinaFaceDetector) and detector.score_threshold == pytest.approx(0.4)
    with pytest.raises(WeightsError, match="not a face detector maskwatch knows"):
        load_onnx_detector(WEIGHTS_DIRS[0] / "classifier.onnx")


def test_a_new_backend_is_one_module_and_one_registration(tmp_path: Path, monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    from maskwatch.models.manifest import write_manifest_entry
    from maskwatch.models.weights import save_model_file

    path = tmp_path / "stub.pt"
    save_model_file(path, "stub_net", {"w": torch.zeros(1)}, {"input_size": 320})
    write_manifest_entry(path)
    with pytest.raises(WeightsError, match="'stub_net' model, not a face detector maskwatch knows"):
        load_detector(path)
    monkeypatch.setitem(registry._BACKENDS, "stub_net", DetectorBackend("stub_net", 480, f"{__name__}:StubDetector"))
    detector = load_detector(path, score_threshold=0.3)
    assert isinstance(detector, StubDetector) and detector.input_size == 320  # from the file's meta
    assert detector.settings["score_threshold"] == 0.3
