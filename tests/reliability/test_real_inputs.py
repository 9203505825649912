"""Inputs as people have them: EXIF-rotated phone photos, variable frame rates, killed writers, AV1, GIFs,
folders of broken images, close faces boxed twice, 4K and tiny frames. Each case records a reliability-table row."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from maskwatch.capture.images import read_image
from maskwatch.capture.sources import open_source

AREA = "real inputs"


def _phone_photo(path: Path, orientation: int) -> np.ndarray:
    """A landscape-stored JPEG whose EXIF says how to turn it; returns the upright RGB->BGR pixels a viewer shows."""
    stored = np.zeros((60, 100, 3), np.uint8)
    stored[:, :30] = (255, 255, 255)  # a white band on the stored image's left
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, quality=95)
    from PIL import ImageOps

    return cv2.cvtColor(np.asarray(ImageOps.exif_transpose(Image.open(path))), cv2.COLOR_RGB2BGR)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_images_are_read_upright(tmp_path: Path, orientation: int, record):
    path = tmp_path / f"phone_{orientation}.jpg"
    upright = _phone_photo(path, orientation)
    image = read_image(path)
    source = open_source(str(path))
    frame = source.read()
    source.close()
    error = float(np.abs(image.astype(int) - upright.astype(int)).mean()) if image.shape == upright.shape else None
    ok = image.shape == upright.shape == frame.image.shape and error is not None and error < 3
    observed = f"read as {frame.image.shape[1]}x{frame.image.shape[0]} (upright {upright.shape[1]}x{upright.shape[0]})"
    record(AREA, f"JPEG with EXIF Orientation {orientation}", "read as a viewer shows it (run, eval, training)",
           observed, ok)  # fmt: skip
    assert ok


def test_sixteen_bit_and_gray_images_still_read(tmp_path: Path):
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((20, 30), 40000, np.uint16))
    cv2.imwrite(str(tmp_path / "gray.png"), np.full((20, 30), 7, np.uint8))
    deep, gray = read_image(tmp_path / "deep.png"), read_image(tmp_path / "gray.png")
    assert deep.shape == gray.shape == (20, 30, 3) and deep.dtype == np.uint8
    assert int(deep[0, 0, 0]) == 40000 >> 8 and int(gray[0, 0, 0]) == 7
    assert read_image(tmp_path / "missing.png") is None


def _ffmpeg() -> str:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    return imageio_ffmpeg.get_ffmpeg_exe()


def _vfr_clip(path: Path) -> list[float]:
    """30 frames: 10 at 0.1 s intervals, then 20 at 0.02 s (a phone's variable frame rate); returns their times."""
    import subprocess

    expr = "if(lt(N,10),N*0.1/TB,(1+(N-10)*0.02)/TB)"
    cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
           "testsrc=size=160x120:rate=50", "-frames:v", "30", "-vf", f"setpts='{expr}'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=60)
    return [i * 0.1 if i < 10 else 1 + (i - 10) * 0.02 for i in range(30)]


def test_variable_frame_rate_frames_carry_the_container_time(tmp_path: Path, record):
    import queue
    import threading

    from maskwatch.capture.producer import END, Producer

    truth = _vfr_clip(tmp_path / "vfr.mp4")
    source = open_source(str(tmp_path / "vfr.mp4"))
    frames: queue.Queue = queue.Queue(maxsize=64)
    producer = Producer(source, frames, threading.Event(), drop_oldest=False)
    producer.start()
    got = []
    while (item := frames.get(timeout=10)) is not END:
        got.append(item.timestamp_s)
    producer.join(5)
    source.close()
    ok = len(got) == 30 and np.allclose(got, truth, atol=0.011)  # not index / average fps (~0.3 s for frame 6)
    observed = f"{len(got)} frames, frame 6 at {got[6]:.2f} s (true 0.60 s), frame 20 at {got[20]:.2f} s (true 1.20 s)"
    record(AREA, "variable frame rate video (10 frames at 10 fps, 20 at 50 fps)", "frame times from the container",
           observed, ok)  # fmt: skip
    assert ok


def _frame_result(image: np.ndarray, index: int, t: float):
    from maskwatch.types import FaceDetections, Frame, FrameResult

    return FrameResult(frame=Frame(image=image, index=index, timestamp_s=t), faces=FaceDetections.empty())


def test_video_output_plays_in_the_source_time_and_keeps_every_frame(tmp_path: Path, record):
    from maskwatch.outputs.sinks import VideoSink

    times = [0.0, 0.1, 0.2, 0.6, 0.62, 0.64, 0.66, 1.5]  # slow, a gap, a fast burst, a gap
    out = tmp_path / "out.avi"
    with VideoSink(out, fps=10, fourcc="MJPG", follow_timestamps=True) as sink:
        for i, t in enumerate(times):
            sink.write(
                _frame_result(np.full((48, 64, 3), 20 * (i + 1), np.uint8), i, t),
                np.full((48, 64, 3), 20 * (i + 1), np.uint8),
            )
    video = cv2.VideoCapture(str(out))
    levels = []
    while True:
        ok, image = video.read()
        if not ok:
            break
        levels.append(int(round(image.mean() / 20)))
    video.release()
    every = sorted(set(levels)) == list(range(1, len(times) + 1)) and levels == sorted(levels)
    ok = every and abs(len(levels) / 10 - 1.5) <= 0.15 and levels.index(4) == 6  # frame at 0.6 s shown at 0.6 s
    observed = f"{len(levels)} output frames at 10 fps for 1.5 s of source time; every input frame shown: {every}"
    record(AREA, "annotated output of a variable frame rate input", "plays in the source's time, every frame kept",
           observed, ok)  # fmt: skip
    assert ok


def test_a_killed_writer_leaves_no_file_under_the_final_name(tmp_path: Path, record):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out.mp4"
    script = f"""
import numpy as np, time
from maskwatch.outputs.sinks import VideoSink
from maskwatch.types import FaceDetections, Frame, FrameResult
from pathlib import Path
sink = VideoSink(Path({str(out)!r}), fps=25)
image = np.zeros((120, 160, 3), np.uint8)
for i in range(100000):
    sink.write(FrameResult(Frame(image, i, i / 25), FaceDetections.empty()), image)
    if i == 20:
        print("writing", flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    left = [p.name for p in tmp_path.glob(".out.partial-*.mp4")]
    killed_ok = not out.exists() and len(left) == 1  # before: out.mp4 without its index
    record(AREA, "--output video, writer killed with SIGKILL mid-run", "no file under the final name (partial beside)",
           f"out.mp4 exists: {out.exists()}, partial files: {left}", killed_ok)  # fmt: skip
    assert killed_ok
    # a finished run: the final name, playable, and no partial file left
    from maskwatch.outputs.sinks import VideoSink

    with VideoSink(out, fps=25) as sink:
        for i in range(5):
            image = np.zeros((120, 160, 3), np.uint8)
            sink.write(_frame_result(image, i, i / 25), image)
    video = cv2.VideoCapture(str(out))
    assert video.read()[0] and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    video.release()
    assert not list(tmp_path.glob(".out.partial*"))  # the killed run's partial file was cleaned up too


def test_av1_is_refused_naming_the_codec(tmp_path: Path, record):
    import subprocess

    from maskwatch.errors import SourceError

    path = tmp_path / "clip.mp4"
    cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10",
           "-t", "0.5", "-c:v", "libaom-av1", "-cpu-used", "8", str(path)]  # fmt: skip
    if subprocess.run(cmd, timeout=120).returncode != 0:
        pytest.skip("this ffmpeg cannot encode AV1")
    try:
        source = open_source(str(path))
    except SourceError as exc:
        ok, observed = "AV1" in str(exc) and "re-encode" in str(exc) and "no readable frames" not in str(exc), str(exc)
    else:  # an OpenCV build that decodes AV1 reads it
        ok, observed = source.read() is not None, "decoded"
        source.close()
    record(AREA, "AV1 video", "decoded, or refused naming the codec and what to do", observed, ok)
    assert ok


def test_a_folder_of_unreadable_images_is_an_error(tmp_path: Path, record):
    from maskwatch.errors import SourceError

    folder = tmp_path / "broken"
    folder.mkdir()
    for name in ("a.jpg", "b.png"):
        (folder / name).write_bytes(b"not an image at all")
    with pytest.raises(SourceError, match="none of its 2 images can be read") as caught:
        open_source(str(folder))
    record(AREA, "folder whose images are all unreadable", "one error line, exit 1, no outputs", str(caught.value))


def test_gif_with_one_frame_is_an_image_and_an_animation_a_video(tmp_path: Path):
    from maskwatch.capture.sources import ImageFilesSource, VideoFileSource

    still = Image.fromarray(np.full((40, 60, 3), 100, np.uint8))
    still.save(tmp_path / "still.gif")
    frames = [Image.fromarray(np.full((40, 60, 3), 40 * i, np.uint8)) for i in range(4)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    a, b = open_source(str(tmp_path / "still.gif")), open_source(str(tmp_path / "anim.gif"))
    assert isinstance(a, ImageFilesSource) and isinstance(b, VideoFileSource) and b.frame_count == 4
    a.close()
    b.close()


def test_an_unreadable_folder_on_the_command_line_writes_nothing(tmp_path: Path, record):
    from tests.helpers import maskwatch

    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out, detections = tmp_path / "annotated", tmp_path / "det.jsonl"
    run = maskwatch("run", "--source", str(folder), "--output", str(out), "--detections", str(detections))
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    ok = run.returncode == 1 and len(errors) == 1 and not out.exists() and not detections.exists()
    observed = (
        f"exit {run.returncode}, {len(errors)} ERROR line(s), outputs written: {out.exists() or detections.exists()}"
    )
    record(AREA, "maskwatch run on a folder of unreadable images", "exit 1, one ERROR line, no outputs", observed, ok)
    assert ok, run.stderr[-2000:]


class _NestedDetector:
    """Finds a close face and, inside it, its chin and beard again (as the shipped detector did on close faces)."""

    score_threshold = 0.5
    precision = "fp32"

    def detect(self, image):
        from maskwatch.types import FaceDetections

        return FaceDetections(xyxy=[[60, 20, 260, 300], [110, 180, 230, 295]], det_score=[0.97, 0.72])

    def detect_batch(self, images):
        return [self.detect(i) for i in images]


class _Classifier:
    precision = "fp32"

    def classify(self, crops):
        return np.tile(np.array([[0.1, 0.8, 0.1]], np.float32), (len(crops), 1))


def test_a_close_face_is_boxed_once(record):
    from maskwatch.monitor.pipeline import FacePipeline
    from maskwatch.types import Frame

    frame = Frame(image=np.zeros((320, 320, 3), np.uint8), index=0, timestamp_s=0.0)
    plain = FacePipeline(_NestedDetector(), _Classifier(), nested_overlap=0.0)(frame)
    deduped = FacePipeline(_NestedDetector(), _Classifier(), nested_overlap=0.6)(frame)
    ok = len(plain.faces) == 2 and len(deduped.faces) == 1 and float(deduped.faces.det_score[0]) == np.float32(0.97)
    observed = f"boxes: {len(plain.faces)} with plain IoU NMS, {len(deduped.faces)} with nested-box suppression"
    record(AREA, "close face with its chin boxed again inside", "one box per face", observed, ok)
    assert ok


@pytest.mark.parametrize(("h", "w"), [(2160, 3840), (48, 64)])
def test_overlay_follows_the_frame_size(h: int, w: int, record):
    from maskwatch.outputs.render import OverlayRenderer
    from maskwatch.types import FaceDetections, Frame, FrameResult

    image = np.full((h, w, 3), 60, np.uint8)
    faces = FaceDetections(xyxy=[[w / 3, h / 3, 2 * w / 3, h - 2]], det_score=[0.9], class_id=[1],
                           class_prob=[[0.1, 0.8, 0.1]])  # fmt: skip
    result = FrameResult(frame=Frame(image=image, index=0, timestamp_s=0.0), faces=faces)
    thickness, font = OverlayRenderer().style_for((w, h))
    hud = OverlayRenderer(hud=True).annotate(result, fps=25.0)
    rows = int(np.any(hud != OverlayRenderer(hud=False).annotate(result, fps=25.0), axis=(1, 2)).sum())
    ok = rows <= 0.12 * h + 1 and (h < 1000 or (thickness >= 8 and font >= 2.0))
    observed = f"lines {thickness} px, font scale {font:.2f}, HUD strip {rows} of {h} rows"
    record(AREA, f"overlay on a {w}x{h} frame", "readable lines and labels; the HUD a small strip", observed, ok)
    assert ok


@pytest.mark.slow
def test_a_close_face_gets_one_box_at_any_jpeg_quality(record):
    """The shipped detector on four faces of the demo clip, each cut out and enlarged to fill a 400 px photo, saved
    at eleven JPEG qualities: one box per photo, with the zoomed-out pass for close faces (without it the same
    photos get one, two or three boxes depending on the quality)."""
    from maskwatch.config import config_from_dict
    from maskwatch.demo import demo_folder, demo_path
    from maskwatch.wiring import build_pipeline

    truth: dict[int, list[tuple[float, ...]]] = {}
    for line in (demo_folder() / "gt" / "gt.txt").read_text().splitlines():
        f = line.split(",")
        if float(f[4]) >= 25:  # faces big enough to enlarge
            truth.setdefault(int(f[0]) - 1, []).append(tuple(map(float, f[2:6])))
    capture, frames = cv2.VideoCapture(str(demo_path())), []
    while (got := capture.read())[0]:
        frames.append(got[1])
    photos = []
    for index in (30, 70):
        for x, y, w, h in truth[index][:2]:
            cx, cy, side = x + w / 2, y + h / 2, max(w, h) * 1.3
            crop = frames[index][
                int(max(cy - side / 2, 0)) : int(cy + side / 2), int(max(cx - side / 2, 0)) : int(cx + side / 2)
            ]
            photos.append(cv2.resize(crop, (400, 400), interpolation=cv2.INTER_CUBIC))
    qualities = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)
    counts = {}
    for trigger in (0.0, config_from_dict({}).detector.closeup_trigger):
        pipeline = build_pipeline(
            config_from_dict({"runtime": {"precision": "fp32"}, "detector": {"closeup_trigger": trigger}})
        )
        counts[trigger] = [
            len(pipeline.detect([cv2.imdecode(cv2.imencode(".jpg", p, [cv2.IMWRITE_JPEG_QUALITY, q])[1], 1)])[0])
            for p in photos
            for q in qualities
        ]
    without, with_pass = counts[0.0], counts[max(counts)]
    ok = len(photos) == 4 and all(n == 1 for n in with_pass)
    observed = (f"{len(photos)} photos x {len(qualities)} qualities: one box in {with_pass.count(1)} of "
                f"{len(with_pass)} (without the zoomed-out pass: {without.count(1)} of {len(without)})")  # fmt: skip
    record(AREA, "a close face saved at JPEG qualities 10-100", "one box at every quality", observed, ok)
    assert ok, observed
