"""Inputs as people have them: EXIF-rotated phone photos, GIFs, and the like."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from maskwatch.capture.images import read_image
from maskwatch.capture.sources import open_source


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
def test_images_are_read_upright(tmp_path: Path, orientation: int):
    path = tmp_path / f"phone_{orientation}.jpg"
    upright = _phone_photo(path, orientation)
    image = read_image(path)
    assert image.shape == upright.shape
    assert np.abs(image.astype(int) - upright.astype(int)).mean() < 3
    source = open_source(str(path))
    frame = source.read()
    source.close()
    image = frame.image if hasattr(frame, "image") else frame[0]
    assert image.shape == upright.shape


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


def test_variable_frame_rate_frames_carry_the_container_time(tmp_path: Path):
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
    assert len(got) == 30
    assert np.allclose(got, truth, atol=0.011)  # not index / average fps (frame 6 is at 0.6 s, not ~0.3 s)


def _frame_result(image: np.ndarray, index: int, t: float):
    from maskwatch.types import FaceDetections, Frame, FrameResult

    return FrameResult(frame=Frame(image=image, index=index, timestamp_s=t), faces=FaceDetections.empty())


def test_video_output_plays_in_the_source_time_and_keeps_every_frame(tmp_path: Path):
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
    assert sorted(set(levels)) == list(range(1, len(times) + 1))  # every input frame appears, in order
    assert levels == sorted(levels)
    assert abs(len(levels) / 10 - 1.5) <= 0.15  # 1.5 s of source time plays as about 1.5 s at 10 fps
    assert levels.index(4) == 6  # the frame at 0.6 s is shown at 0.6 s


def test_a_killed_writer_leaves_no_file_under_the_final_name(tmp_path: Path):
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
    assert not out.exists()  # before: out.mp4 without its index ("moov atom not found")
    assert (tmp_path / ".out.partial.mp4").exists()
    # a finished run: the final name, playable, and no partial file left
    from maskwatch.outputs.sinks import VideoSink

    with VideoSink(out, fps=25) as sink:
        for i in range(5):
            image = np.zeros((120, 160, 3), np.uint8)
            sink.write(_frame_result(image, i, i / 25), image)
    video = cv2.VideoCapture(str(out))
    assert video.read()[0] and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    video.release()
    assert not (tmp_path / ".out.partial.mp4").exists()


def test_av1_is_refused_naming_the_codec(tmp_path: Path):
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
        assert "AV1" in str(exc) and "re-encode" in str(exc) and "no readable frames" not in str(exc)
    else:  # an OpenCV build that decodes AV1 reads it
        assert source.read() is not None
        source.close()


def test_a_folder_of_unreadable_images_is_an_error(tmp_path: Path):
    from maskwatch.errors import SourceError

    folder = tmp_path / "broken"
    folder.mkdir()
    for name in ("a.jpg", "b.png"):
        (folder / name).write_bytes(b"not an image at all")
    with pytest.raises(SourceError, match="none of its 2 images can be read"):
        open_source(str(folder))


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
