import queue
import threading
import time

import cv2
import numpy as np
import pytest

from maskwatch.capture.base import RawFrame, Source
from maskwatch.capture.producer import END, Producer
from maskwatch.capture.sources import ImageFilesSource, open_source, to_bgr8
from maskwatch.errors import SourceError
from maskwatch.media import scrub_url
from tests.conftest import write_video


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:s3cret@10.0.0.5:554/stream", "rtsp://***@10.0.0.5:554/stream"),
        ("camera rtsp://u@host/x and http://a:b@h", "camera rtsp://***@host/x and http://***@h"),
        ("rtsp://10.0.0.5/stream", "rtsp://10.0.0.5/stream"),
        ("/videos/a@b.mp4", "/videos/a@b.mp4"),
    ],
)
def test_scrub_url(url, expected):
    assert scrub_url(url) == expected


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 5), np.uint8),
        np.zeros((4, 5, 4), np.uint8),
        np.full((4, 5, 3), 65535, np.uint16),
        np.zeros((4, 5, 1), np.uint8),
    ],
)
def test_to_bgr8(image):
    out = to_bgr8(image)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8


def test_open_source_errors(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        open_source(str(tmp_path / "missing.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path / "empty"))
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video")
    with pytest.raises(SourceError, match="notes.mp4"):
        open_source(str(fake))
    bad_image = tmp_path / "x.jpg"
    bad_image.write_bytes(b"\x00\x01")
    with pytest.raises(SourceError, match="x.jpg"):
        open_source(str(bad_image))


def test_image_folder_reads_in_order_and_skips_unreadable(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((6, 8), i * 50, np.uint8))
    (tmp_path / "1b.jpg").write_bytes(b"garbage")
    src = open_source(str(tmp_path))
    assert isinstance(src, ImageFilesSource)
    names = []
    while (item := src.read()) is not None:
        image, name = item.image, item.name
        assert image.shape == (6, 8, 3)
        names.append(name)
    assert names == ["0.png", "1.png", "2.png"]
    assert [p.name for p in src.skipped] == ["1b.jpg"]


def _drain(frames: queue.Queue, delay_s: float = 0.0) -> list:
    out = []
    while True:
        item = frames.get(timeout=5)
        if item is END:
            return out
        out.append(item)
        time.sleep(delay_s)


def test_file_producer_never_drops(tmp_path):
    src = open_source(str(write_video(tmp_path / "v.mp4", frames=30)))
    frames: queue.Queue = queue.Queue(maxsize=2)
    producer = Producer(src, frames, threading.Event(), drop_oldest=False)
    producer.start()
    got = _drain(frames, delay_s=0.005)  # a consumer slower than decoding
    producer.join(timeout=5)
    assert [f.index for f in got] == list(range(30))
    assert producer.stats.dropped == 0 and producer.error is None


class FastLiveSource(Source):
    """A fake camera that yields a frame every ``period_s`` until ``n`` frames, then ends."""

    is_live = True
    finite = False
    fps = 200.0
    frame_count = None
    name = "fake-cam"

    def __init__(self, n: int = 200, period_s: float = 0.002, fail_after: int | None = None) -> None:
        self.n, self.period_s, self.fail_after, self.i = n, period_s, fail_after, 0
        self.on_end = None

    def read(self):
        if self.fail_after is not None and self.i >= self.fail_after:
            raise OSError("camera unplugged")
        if self.i >= self.n:
            if self.on_end is not None:
                self.on_end()
            return None
        time.sleep(self.period_s)
        self.i += 1
        return RawFrame(np.zeros((4, 4, 3), np.uint8), self.name)

    def close(self) -> None:
        pass


def test_live_producer_drops_oldest_when_consumer_is_slow():
    frames: queue.Queue = queue.Queue(maxsize=2)
    producer = Producer(FastLiveSource(n=200), frames, threading.Event(), drop_oldest=True, read_timeout_s=0.05)
    producer.start()
    got = _drain(frames, delay_s=0.02)  # consumer ~10x slower than the camera
    producer.join(timeout=5)
    assert producer.stats.dropped > 100
    assert len(got) + producer.stats.dropped == 200
    indices = [f.index for f in got]
    assert indices == sorted(indices)  # still in order, only older frames skipped


def test_producer_error_reaches_consumer():
    frames: queue.Queue = queue.Queue(maxsize=2)
    producer = Producer(FastLiveSource(fail_after=3), frames, threading.Event(), drop_oldest=True)
    producer.start()
    _drain(frames)
    producer.join(timeout=5)
    assert isinstance(producer.error, OSError)


def test_producer_stops_when_blocked_on_full_queue(tmp_path):
    src = open_source(str(write_video(tmp_path / "v.mp4", frames=30)))
    frames: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    producer = Producer(src, frames, stop, drop_oldest=False, poll_s=0.02)
    producer.start()
    time.sleep(0.2)  # nobody consumes: the producer is blocked in put
    stop.set()
    producer.join(timeout=2)
    assert not producer.is_alive()


def test_live_source_that_stalls_ends_with_error():
    frames: queue.Queue = queue.Queue(maxsize=4)  # room for all 3: on a loaded machine the drain may start late
    producer = Producer(FastLiveSource(n=3), frames, threading.Event(), drop_oldest=True, read_timeout_s=0.2)
    producer.start()
    assert len(_drain(frames)) == 3
    producer.join(timeout=5)
    assert isinstance(producer.error, SourceError) and "no frame for" in str(producer.error)


def test_realtime_file_plays_at_its_fps(tmp_path):
    src = open_source(str(write_video(tmp_path / "v.mp4", frames=10, fps=50.0)), realtime=True)
    assert src.is_live and src.finite
    start = time.monotonic()
    n = 0
    while src.read() is not None:
        n += 1
    assert n == 10 and time.monotonic() - start >= 9 / 50.0


def test_a_video_that_ends_before_its_header_says_is_marked_truncated(tmp_path):
    full = write_video(tmp_path / "full.avi", frames=20, fps=100.0, fourcc="MJPG")
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    for path, truncated in ((full, False), (cut, True)):
        for realtime in (False, True):
            src = open_source(str(path), realtime=realtime)
            assert src.truncated is False  # not known before the end
            n = 0
            while src.read() is not None:
                n += 1
            src.close()
            assert src.frame_count == 20 and (n < 19) is truncated and src.truncated is truncated, (path, n)
