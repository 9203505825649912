"""Ending a run from outside (a hang-up, a doubled SIGTERM as ``timeout`` sends) and outputs that name one file.

Through the real command line, with a clip made in the test from the demo's frames (real faces, so tracks are open
when the signal comes and their ``end`` events must still be written).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from tests.conftest import count_frames
from tests.helpers import ROOT, maskwatch

DEMO = ROOT / "maskwatch" / "demo" / "demo.mp4"


def _looped_demo(path: Path, frames: int = 600) -> Path:
    """The demo's frames, looped to ``frames`` (long enough to be stopped part-way)."""
    cap = cv2.VideoCapture(str(DEMO))
    images = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        images.append(image)
    cap.release()
    h, w = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (w, h))
    for i in range(frames):
        writer.write(images[i % len(images)])
    writer.release()
    return path


@pytest.mark.parametrize("signals", [(signal.SIGHUP,), (signal.SIGTERM, signal.SIGTERM)], ids=["SIGHUP", "2xSIGTERM"])
def test_a_hangup_or_a_doubled_sigterm_still_finishes_the_run(tmp_path, signals, record):
    clip = _looped_demo(tmp_path / "in.mp4")
    out, dets, events = tmp_path / "out.mp4", tmp_path / "d.jsonl", tmp_path / "e.jsonl"
    args = ["run", "--source", str(clip), "--output", str(out), "--detections", str(dets), "--events", str(events)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "maskwatch", *args, "--precision", "fp32", "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (not dets.exists() or len(dets.read_text().splitlines()) < 60):
        time.sleep(0.05)
    for sig in signals:  # `timeout` signals the child and then its process group: two SIGTERMs a moment apart
        proc.send_signal(sig)
        time.sleep(0.2)
    _, stderr = proc.communicate(timeout=60)
    written = len(dets.read_text().splitlines())
    n = count_frames(out)[0] if out.exists() else 0
    kinds = [json.loads(line)["event"] for line in events.read_text().splitlines()] if events.exists() else []
    report = (tmp_path / "out.report.json").exists()
    expected_rc = 128 + signals[0]
    ok = (
        proc.returncode == expected_rc
        and "Traceback" not in stderr
        and 60 <= n == written < 600
        and "end" in kinds
        and report
    )
    name = " + ".join(signal.Signals(s).name for s in signals)
    record(
        "faults",
        f"{name} while writing a file",
        f"exit {expected_rc}; the video plays with every processed frame; end events and the report written",
        f"exit {proc.returncode}; video {n} frames, {written} processed; events {sorted(set(kinds))}; "
        f"report {'written' if report else 'missing'}",
        ok,
    )
    assert ok, stderr[-2000:]


CLASHES = {
    "--events = --detections": (["--events", "x.jsonl", "--detections", "sub/../x.jsonl"], "x.jsonl"),
    "--detections = --output": (["--detections", "o.mp4", "--output", "o.mp4"], "o.mp4"),
    "--report files = --detections": (["--report", "r", "--detections", "r.report.json"], "r.report.json"),
}


@pytest.mark.parametrize("case", list(CLASHES))
def test_two_outputs_naming_one_file_are_refused_at_start(tmp_path, case, record):
    clip = _looped_demo(tmp_path / "in.mp4", frames=5)
    (tmp_path / "sub").mkdir()
    flags, shared = CLASHES[case]
    kept = tmp_path / shared
    kept.write_text("an earlier run's output\n")
    flags = [str(tmp_path / f) if not f.startswith("--") else f for f in flags]
    proc = maskwatch("run", "--source", str(clip), *flags, "--no-progress")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    untouched = kept.read_text() == "an earlier run's output\n"
    ok = proc.returncode == 2 and len(lines) == 1 and "same file" in lines[0] and untouched
    ok = ok and "Traceback" not in proc.stderr
    record(
        "bad input",
        f"two outputs name one file ({case})",
        "refused at start: one line, exit 2, nothing overwritten",
        f"exit {proc.returncode}; {lines[-1] if lines else ''!r}; existing file {'kept' if untouched else 'changed'}",
        ok,
    )
    assert ok, proc.stderr[-2000:]
