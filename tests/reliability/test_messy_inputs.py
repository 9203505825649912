"""Messy inputs as people have them: file names that are not UTF-8, a damaged stretch in a recording, photos
with other names, odd ``--source`` values, a recording served over HTTP, two runs writing one output.

Each case records one row of the reliability table. Command-line cases are ``maskwatch run`` processes forked
from a helper that has already imported maskwatch (see :class:`~tests.reliability.test_bad_input.ForkedCli`).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import write_video
from tests.reliability.test_bad_input import ForkedCli, user_error_problems

AREA = "messy input"
FP32 = ("--precision", "fp32", "--no-progress")
LATIN1 = os.fsdecode(b"caf\xe9")
"""``café`` as a Latin-1 name on a UTF-8 system (Python holds it with a surrogate escape)."""


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    forked = ForkedCli(tmp_path_factory.mktemp("cli"))
    yield forked
    forked.close()


def _jpeg(value: int = 120, size_wh: tuple[int, int] = (80, 60)) -> bytes:
    image = np.full((size_wh[1], size_wh[0], 3), value, np.uint8)
    cv2.circle(image, (size_wh[0] // 2, size_wh[1] // 2), 15, (200, 200, 255), -1)
    return cv2.imencode(".jpg", image)[1].tobytes()


def _frames(path: Path | str) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.isOpened() and cap.read()[0]:
        n += 1
    cap.release()
    return n


def _problems(run, fragments: tuple[str, ...] = ()) -> list[str]:
    problems = [] if run.returncode == 0 else [f"exit {run.returncode}"]
    problems += ["traceback printed"] if "Traceback" in run.stderr else []
    return problems + [f"no {f!r} in the log" for f in fragments if f not in run.stderr]


def _row(record, case: str, expected: str, observed: str, problems: list[str]) -> None:
    if problems:
        observed += "; PROBLEMS: " + ", ".join(problems)
    record(AREA, case, expected, observed, not problems)


def test_latin1_names_are_read_and_written(cli, tmp_path, record):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, value in (("a.jpg", 60), (f"{LATIN1}.jpg", 120), ("z.png", 200)):
        (folder / name).write_bytes(
            _jpeg(value)
            if name.endswith(".jpg")
            else cv2.imencode(".png", np.full((60, 80, 3), value, np.uint8))[1].tobytes()
        )
    out_folder = tmp_path / "annotated"
    runs = {"folder": cli("run", "--source", str(folder), "--output", str(out_folder), *FP32)}
    runs["image"] = cli(
        "run", "--source", str(folder / f"{LATIN1}.jpg"), "--output", str(tmp_path / f"{LATIN1} out.jpg"), *FP32
    )
    clip = write_video(tmp_path / "clip.mp4", frames=8)
    os.rename(clip, tmp_path / f"{LATIN1}.mp4")
    out_video = tmp_path / f"{LATIN1} out.mp4"
    runs["video"] = cli("run", "--source", str(tmp_path / f"{LATIN1}.mp4"), "--output", str(out_video), *FP32)
    written = sorted(os.listdir(os.fsencode(out_folder))) if out_folder.is_dir() else []
    problems = [f"{k}: {p}" for k, r in runs.items() for p in _problems(r)]
    if written != [b"a.jpg", b"caf\xe9.jpg", b"z.png"]:
        problems.append(f"folder output {written}")
    image = (
        cv2.imdecode(np.fromfile(tmp_path / f"{LATIN1} out.jpg", np.uint8), 1)
        if (tmp_path / f"{LATIN1} out.jpg").exists()
        else None
    )
    if image is None or image.shape != (60, 80, 3):
        problems.append("no readable output image")
    frames = _frames(out_video.rename(tmp_path / "renamed.mp4")) if out_video.exists() else 0
    if frames != 8:
        problems.append(f"output video has {frames} of 8 frames")
    observed = ", ".join(f"{k}: exit {r.returncode}" for k, r in runs.items()) + f"; folder wrote {len(written)} of 3"
    expected = "caf\\xe9 as --source (image, video), in a folder and as --output: read and written, exit 0"
    _row(record, "Latin-1 (non-UTF-8) file names", expected, observed, problems)
    assert not problems, [r.stderr[-1500:] for r in runs.values()]


def test_a_damaged_stretch_does_not_end_the_recording(cli, tmp_path, record):
    clip = write_video(tmp_path / "clip.mp4", frames=75, size_wh=(160, 120), fps=25.0)
    data = bytearray(clip.read_bytes())
    at = int(len(data) * 0.3)
    data[at : at + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    decodable = _frames(damaged)  # OpenCV itself stops at the damage when not asked again
    out, dets = tmp_path / "out.mp4", tmp_path / "d.jsonl"
    run = cli("run", "--source", str(damaged), "--output", str(out), "--detections", str(dets), *FP32)
    processed = len(dets.read_text().splitlines()) if dets.exists() else 0
    report = json.loads((tmp_path / "out.report.json").read_text())["summary"] if run.returncode == 0 else {}
    reason = report.get("partial_reason") or ""
    problems = _problems(run, ("frames lost to damage",))
    if processed < 50:
        problems.append(f"only {processed} of 75 frames processed")
    if "frames lost to damage" not in reason:
        problems.append(f"report reason {reason!r}")
    observed = f"{processed} of 75 frames processed (a plain read stops at {decodable}); report: {reason!r}"
    expected = "3 KB of garbage at 30 % of a 75-frame clip: the frames after it processed, the loss in the report"
    _row(record, "damaged stretch in a recording", expected, observed, problems)
    assert not problems, run.stderr[-2000:]


PHOTO_NAMES = ["photo.jfif", "photo", "photo.jpeg.download", "photo.jp2"]


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_photos_are_told_by_content_not_name(cli, tmp_path, record, name):
    image = np.full((60, 80, 3), 90, np.uint8)
    cv2.circle(image, (40, 30), 15, (200, 200, 255), -1)
    (tmp_path / name).write_bytes(cv2.imencode(".jp2" if name.endswith(".jp2") else ".jpg", image)[1].tobytes())
    out = tmp_path / "out.jpg"
    run = cli("run", "--source", str(tmp_path / name), "--output", str(out), *FP32)
    written = cv2.imread(str(out)) if out.exists() else None
    problems = _problems(run)
    if written is None or written.shape != image.shape:
        problems.append("no 80x60 output image")
    observed = f"exit {run.returncode}, output {'80x60 image' if written is not None else 'none'}"
    _row(record, f"a photo named {name!r}", "read as an image, annotated image written, exit 0", observed, problems)
    assert not problems, run.stderr[-2000:]


def test_a_folder_names_the_formats_it_cannot_read(cli, tmp_path, record):
    folder = tmp_path / "phone"
    folder.mkdir()
    (folder / "a.jfif").write_bytes(_jpeg(60))
    (folder / "b").write_bytes(_jpeg(120))
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)  # the start of an iPhone photo
    (folder / "c.heic").write_bytes(heic)
    (folder / "notes.txt").write_text("not an image\n")
    out = tmp_path / "annotated"
    run = cli("run", "--source", str(folder), "--output", str(out), *FP32)
    written = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    warned = [line for line in run.stderr.splitlines() if "WARNING" in line and "c.heic" in line and "HEIC" in line]
    problems = _problems(run)
    if written != ["a.jfif", "b"]:
        problems.append(f"written {written}")
    if not warned:
        problems.append("no warning naming c.heic as HEIC")
    warning = re.sub(r"^.*?WARNING\s+", "", warned[0]).replace(str(tmp_path), "<tmp>") if warned else ""
    observed = f"exit {run.returncode}, written {written}; {warning!r}"
    expected = "JPEGs named .jfif / without suffix annotated; the HEIC photo skipped with a warning naming HEIC"
    _row(record, "folder of phone photos (.jfif, no suffix, HEIC)", expected, observed, problems)
    assert not problems, run.stderr[-2000:]


def test_matroska_with_a_longer_audio_track_is_whole(tmp_path, record):
    import subprocess

    from maskwatch.capture.sources import open_source

    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    clip = tmp_path / "long_audio.mkv"
    video = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=1"]
    audio = ["-f", "lavfi", "-i", "sine=duration=3"]
    codecs = ["-c:v", "mpeg4", "-c:a", "pcm_s16le"]
    made = subprocess.run([ffmpeg, "-v", "error", "-y", *video, *audio, *codecs, str(clip)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"ffmpeg cannot make the clip: {made.stderr[-200:]!r}")
    source = open_source(str(clip))
    frames = 0
    while source.read() is not None:
        frames += 1
    source.close()
    ok = frames == 10 and not source.truncated and source.frames_lost == 0
    observed = f"{frames} of 10 frames (header: {source.frame_count}); truncated {source.truncated}"
    record(AREA, "Matroska, 1 s of video and 3 s of audio", "every frame read, not reported truncated", observed, ok)
    assert ok


def _tiff_rotated(path: Path) -> None:
    from PIL import Image

    stored = np.zeros((60, 100, 3), np.uint8)
    stored[:, :30] = 255
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, exif=exif)


def test_unclear_sources_get_one_clear_line(cli, tmp_path, record):
    _tiff_rotated(tmp_path / "scan.tif")
    (tmp_path / "clip.mp4 ").write_bytes(write_video(tmp_path / "c.mp4", frames=4).read_bytes())
    out = tmp_path / "out.jpg"
    rotated = cli("run", "--source", str(tmp_path / "scan.tif"), "--output", str(out), *FP32)
    shape = cv2.imread(str(out)).shape if out.exists() else None
    cases = {
        "TIFF, EXIF orientation 6": (rotated, [] if shape == (100, 60, 3) else [f"output {shape}"]),
        "--source 2147483648": (cli("run", "--source", "2147483648", *FP32), ("out of range",)),
        "--source ²": (cli("run", "--source", "²", *FP32), ("source not found",)),
        "name with a trailing space, given with it": (cli("run", "--source", str(tmp_path / "clip.mp4 "), *FP32), []),
        "the same name given without the space": (
            cli("run", "--source", str(tmp_path / "clip.mp4"), *FP32),
            ("trailing space",),
        ),
    }
    problems, observed = [], []
    for case, (run, want) in cases.items():
        # a tuple: a user error, one line naming it; a list: a run that works
        found = user_error_problems(run, want) if isinstance(want, tuple) else _problems(run) + want
        problems += [f"{case}: {p}" for p in found]
        observed.append(f"{case}: exit {run.returncode}" + (f" {run.message(tmp_path)!r}" if run.returncode else ""))
    expected = "rotated TIFF read upright; a bad index or name: one ERROR line saying why, exit 1, no traceback"
    _row(record, "unclear sources (rotated TIFF, odd indexes, spaces)", expected, "; ".join(observed), problems)
    assert not problems, [r.stderr[-800:] for r, _ in cases.values()]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_a_recording_over_http_finishes(cli, tmp_path, record):
    write_video(tmp_path / "rec.mp4", frames=12)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/rec.mp4"
        dets = tmp_path / "d.jsonl"
        run = cli("run", "--source", url, "--detections", str(dets), *FP32, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    frames = len(dets.read_text().splitlines()) if dets.exists() else 0
    problems = _problems(run) + ([] if frames == 12 else [f"{frames} frames processed"])
    observed = f"exit {run.returncode} after {run.wall_s:.1f} s, {frames} of 12 frames"
    _row(record, "http:// URL of a 12-frame recording", "read once as a file, then exit 0", observed, problems)
    assert not problems, run.stderr[-2000:]


def test_two_runs_writing_one_output_keep_both(tmp_path, record):
    from maskwatch.outputs.sinks import VideoSink
    from maskwatch.types import FaceDetections, Frame, FrameResult

    out = tmp_path / "out.mp4"
    first, second = VideoSink(out, fps=10), VideoSink(out, fps=10)
    image = np.zeros((120, 160, 3), np.uint8)
    for i in range(6):
        for sink, n in ((first, 4), (second, 6)):
            if i < n:
                sink.write(FrameResult(Frame(image, i, i / 10), FaceDetections.empty()), image)
    first.close()
    second.close()
    other = tmp_path / "out (2).mp4"
    got = (_frames(out), _frames(other) if other.exists() else 0)
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    ok = got == (4, 6) and first.partial_path != second.partial_path and not left
    observed = f"out.mp4 {got[0]} frames, 'out (2).mp4' {got[1]} frames; partial files left: {left}"
    expected = "each run its own partial file; the second to finish goes to 'out (2).mp4' with a warning"
    record(AREA, "two runs writing one --output at once", expected, observed, ok)
    assert ok


def test_a_run_with_stderr_closed_still_succeeds(tmp_path, record):
    import subprocess
    import sys

    from tests.helpers import ROOT

    clip = write_video(tmp_path / "clip.mp4", frames=4)
    command = [sys.executable, "-m", "maskwatch", "run", "--source", str(clip), *FP32]
    run = subprocess.run(["bash", "-c", 'exec "$@" 2>&-', "_", *command], cwd=ROOT, stdout=subprocess.PIPE,
                         text=True, timeout=120)  # fmt: skip
    said = [line for line in run.stdout.splitlines() if "done:" in line]
    ok = run.returncode == 0 and bool(said)
    observed = f"exit {run.returncode}; on stdout: {len(run.stdout.splitlines())} log lines, 'done' line {bool(said)}"
    record(AREA, "maskwatch run with stderr closed (2>&-)", "exit 0, the log on stdout", observed, ok)
    assert ok, run.stdout[-1000:]


def test_a_killed_runs_partial_file_is_removed_at_the_next_start(tmp_path, record):
    import subprocess
    import sys

    from loguru import logger

    from maskwatch.outputs.sinks import VideoSink
    from maskwatch.types import FaceDetections, Frame, FrameResult

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.partial-{int(gone.stdout)}-a1b2c3.mp4"  # a process that has ended
    alive = tmp_path / f".out.partial-{os.getppid()}-d4e5f6.mp4"  # a running process: maybe still writing
    other = tmp_path / f".other.partial-{int(gone.stdout)}-a1b2c3.mp4"  # another output's
    for path in (stale, alive, other):
        path.write_bytes(b"\x00" * 100)
    said: list[str] = []
    handle = logger.add(lambda m: said.append(str(m)), level="INFO")
    try:
        image = np.zeros((120, 160, 3), np.uint8)
        with VideoSink(tmp_path / "out.mp4", fps=10) as sink:
            sink.write(FrameResult(Frame(image, 0, 0.0), FaceDetections.empty()), image)
    finally:
        logger.remove(handle)
    kept = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    logged = any("removed" in line and stale.name in line for line in said)
    ok = not stale.exists() and alive.exists() and other.exists() and logged
    observed = f"hidden files left: {kept}; removal logged: {logged}"
    expected = "the dead run's partial file of out.mp4 removed and logged; a live run's and another output's kept"
    record(AREA, "partial file of a SIGKILLed run, at the next start", expected, observed, ok)
    assert ok


@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_a_detection_size_above_the_trained_one_is_refused(cli, tmp_path, record, engine):
    pytest.importorskip("torch") if engine == "torch" else None
    clip = write_video(tmp_path / "clip.mp4", frames=4)
    config = tmp_path / "big.yaml"
    config.write_text("detector:\n  input_size: 960\n")
    out = tmp_path / "out.mp4"
    run = cli("run", "--source", str(clip), "--output", str(out), "--config", str(config), "--engine", engine, *FP32)
    problems = user_error_problems(run, ("input_size 960", "640"))
    problems += ["output written"] if out.exists() else []
    observed = f"exit {run.returncode}: {run.message(tmp_path)!r}"
    _row(record, f"detector.input_size 960 ({engine}; trained at 640)", "one ERROR line, exit 1, nothing written",
         observed, problems)  # fmt: skip
    assert not problems, run.stderr[-2000:]


@pytest.mark.parametrize("box", [(18, 6, 46, 40), (18, 4, 46, 44), (22, 12, 42, 38)])
def test_on_a_tiny_frame_the_label_leaves_the_face_visible(box, record):
    from maskwatch.outputs.render import OverlayRenderer
    from maskwatch.types import FaceDetections, Frame, FrameResult

    image = np.full((48, 64, 3), 40, np.uint8)
    faces = FaceDetections(xyxy=np.array([box], np.float32), det_score=np.array([0.9]), class_id=np.array([1]),
                           class_prob=np.array([[0.1, 0.85, 0.05]]), track_id=np.array([3]))  # fmt: skip
    out = OverlayRenderer(hud=False).annotate(FrameResult(Frame(image, 0, 0.0), faces))
    x1, y1, x2, y2 = box
    inside = out[y1 + 3 : y2 - 2, x1 + 3 : x2 - 2]  # within the box's 2-px lines
    covered = float((np.abs(inside.astype(int) - 40).sum(axis=2) > 30).mean())
    ok = covered <= 0.12
    record(AREA, f"label of a face {x2 - x1}x{y2 - y1} at y {y1}-{y2} in a 64x48 frame",
           "the label outside the box where there is room, covering at most 12 % of the face",
           f"{covered:.0%} of the face covered", ok)  # fmt: skip
    assert ok, covered


def test_an_odd_frame_size_loses_no_pixel(tmp_path, record):
    from maskwatch.outputs.sinks import VideoSink
    from maskwatch.types import FaceDetections, Frame, FrameResult

    image = np.full((479, 641, 3), 60, np.uint8)
    image[:, -8:] = (0, 0, 255)  # a red band along the right edge
    image[-8:, :] = (255, 0, 0)  # a blue band along the bottom
    out = tmp_path / "out.mp4"
    with VideoSink(out, fps=10) as sink:
        for i in range(3):
            sink.write(FrameResult(Frame(image, i, i / 10), FaceDetections.empty()), image)
    cap = cv2.VideoCapture(str(out))
    ok_read, frame = cap.read()
    cap.release()
    h, w = frame.shape[:2] if ok_read else (0, 0)
    right = frame[100:300, 636:641].mean(axis=(0, 1)) if w >= 641 else np.zeros(3)
    bottom = frame[474:479, 100:500].mean(axis=(0, 1)) if h >= 479 else np.zeros(3)
    ok = w >= 641 and h >= 479 and w - 641 <= 1 and h - 479 <= 1 and right[2] > 150 and bottom[0] > 150
    kept = {"right edge": right[2] > 150, "bottom edge": bottom[0] > 150}
    observed = f"written {w}x{h}; " + ", ".join(f"{k} {'kept' if v else 'lost'}" for k, v in kept.items())
    record(AREA, "641x479 frames to --output video", "every pixel kept (encoders need even sizes: one edge column/row "
           "repeated, 642x480)", observed, ok)  # fmt: skip
    assert ok, observed


def test_non_square_pixels_are_shown_at_their_display_aspect(tmp_path, record):
    import subprocess

    from maskwatch.capture.sources import open_source

    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    clip = tmp_path / "dv.mp4"
    source = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=0.3", "-vf", "setsar=4/3"]
    made = subprocess.run([ffmpeg, "-v", "error", "-y", *source, "-c:v", "mpeg4", str(clip)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("ffmpeg cannot make the clip")
    source = open_source(str(clip))
    raw = source.read()
    source.close()
    shape = raw.image.shape[:2] if raw is not None else None
    ok = shape == (120, 214)  # 160 x 4/3 = 213.3, even: the 16:9 picture a player shows
    record(AREA, "anamorphic clip (160x120, sample aspect 4:3)", "frames at the display aspect, square pixels (16:9)",
           f"frames {shape[1]}x{shape[0]}" if shape else "no frame", ok)  # fmt: skip
    assert ok, shape


def test_a_motion_jpeg_stream_file_stays_a_video(tmp_path, record):
    from maskwatch.capture.sources import VideoFileSource, open_source

    clip = tmp_path / "door.mjpeg"  # JPEG frames one after another, as saved from an IP camera
    clip.write_bytes(b"".join(_jpeg(40 * i) for i in range(3)))
    source = open_source(str(clip))
    frames = 0
    while source.read() is not None:
        frames += 1
    source.close()
    ok = isinstance(source, VideoFileSource) and frames == 3
    observed = f"opened as {type(source).__name__}, {frames} frames"
    record(AREA, "Motion-JPEG stream saved as .mjpeg (starts like a JPEG)", "a 3-frame video", observed, ok)
    assert ok
