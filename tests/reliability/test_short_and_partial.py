"""Real inputs that are short, cut off or interrupted, and outputs that differ only in their suffix.

Each case records one row of the reliability table. The command-line cases are real ``maskwatch run`` processes
with the shipped models (fp32: they load in a fraction of the int8 ones' time), forked from a helper that has
already imported maskwatch (see :class:`~tests.reliability.test_bad_input.ForkedCli`); the interrupted run is a
plain subprocess, to be signalled. The reconnect case runs in process on a fake clock (an outage of 12 s).
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
import numpy as np
import pytest
import yaml

from tests.conftest import write_video
from tests.helpers import ROOT
from tests.reliability.test_bad_input import ForkedCli

AREA = "real inputs"
FP32 = ("--precision", "fp32", "--no-progress")


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    forked = ForkedCli(tmp_path_factory.mktemp("cli"))
    yield forked
    forked.close()


def _face_scene(h: int = 240, w: int = 320) -> np.ndarray:
    """A drawn person (face, eyes, a white mask) the shipped detector finds, as in docs/make_example.py."""
    y = np.linspace(0, 1, h)[:, None, None]
    image = (np.array([90, 80, 60]) * (1 - y) + np.array([40, 45, 50]) * y).astype(np.uint8).repeat(w, axis=1)
    cx, cy, r = w // 2, h // 2 - 10, 60
    cv2.rectangle(image, (cx - r, cy + r), (cx + r, h), (70, 60, 140), -1)  # shoulders
    cv2.ellipse(image, (cx, cy), (int(r * 0.8), r), 0, 0, 360, (150, 180, 220), -1)  # face
    cv2.circle(image, (cx - r // 3, cy - r // 4), 4, (40, 40, 40), -1)
    cv2.circle(image, (cx + r // 3, cy - r // 4), 4, (40, 40, 40), -1)
    cv2.ellipse(image, (cx, cy + r // 3), (int(r * 0.75), r // 2), 0, 0, 180, (235, 235, 230), -1)  # mask
    return image


def _report(prefix: Path) -> dict:
    return json.loads(prefix.with_name(prefix.name + ".report.json").read_text())


def test_short_videos_report_the_people_they_show(cli, tmp_path, record):
    scene = _face_scene()
    videos = {n: write_video(tmp_path / f"still{n}.mp4", frames=n, fps=10.0, still=scene) for n in (1, 2, 6)}
    one = cli("run", "--source", str(videos[1]), "--events", str(tmp_path / "one.jsonl"), *FP32)
    cams = tmp_path / "cams.yaml"  # the many-sources form: each source's monitor gets its own frame count
    cams.write_text(yaml.safe_dump({"sources": [{"name": f"n{n}", "source": str(videos[n])} for n in (2, 6)]}))
    many = cli("run", "--config", str(cams), "--events", str(tmp_path / "many.jsonl"), *FP32)
    assert one.returncode == 0 and many.returncode == 0, one.stderr + many.stderr
    people = {
        1: _report(tmp_path / "one")["people"]["total"],
        2: _report(tmp_path / "many.n2")["people"]["total"],
        6: _report(tmp_path / "many.n6")["people"]["total"],
    }
    observed = ", ".join(f"{n} frame(s): {people[n]} people" for n in people)
    ok = people[6] > 0 and people[1] == people[2] == people[6]
    expected = "a 1- and a 2-frame video (fewer than tracking.min_hits 3) report the people a 6-frame clip does (> 0)"
    record(AREA, "still video of one face, 1 / 2 / 6 frames", expected, observed, ok)
    assert people[6] > 0, "the shipped detector found no face in the drawn scene: the case proves nothing"
    assert ok, observed


def test_partial_reports_say_why(cli, tmp_path, record):
    full = write_video(tmp_path / "full.avi", frames=10, fourcc="MJPG")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    runs = {
        name: cli("run", "--source", str(path), "--events", str(tmp_path / f"{name}.jsonl"), *FP32)
        for name, path in (("full", full), ("cut", cut))
    }
    assert all(r.returncode == 0 for r in runs.values()), [r.stderr for r in runs.values()]
    long = write_video(tmp_path / "long.mp4", frames=400, size_wh=(320, 240), fps=25.0)
    dets, small_queue = tmp_path / "d.jsonl", tmp_path / "q.yaml"
    small_queue.write_text("capture:\n  queue_size: 1\n")  # little to drain after the signal
    out = tmp_path / "long_out.mp4"
    command = [sys.executable, "-m", "maskwatch", "run", "--source", str(long), "--output", str(out)]
    proc = subprocess.Popen(
        [*command, "--detections", str(dets), "--config", str(small_queue), *FP32],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not dets.exists() or len(dets.read_text().splitlines()) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    summaries = {name: _report(tmp_path / name)["summary"] for name in ("full", "cut", "long_out")}
    got = {name: (s.get("partial"), s.get("partial_reason")) for name, s in summaries.items()}
    md = (tmp_path / "long_out.report.md").read_text()
    decoded = summaries["cut"]["frames"]
    want = {
        "full": (False, None),
        "cut": (True, f"truncated input ({decoded} of 10 frames)"),
        "long_out": (True, "interrupted"),
    }
    ok = got == want and decoded < 9 and "- Partial report: interrupted" in md
    observed = "; ".join(f"{name}: partial {p}, reason {r!r}" for name, (p, r) in got.items())
    expected = (
        "whole video: partial false; truncated: partial true, 'truncated input (N of 10 frames)'; "
        "SIGINT mid-file: partial true, 'interrupted' (also in the .md)"
    )
    record(AREA, "report of a whole, a truncated and an interrupted video", expected, observed, ok)
    assert ok, (got, md)


def test_live_downtime_after_a_12_s_outage(record):
    from loguru import logger

    from maskwatch.capture.reconnect import ReconnectingSource
    from maskwatch.runner.single import RunStats
    from maskwatch.runner.status import log_done
    from tests.test_reconnect import FakeClock, FlakyOpener, StalledCamera

    clock = FakeClock()
    camera = StalledCamera(clock, frames=3, block_s=12.0)  # the stream goes away; a read blocks 12 s
    src = ReconnectingSource(
        FlakyOpener(clock, failures=0, frames=None), "cam", stall_s=10.0, clock=clock, first=camera
    )
    frames = sum(src.read() is not None for _ in range(8))
    lines: list[str] = []
    sink = logger.add(lines.append, format="{message}")
    try:
        log_done(src, RunStats(frames=frames, wall_s=20.0))
    finally:
        logger.remove(sink)
    done = next(line.strip() for line in lines if line.startswith("done:"))
    ok = src.outages == 1 and src.connected and src.downtime_s == pytest.approx(12.0) and "12 s down" in done
    expected = "stream gone 12 s (longer than read_timeout_s 10 s), then back: '1 outage(s), 12 s down'"
    record(AREA, "live stream back after a 12 s outage (fake clock)", expected, f"{done!r}", ok)
    assert ok, done


def test_outputs_with_the_same_stem_keep_their_own_reports(cli, tmp_path, record):
    # a different input length per output tells the reports apart
    outputs = {".mp4": 2, ".mkv": 3, ".avi": 4}  # a CPU here may run ~1 frame a second
    for suffix, frames in outputs.items():
        video = write_video(tmp_path / f"in{frames}.mp4", frames=frames)
        run = cli("run", "--source", str(video), "--output", str(tmp_path / f"out{suffix}"), *FP32)
        assert run.returncode == 0, run.stderr
    reports = sorted(p.name for p in tmp_path.glob("*.report.json"))
    frames = {name: json.loads((tmp_path / name).read_text())["summary"]["frames"] for name in reports}
    want = {"out.report.json": 2, "out.mkv.report.json": 3, "out.avi.report.json": 4}
    ok = frames == want
    expected = (
        "out.mp4 → out.report.json, out.mkv → out.mkv.report.json, out.avi → out.avi.report.json; none overwritten"
    )
    observed = ", ".join(f"{name}: {n} frames" for name, n in frames.items())
    record(AREA, "--output out.mp4, out.mkv, out.avi in one folder", expected, observed, ok)
    assert ok, frames
