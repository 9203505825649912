"""``maskwatch batch`` on a local Ray: complete frame-exact outputs, a reported failure, resumable re-runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import pytest

from maskwatch.commands.batch.receipts import expand_inputs, finished, stem_of
from maskwatch.errors import MaskwatchError
from tests.conftest import count_frames, write_video
from tests.helpers import maskwatch
from tests.test_chunks import frame_number, write_indexed_video


def test_inputs_from_a_glob_or_a_list_file(tmp_path):
    for name in ("a.mp4", "b.mp4", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert [p.name for p in expand_inputs(str(tmp_path / "*.mp4"))] == ["a.mp4", "b.mp4"]
    listing = tmp_path / "list.txt"
    listing.write_text("b.mp4\n\na.mp4\nb.mp4\n")
    assert [p.name for p in expand_inputs(str(listing))] == ["a.mp4", "b.mp4"]
    with pytest.raises(MaskwatchError, match="matches no video"):
        expand_inputs(str(tmp_path / "*.avi"))


def test_colliding_stems_get_their_folder_name(tmp_path):
    videos = [tmp_path / "cam1" / "x.mp4", tmp_path / "cam2" / "x.mp4", tmp_path / "y.mp4"]
    assert [stem_of(v, videos) for v in videos] == ["cam1_x", "cam2_x", "y"]


def _batch(*args: str) -> subprocess.CompletedProcess:
    return maskwatch("batch", *args, timeout=600)


@pytest.mark.slow
def test_batch_on_local_ray_with_a_corrupt_video_and_a_rerun(tmp_path):
    pytest.importorskip("ray")
    videos = tmp_path / "videos"
    videos.mkdir()
    write_indexed_video(videos / "a.mp4", frames=60, size_wh=(160, 120))  # long enough for 3 chunks of 2 s
    write_video(videos / "b.mp4", frames=17, size_wh=(200, 100))
    (videos / "c.mp4").write_text("this is not a video")
    out = tmp_path / "out"
    args = ["--inputs", str(videos / "*.mp4"), "--out", str(out), "--workers", "2", "--retries", "1"]
    args += ["--chunk-s", "2", "--overlap-s", "0.5"]
    proc = _batch(*args, "--precision", "fp32")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    summary = {Path(r["video"]).name: r for r in json.loads((out / "batch_summary.json").read_text())}
    assert summary["a.mp4"]["status"] == "done" and summary["b.mp4"]["status"] == "done"
    assert summary["c.mp4"]["status"] == "failed" and summary["c.mp4"]["attempts"] == 2
    assert "no readable frames" in summary["c.mp4"]["error"]
    assert "2 done, 0 skipped, 1 failed" in proc.stdout and "FAILED" in proc.stdout
    receipt = json.loads((out / "a.done.json").read_text())
    assert receipt["chunks"] == 3 and json.loads((out / "b.done.json").read_text())["chunks"] == 1
    cap = cv2.VideoCapture(str(out / "a.annotated.mp4"))
    shown = []
    while (frame := cap.read()[1]) is not None:
        shown.append(frame_number(frame))
    assert shown == list(range(60))  # the chunks joined back in order, every frame once
    for stem, n, size in (("a", 60, (160, 120)), ("b", 17, (200, 100))):
        assert count_frames(out / f"{stem}.annotated.mp4")[:2] == (n, size)  # frame-exact
        assert len((out / f"{stem}.detections.jsonl").read_text().splitlines()) == n
        assert json.loads((out / f"{stem}.report.json").read_text())["summary"]["frames"] == n
        assert finished(out, stem, videos / f"{stem}.mp4") is not None
    assert not list(out.glob(".*partial*"))  # no half-written outputs left behind
    assert not (out / "c.annotated.mp4").exists()

    # damage one finished output: the re-run redoes that video and skips the intact one
    damaged = out / "b.detections.jsonl"
    damaged.write_text(damaged.read_text()[:-40])
    proc = _batch(*args, "--precision", "fp32")
    summary = {Path(r["video"]).name: r for r in json.loads((out / "batch_summary.json").read_text())}
    assert summary["a.mp4"]["status"] == "skipped"
    assert summary["b.mp4"]["status"] == "done"
    assert summary["c.mp4"]["status"] == "failed"
    assert len(damaged.read_text().splitlines()) == 17
