"""Event clips: pre-alert buffer (raw within its memory budget, JPEG beyond), one clip for overlapping alerts, live
frame rate, blur, retention, a full disk, a sink that never blocks, and the demo run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.demo import resolve_source
from maskwatch.outputs.clip_buffer import FrameRing
from maskwatch.outputs.clips import CLIP_NAME, ClipRecorder, ClipSink, _Item, clip_file_name, prune_clips
from maskwatch.outputs.picture import Picture
from maskwatch.outputs.render import OverlayRenderer
from maskwatch.runner.faults import fault_counts, reset_faults
from maskwatch.types import Event, FaceDetections, Frame, FrameResult

W, H = 96, 64


def _image(i: int) -> np.ndarray:
    """A frame whose index can be read back from the video: 8 blocks, white where the index has a 1 bit."""
    image = np.full((H, W, 3), 20, np.uint8)
    for bit in range(8):
        if (i >> bit) & 1:
            image[:, bit * 12 : (bit + 1) * 12] = 235
    return image


def _index(frame: np.ndarray) -> int:
    return sum(1 << bit for bit in range(8) if frame[8:-8, bit * 12 + 3 : bit * 12 + 9].mean() > 128)


def _alert(track: int = 3, ts: str = "2026-03-01T12:34:56.789+00:00") -> tuple[int, str]:
    return (track, ts)


def _feed(recorder: ClipRecorder, n: int, fps: float, alerts: dict[int, list[tuple[int, str]]], pump=True) -> None:
    for i in range(n):
        recorder.frame(_Item(i / fps, Picture.of(_image(i)), alerts.get(i, [])))
        while pump and recorder.pump():
            pass


def _frames(path: Path) -> tuple[list[int], float]:
    cap = cv2.VideoCapture(str(path))
    levels = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        levels.append(_index(frame))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return levels, fps


def _recorder(folder: Path, **kw) -> ClipRecorder:
    kw = {"fps": 10.0, "live": False, "pre_s": 1.0, "post_s": 1.0} | kw
    return ClipRecorder(folder, "door cam 1", **kw)


RAW_MB = {"raw": 80.0, "jpeg": 0.0, "mixed": 5 * W * H * 3 / 1e6}
"""Pre-alert buffers: all frames raw, all JPEG, the 5 newest raw (the 1-s buffer holds 11 frames)."""


@pytest.fixture(params=list(RAW_MB))
def raw_mb(request) -> float:
    return RAW_MB[request.param]


def test_a_clip_holds_pre_s_before_and_post_s_after_the_alert(tmp_path, raw_mb):
    recorder = _recorder(tmp_path, raw_buffer_mb=raw_mb)
    _feed(recorder, 50, 10.0, {20: [_alert()]})
    assert len(recorder.written) == 1
    clip = recorder.written[0]
    assert clip.name == "door_cam_1_3_20260301T123456Z.mp4" and CLIP_NAME.fullmatch(clip.name)
    levels, fps = _frames(clip)
    assert fps == pytest.approx(10.0)
    assert levels == list(range(10, 31))  # t = 1.0 .. 3.0 s: 1 s before the alert at 2.0 s, 1 s after
    assert [p.name for p in tmp_path.iterdir()] == [clip.name]  # no partial left


def test_overlapping_alerts_extend_one_clip_and_a_later_one_starts_another(tmp_path, raw_mb):
    recorder = _recorder(tmp_path, raw_buffer_mb=raw_mb)
    alerts = {20: [_alert(3)], 25: [_alert(4, "2026-03-01T12:34:57+00:00")], 45: [_alert(5, "2026-03-01T12:35:10Z")]}
    _feed(recorder, 60, 10.0, alerts)
    assert [p.name.split("_")[3] for p in recorder.written] == ["3", "5"]
    first, _ = _frames(recorder.written[0])
    assert first == list(range(10, 36))  # 1 s before the first alert to 1 s after the second
    second, _ = _frames(recorder.written[1])
    assert second == list(range(35, 56))  # 1 s before the third alert to 1 s after


def test_a_clip_longer_than_the_pre_alert_buffer_keeps_only_what_a_next_clip_can_need(tmp_path):
    recorder = _recorder(tmp_path, pre_s=1.0, post_s=3.0, raw_buffer_mb=0.0)
    kept: list[float] = []
    keep = recorder._keep

    def counting(t: float, picture: Picture) -> Picture | None:
        kept_picture = keep(t, picture)
        if kept_picture is not None:
            kept.append(t)
        return kept_picture

    recorder._keep = counting  # type: ignore[method-assign]
    _feed(recorder, 80, 10.0, {20: [_alert(3)], 51: [_alert(4, "2026-03-01T12:35:00Z")]})
    recorder.finish()
    first, _ = _frames(recorder.written[0])
    second, _ = _frames(recorder.written[1])
    assert first == list(range(10, 51))  # 1 s before the alert at 2.0 s, 3 s after
    assert second == list(range(41, 80))  # the next alert, just after: its full second before (cut by the run end)
    encoded = {round(t * 10) for t in kept}
    assert not encoded & set(range(21, 40))  # written straight into the first clip, out of any later clip's reach
    assert set(range(40, 52)) <= encoded


def test_frames_that_come_while_the_pre_alert_ones_are_written_are_not_lost(tmp_path, raw_mb):
    recorder = _recorder(tmp_path, pre_s=2.0, post_s=1.0, raw_buffer_mb=raw_mb)
    _feed(recorder, 30, 10.0, {25: [_alert()]}, pump=False)  # a writer that gets no time until frame 30
    assert recorder.written == [] and len(recorder.backlog) == 25  # 21 before the alert, 4 after
    for i in range(30, 50):
        recorder.frame(_Item(i / 10, Picture.of(_image(i)), []))
        recorder.pump()  # two waiting frames written per frame that arrives
        recorder.pump()
    levels, _ = _frames(recorder.written[0])
    assert levels == list(range(5, 36))  # 2 s before the alert at 2.5 s, 1 s after, none missing


def test_the_buffer_keeps_frames_raw_within_its_budget_and_encodes_the_rest():
    frame_bytes = W * H * 3
    ring = FrameRing(seconds=1.0, max_frames=100, budget_bytes=3.5 * frame_bytes)
    kept = [ring.add(i / 10, Picture.of(_image(i))) for i in range(30)]
    assert all(k is not None for k in kept)
    assert [k.in_memory for k in kept[:4]] == [True] * 3 + [False]  # type: ignore[union-attr]
    assert len(ring) == 11 and ring.raw_bytes <= 3.5 * frame_bytes  # 1 s at 10 fps, both ends included
    raw = [t for t, k in ring if k.in_memory]
    assert len(raw) == 3 and ring.encoded == 30 - len([k for k in kept if k.in_memory])  # type: ignore[union-attr]
    assert [_index(k.annotated()) for _, k in ring] == list(range(19, 30))  # raw and decoded alike, in order
    ring.clear()
    again = ring.add(5.0, Picture.of(_image(1)))
    assert len(ring) == 0 + 1 and again is not None and again.in_memory and ring.raw_bytes == frame_bytes


def test_a_buffer_of_no_memory_encodes_every_frame_and_a_roomy_one_none():
    for budget, encoded in ((0.0, 20), (1e9, 0)):
        ring = FrameRing(seconds=1.0, max_frames=100, budget_bytes=budget)
        for i in range(20):
            ring.add(i / 10, Picture.of(_image(i)))
        assert ring.encoded == encoded


def test_the_end_of_a_run_completes_the_clip_being_written(tmp_path):
    recorder = _recorder(tmp_path, post_s=10.0)
    _feed(recorder, 25, 10.0, {20: [_alert()]})
    assert recorder.written == []
    recorder.finish()
    levels, _ = _frames(recorder.written[0])
    assert levels == list(range(10, 25))


def test_a_live_clip_plays_at_the_rate_frames_arrived_not_the_nominal_one(tmp_path):
    recorder = _recorder(tmp_path, fps=30.0, live=True, pre_s=2.0, post_s=1.0)
    _feed(recorder, 40, 8.0, {24: [_alert()]})  # the camera says 30 fps, 8 arrive per second
    levels, fps = _frames(recorder.written[0])
    assert fps == pytest.approx(8.0, abs=0.05)
    assert len(levels) / fps == pytest.approx(3.0, abs=0.25)  # 2 s before + 1 s after, in real time


def test_retention_deletes_old_clips_then_the_oldest_beyond_the_total(tmp_path):
    now = time.time()
    names = [clip_file_name("cam", i, f"2026-01-0{i}T00:00:00Z") for i in range(1, 6)]
    for age_days, name in zip([40, 3, 2, 1, 0], names, strict=True):
        path = tmp_path / name
        path.write_bytes(b"x" * 1000)
        os.utime(path, (now - age_days * 86400, now - age_days * 86400))
    (tmp_path / "notes.mp4").write_bytes(b"x" * 5000)  # not a clip's name: never touched
    removed = prune_clips(tmp_path, max_age_s=30 * 86400, max_total_bytes=2500, now=now)
    assert sorted(p.name for p in removed) == sorted(names[:3])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names[3:], "notes.mp4"])


@pytest.mark.parametrize(
    ("source", "ts", "name"),
    [
        ("cam1", "2026-03-01T12:00:00+00:00", "cam1_7_20260301T120000Z.mp4"),
        (
            "rtsp://user:pw@10.0.0.5:554/live/ch1",
            "2026-03-01T13:00:00+01:00",
            "10.0.0.5-554-live-ch1_7_20260301T120000Z.mp4",
        ),
        ("/videos/shop door.mp4", "2026-03-01T12:00:00", "shop_door_7_20260301T120000Z.mp4"),
        ("0", "2026-03-01T12:00:00Z", "camera0_7_20260301T120000Z.mp4"),
        ("../..", "2026-03-01T12:00:00Z", "source_7_20260301T120000Z.mp4"),
        ("Käse", "2026-03-01T12:00:00Z", "K_se_7_20260301T120000Z.mp4"),
    ],
)
def test_clip_names_use_safe_characters_and_utc(source, ts, name):
    assert clip_file_name(source, 7, ts) == name
    assert "/" not in name and "pw" not in name and not name.startswith(".") and CLIP_NAME.fullmatch(name)


def _tmpfs(tmp_path: Path, size: str) -> Path:
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.decode().strip()[:100]}")
    return mount


def test_a_full_disk_abandons_the_clip_removes_the_partial_and_the_run_goes_on(tmp_path):
    disk = _tmpfs(tmp_path, "6m")
    try:
        reset_faults()
        recorder = ClipRecorder(disk, "cam", fps=25.0, live=False, pre_s=1.0, post_s=20.0)
        rng = np.random.default_rng(0)
        noise = [rng.integers(0, 255, (480, 640, 3), np.uint8) for _ in range(4)]  # incompressible
        for i in range(400):
            recorder.frame(_Item(i / 25, Picture.of(noise[i % 4]), [_alert()] if i == 30 else []))
            recorder.pump()
        assert recorder.failed == 1 and recorder.written == [] and recorder.clip is None
        assert fault_counts().get("clips") == 1
        assert list(disk.iterdir()) == []  # the partial was removed
        small = ClipRecorder(disk, "cam", fps=10.0, live=False, pre_s=0.5, post_s=0.5)
        _feed(small, 20, 10.0, {10: [_alert()]})  # space is free again: the next clip is written
        assert len(small.written) == 1 and small.written[0].stat().st_size > 0
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
        reset_faults()


class _SlowRecorder(ClipRecorder):
    """A recorder whose thread is held until ``go`` is set (a slow disk)."""

    def __init__(self, folder: Path, *, live: bool = True) -> None:
        super().__init__(folder, "cam", fps=10.0, live=live, pre_s=1.0, post_s=1.0)
        self.go = threading.Event()
        self.seen: list[tuple[float, list]] = []

    def frame(self, item: _Item) -> None:
        self.go.wait(10)
        self.seen.append((item.t, list(item.alerts)))
        super().frame(item)


def _result(i: int, alerts: list[int] = (), image: np.ndarray | None = None) -> FrameResult:
    events = [Event("alert", "2026-03-01T12:00:00Z", "cam", i, t, "without_mask", 0.9, [0, 0, 9, 9]) for t in alerts]
    frame = Frame(_image(i) if image is None else image, i, i / 10)
    return FrameResult(frame, FaceDetections.empty(), events=events)


def test_a_live_sink_never_waits_for_a_slow_writer_and_keeps_the_alerts(tmp_path):
    recorder = _SlowRecorder(tmp_path)
    sink = ClipSink(recorder, queue_size=2, close_timeout_s=10.0)
    for i in range(30):
        sink.write(_result(i, [3] if i == 20 else []), _image(i))
    assert sink.frames_dropped >= 27  # the writer is held: 2 frames wait, 1 is taken, the rest were not waited for
    recorder.go.set()
    sink.close()
    sink.close()  # idempotent
    assert any(alerts == [(3, "2026-03-01T12:00:00Z")] for _, alerts in recorder.seen)  # the alert got through
    assert len(recorder.written) == 1


def test_a_file_sink_waits_for_a_slow_writer_and_loses_no_frame(tmp_path):
    recorder = _SlowRecorder(tmp_path, live=False)
    threading.Timer(0.3, recorder.go.set).start()  # a writer that is late, then keeps up
    sink = ClipSink(recorder, queue_size=2, close_timeout_s=10.0)
    for i in range(30):
        sink.write(_result(i, [3] if i == 20 else []), _image(i))
    sink.close()
    assert sink.frames_dropped == 0 and [t for t, _ in recorder.seen] == [i / 10 for i in range(30)]
    levels, _ = _frames(recorder.written[0])
    assert levels == list(range(10, 30))  # 1 s before the alert, and on to the end of the run


def test_a_file_sink_waits_for_a_stuck_writer_only_wait_s(tmp_path):
    recorder = _SlowRecorder(tmp_path, live=False)
    sink = ClipSink(recorder, queue_size=2, wait_s=0.05, close_timeout_s=10.0)
    for i in range(6):
        sink.write(_result(i), _image(i))
    assert sink.frames_dropped >= 3  # 2 wait, 1 is taken, the others were waited for 0.05 s each, then dropped
    recorder.go.set()
    sink.close()


class _CountingRenderer(OverlayRenderer):
    """A renderer that counts the frames it draws (from any thread)."""

    def __init__(self) -> None:
        super().__init__(hud=False)
        self.drawn: list[int] = []

    def draw(self, overlay, image):
        self.drawn.append(_index(image))
        return super().draw(overlay, image)


def test_only_the_frames_a_clip_takes_are_drawn_and_on_the_clip_thread(tmp_path, raw_mb):
    renderer = _CountingRenderer()
    recorder = _recorder(tmp_path, pre_s=1.0, post_s=0.5, raw_buffer_mb=raw_mb)
    with ClipSink(recorder) as sink:
        for i in range(50):
            result = _result(i, [3] if i == 30 else [])
            sink.write_picture(result, Picture(result.frame.image, renderer.plan(result)))
    assert sorted(renderer.drawn) == list(range(20, 36))  # 1 s before the alert at 3.0 s, 0.5 s after; no other
    levels, _ = _frames(recorder.written[0])
    assert levels == list(range(20, 36))


def test_unrendered_frames_are_blurred_when_faces_are(tmp_path):
    rng = np.random.default_rng(1)
    recorder = _recorder(tmp_path, pre_s=0.0, post_s=0.3)
    with ClipSink(recorder, blur=True) as sink:
        for i in range(5):
            image = np.full((120, 160, 3), 128, np.uint8)
            image[20:100, 40:120] = rng.integers(0, 255, (80, 80, 3), np.uint8)  # a detailed "face"
            result = _result(i, [3] if i == 0 else [], image)
            result.faces = FaceDetections(xyxy=[[40, 20, 120, 100]], det_score=[0.9])
            sink.write(result, image)  # not rendered: the sink got the raw frame itself
    cap = cv2.VideoCapture(str(recorder.written[0]))
    ok, frame = cap.read()
    assert ok
    face = frame[30:90, 50:110].astype(np.float32)
    assert face.std() < 25  # the noise (std ~74) is pixelated and blurred away


def test_demo_run_writes_a_clip_around_its_alert(tmp_path):
    """The README's demo with --clips: a clip per alert, pre_s + post_s long at most, bounded by the demo's 5 s."""
    clips = tmp_path / "clips"
    cmd = [sys.executable, "-m", "maskwatch", "run", "--source", "demo", "--no-progress", "--clips", str(clips)]
    proc = subprocess.run([*cmd, "--events", str(tmp_path / "e.jsonl")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    alerts = [line for line in (tmp_path / "e.jsonl").read_text().splitlines() if '"event":"alert"' in line]
    written = sorted(clips.iterdir())
    assert alerts and written and all(CLIP_NAME.fullmatch(p.name) for p in written)
    levels, fps = _frames(written[0])
    demo = cv2.VideoCapture(str(resolve_source("demo")))
    demo_fps, demo_frames = demo.get(cv2.CAP_PROP_FPS), int(demo.get(cv2.CAP_PROP_FRAME_COUNT))
    demo.release()
    assert written[0].name.startswith("demo_") and fps == pytest.approx(demo_fps)
    alert_t = json.loads(alerts[0])["t_s"]
    expected = min(alert_t, 5.0) + min(10.0, demo_frames / demo_fps - alert_t)  # pre_s 5, post_s 10, the demo's end
    assert len(levels) / fps == pytest.approx(expected, abs=2 / fps)


def test_a_clips_path_that_is_a_file_is_one_line_at_start(tmp_path):
    blocker = tmp_path / "clips"
    blocker.write_text("not a folder")
    cmd = [sys.executable, "-m", "maskwatch", "run", "--source", "demo", "--no-progress", "--clips", str(blocker)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "clips" in proc.stderr and "Traceback" not in proc.stderr
