"""The bench's end-to-end figures: per-frame agreement of two runs' detections, and whole runs on a tiny clip."""

from __future__ import annotations

import json

import pytest

from maskwatch.commands.bench.core import synthetic_frames
from maskwatch.commands.bench.e2e import agreement, e2e_figures, read_detections
from tests.conftest import write_video


def _face(box, label="with_mask"):
    return {"box": list(box), "label": label, "score": 0.9, "det_score": 0.9}


def test_agreement_counts_faces_boxes_and_labels():
    ref = {0: [], 1: [_face((0, 0, 10, 10))], 2: [_face((0, 0, 10, 10)), _face((50, 50, 70, 70))]}
    same = agreement(ref, ref)
    assert same == {"frames": 3, "same_count": 1.0, "matched": 1.0, "mean_iou": 1.0, "same_label": 1.0, "extra": 0.0}
    other = {
        0: [_face((100, 100, 110, 110))],  # an extra face
        1: [_face((0, 0, 10, 5), "without_mask")],  # half the box, another label
        2: [_face((50, 50, 70, 70))],  # one of two faces missed
    }
    got = agreement(ref, other)
    assert got["same_count"] == pytest.approx(1 / 3)
    assert got["matched"] == pytest.approx(2 / 3)
    assert got["mean_iou"] == pytest.approx((0.5 + 1.0) / 2)
    assert got["same_label"] == pytest.approx(0.5)
    assert got["extra"] == pytest.approx(1 / 3)


def test_read_detections(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"frame": i, "faces": []}) for i in range(3)) + "\n")
    assert read_detections(path) == {0: [], 1: [], 2: []}


def test_synthetic_frames_are_640x480_and_move():
    frames = synthetic_frames(3)
    assert len(frames) == 3 and frames[0].shape == (480, 640, 3) and (frames[0] != frames[2]).any()


def test_e2e_figures_time_the_default_beside_detect_every_1(tmp_path):
    clip = write_video(tmp_path / "v.mp4", frames=12, size_wh=(160, 120))
    result = e2e_figures(clip, ["--engine", "onnx", "--precision", "fp32"], repeats=1)
    assert set(result["fps"]) == {"default", "detect_every_1"} and min(result["fps"].values()) > 0
    assert result["reference"] == "detect_every_1"
    ref = result["agreement"]["detect_every_1"]
    assert ref["frames"] == 12 and ref["same_count"] == 1.0 and ref["same_people_labels"]


@pytest.mark.slow
def test_bench_json_defaults_to_onnx_and_reports_end_to_end_fps(tmp_path):
    from maskwatch.cli import main

    video = write_video(tmp_path / "v.mp4", frames=6, size_wh=(320, 240))
    out = tmp_path / "b.json"
    args = ["bench", "--video", str(video), "--frames", "4", "--repeats", "1", "--runs", "2", "--seed-runs", "0"]
    assert main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["engine"] == "onnx" and result["detector"]["engines"]["fp32"] == "onnx"
    for name in ("detector", "classifier"):
        assert {"fp32_ms", "int8_ms", "fp32_bytes", "int8_bytes"} <= set(result[name]) and result[name]["fp32_ms"] > 0
    assert set(result["pipeline_fps"]) == {"fp32", "int8"} and result["pipeline_fps"]["fp32"] > 0
    assert {"startup_s", "rss_mb", "busy_core_ratio", "seed_frcnn_ms"} <= set(result)
    assert result["pipeline_fps_e2e"] > 0 and result["pipeline_fps_e2e_detect_every_1"] > 0
    assert set(result["e2e"]) == {"synthetic", "video"} and result["setup"]["e2e_clip"] == "video"
    assert result["setup"]["detect_every"] == 4 and result["setup"]["run_precision"] in ("fp32", "int8")
    assert result["e2e"]["video"]["agreement"]["detect_every_1"]["same_count"] == 1.0


def test_int8_figures_come_from_onnx_files_when_they_exist(monkeypatch, tmp_path):
    from maskwatch.commands.bench import models
    from maskwatch.config import load_config

    cfg = load_config(None, {"runtime.engine": "onnx"})
    monkeypatch.setattr(models, "onnx_int8_files", lambda cfg: (tmp_path / "d.onnx", tmp_path / "c.onnx"))
    assert models.engines(cfg) == {"fp32": "onnx", "int8": "onnx"}
    monkeypatch.setattr(models, "onnx_int8_files", lambda cfg: None)
    assert models.engines(cfg) == {"fp32": "onnx", "int8": None}  # no int8 files at all: int8 figures are null
