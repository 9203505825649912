"""One run path: ``--source`` and the config's ``sources:`` list apply the same rules to the same input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from maskwatch.cli import main
from maskwatch.models.onnx_engine import OnnxRetinaFaceDetector
from maskwatch.types import FaceDetections
from tests.conftest import write_video


def _two_faces(self, image_bgr: np.ndarray) -> FaceDetections:
    """A weak face (0.35) and a strong one (0.9), cut at the detector's own threshold as the real one does."""
    boxes = np.array([[10, 10, 50, 60], [90, 20, 140, 80]], np.float32)
    scores = np.array([0.35, 0.9], np.float32)
    keep = scores >= self.score_threshold
    return FaceDetections(xyxy=boxes[keep], det_score=scores[keep])


@pytest.fixture
def two_faces(monkeypatch):
    monkeypatch.setattr(OnnxRetinaFaceDetector, "detect", _two_faces)
    monkeypatch.setattr(
        OnnxRetinaFaceDetector, "detect_batch", lambda self, images: [_two_faces(self, i) for i in images]
    )


def _scores(path: Path) -> list[float]:
    return sorted({face["det_score"] for line in path.read_text().splitlines() for face in json.loads(line)["faces"]})


@pytest.mark.parametrize("track", [False, True])
def test_the_detector_threshold_is_the_same_through_source_and_sources(tmp_path, two_faces, track):
    clip = write_video(tmp_path / "clip.mp4", frames=6, size_wh=(160, 120))
    cams = tmp_path / "cams.yaml"
    cams.write_text(yaml.safe_dump({"sources": [str(clip)], "runtime": {"precision": "fp32", "engine": "onnx"}}))
    flags = [] if track else ["--no-track"]
    one, many = tmp_path / "one.jsonl", tmp_path / "many.jsonl"
    assert main(["run", "--config", str(cams), "--source", str(clip), "--detections", str(one), *flags]) == 0
    assert main(["run", "--config", str(cams), "--detections", str(many), *flags]) == 0
    assert _scores(one) == _scores(many)
    if not track:  # untracked, each frame shows what the detector kept at detector.score_threshold (0.5)
        assert _scores(many) == [0.9]
