"""The ``maskwatch`` command, invoked as a user would (a subprocess), checked by exit status and output."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import count_frames, write_video
from tests.helpers import ROOT, maskwatch


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_version_and_help():
    assert maskwatch("--version").stdout.startswith("maskwatch ")
    out = maskwatch("run", "--help").stdout
    for flag in ("--source", "--output", "--show", "--detections", "--config", "--device", "--precision"):
        assert flag in out


@pytest.mark.parametrize(
    ("make_args", "fragments"),
    [
        (lambda d, v: ["--source", str(d / "missing.mp4")], ["source not found", "missing.mp4"]),
        (lambda d, v: ["--source", str(v), "--output", str(d / "nodir" / "o.mp4")], ["output folder does not exist"]),
        (lambda d, v: ["--source", str(v), "--output", str(v)], ["would overwrite the input"]),
        (lambda d, v: ["--source", str(v), "--output", str(d / "o.txt")], ["must be a video file"]),
        (lambda d, v: ["--source", "rtsp://user:hunter2@127.0.0.1:9/x"], ["rtsp://***@127.0.0.1:9/x"]),
    ],
)
def test_user_errors_are_one_line(tmp_path, video, make_args, fragments):
    proc = maskwatch("run", *make_args(tmp_path, video))
    assert_user_error(proc, *fragments)
    assert "hunter2" not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        ("detector:\n  score_treshold: 0.3\n", "unknown config key 'detector.score_treshold'"),
        ("detector: [oops\n", "not valid YAML"),
        ("capture:\n  queue_size: lots\n", "capture.queue_size"),
        ("detector:\n  nms_iou: 3\n", "detector.nms_iou"),
    ],
)
def test_bad_config_is_named(tmp_path, video, yaml_text, fragment):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    assert_user_error(maskwatch("run", "--source", str(video), "--config", str(cfg)), fragment)


@pytest.mark.parametrize(("key", "precision"), [("weights", "fp32"), ("onnx_int8_weights", "int8")])
def test_missing_weights_named(tmp_path, video, key, precision):
    cfg = tmp_path / "c.yaml"
    name = "nope.onnx" if key.startswith("onnx") else "nope.pt"
    cfg.write_text(f"detector:\n  {key}: {name}\n")
    engine = "onnx" if key.startswith("onnx") else "torch"  # .pt files are the torch engine's
    proc = maskwatch("run", "--source", str(video), "--config", str(cfg), "--precision", precision, "--engine", engine)
    assert_user_error(proc, name)


def test_video_end_to_end_with_shipped_models(tmp_path):
    video = write_video(tmp_path / "in.mp4", frames=15, size_wh=(320, 240), fps=15.0)
    out, dets = tmp_path / "out.mp4", tmp_path / "d.jsonl"
    proc = maskwatch("run", "--source", str(video), "--output", str(out), "--detections", str(dets))
    assert proc.returncode == 0, proc.stderr
    assert count_frames(out) == (15, (320, 240), pytest.approx(15.0, abs=0.01))
    records = [json.loads(line) for line in dets.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(15))
    assert all(set(r) == {"source", "frame", "faces"} for r in records)


def test_image_folder_end_to_end(tmp_path):
    import cv2
    import numpy as np

    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"{i}.jpg"), np.full((90, 120, 3), 40 * i, np.uint8))
    out = tmp_path / "annotated"
    proc = maskwatch("run", "--source", str(src), "--output", str(out), "--detections", str(tmp_path / "d.jsonl"))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["0.jpg", "1.jpg", "2.jpg"]
    sources = [json.loads(line)["source"] for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert sources == ["0.jpg", "1.jpg", "2.jpg"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_file_leaves_playable_output(tmp_path, sig):
    video = write_video(tmp_path / "in.mp4", frames=400, size_wh=(320, 240), fps=25.0)
    out, dets = tmp_path / "out.mp4", tmp_path / "d.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "maskwatch",
            "run",
            "--source",
            str(video),
            "--output",
            str(out),
            "--detections",
            str(dets),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not dets.exists() or len(dets.read_text().splitlines()) < 5):
        time.sleep(0.05)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], stderr
    assert "Traceback" not in stderr
    written = len(dets.read_text().splitlines())
    n, size, _ = count_frames(out)
    assert 5 <= n < 400 and n == written and size == (320, 240)


def test_show_without_display_is_a_clear_error(video):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = maskwatch("run", "--source", str(video), "--show", env=env)
    assert_user_error(proc, "--show needs a display")


def test_train_without_epochs_uses_the_recipe_and_reports_bad_data_in_one_line(tmp_path):
    """``--epochs`` is optional (the shipped recipe's count); a missing dataset is one error line, no traceback."""
    run = maskwatch("train", "classifier", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "c.pt"))
    assert run.returncode == 1, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "required positional argument" not in run.stderr
    assert sum("ERROR" in line for line in run.stderr.splitlines()) == 1


def test_no_product_default_points_beside_the_checkout():
    """Defaults must work from any install: nothing in the package reaches for a ``../shared`` folder."""
    package = ROOT / "maskwatch"
    offenders = [str(p.relative_to(ROOT)) for p in package.rglob("*.py") if '"shared"' in p.read_text()]
    assert offenders == []


def test_quantize_needs_data_and_the_detector_trainer_needs_init(tmp_path):
    quantize = maskwatch("quantize", "--out", str(tmp_path))
    assert quantize.returncode == 2 and "--data" in quantize.stderr, quantize.stderr[-2000:]
    train = maskwatch("train", "detector", "--data", str(tmp_path), "--out", str(tmp_path / "d.pt"))
    assert_user_error(train, "train detector needs --init PATH")
