"""BackgroundSink: the video's encoding on its own thread, with every frame written once, in order, and errors kept."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from maskwatch.errors import OutputError
from maskwatch.outputs.background import BackgroundSink
from maskwatch.outputs.sinks import VideoSink
from maskwatch.types import FaceDetections, Frame, FrameResult
from tests.conftest import count_frames


def _result(i: int, value: int = 0) -> tuple[FrameResult, np.ndarray]:
    image = np.full((48, 64, 3), value, np.uint8)
    frame = Frame(image=image, index=i, timestamp_s=i / 25.0)
    return FrameResult(frame=frame, faces=FaceDetections.empty()), image


class Recorder:
    data_only = False
    takes_events = True

    def __init__(self, delay_s: float = 0.0, fail_at: int | None = None) -> None:
        self.seen: list[int] = []
        self.threads: set[str] = set()
        self.delay_s, self.fail_at, self.closed = delay_s, fail_at, False

    def write(self, result, annotated) -> None:
        if self.fail_at is not None and result.frame.index == self.fail_at:
            raise OutputError("disk almost full")
        time.sleep(self.delay_s)
        self.threads.add(threading.current_thread().name)
        self.seen.append(result.frame.index)

    def close(self) -> None:
        self.closed = True


def test_every_frame_reaches_the_inner_sink_in_order_on_another_thread():
    inner = Recorder(delay_s=0.002)
    with BackgroundSink(inner, depth=2) as sink:
        assert sink.takes_events and not sink.data_only
        for i in range(30):
            sink.write(*_result(i))
    assert inner.seen == list(range(30)) and inner.closed
    assert inner.threads == {"maskwatch-writer"}


def test_an_error_reaches_the_caller_once_and_the_inner_sink_is_still_closed():
    inner = Recorder(fail_at=3)
    sink = BackgroundSink(inner, depth=1)
    with pytest.raises(OutputError, match="disk"):
        for i in range(50):
            sink.write(*_result(i))
            time.sleep(0.005)
    sink.close()  # already raised: not again
    assert inner.closed and inner.seen == [0, 1, 2]


def test_an_error_after_the_last_write_is_raised_by_close():
    inner = Recorder(fail_at=1)
    sink = BackgroundSink(inner)
    sink.write(*_result(0))
    sink.write(*_result(1))
    with pytest.raises(OutputError):
        sink.close()
    assert inner.closed


def test_a_background_video_holds_every_frame(tmp_path):
    out = tmp_path / "o.mp4"
    video = VideoSink(out, fps=25.0)
    with BackgroundSink(video) as sink:
        for i in range(20):
            sink.write(*_result(i, value=10 * i))
        assert sink.path == out  # the inner sink's attributes show through
    n, size, _ = count_frames(out)
    assert n == 20 and size == (64, 48) and video.frames_written == 20


class Stuck(Recorder):
    """A writer that never returns (a hung device or network file system)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, result, annotated) -> None:
        self.release.wait()


def test_a_stuck_writer_fails_write_and_close_in_bounded_time_with_a_clear_error():
    inner = Stuck()
    sink = BackgroundSink(inner, depth=1, timeout_s=0.5, name="out.mp4")
    started = time.monotonic()
    try:
        with pytest.raises(OutputError, match=r"out\.mp4: the writer took no frame for 0\.5 s"):
            for i in range(10):  # the first is stuck in the writer, the second waits in the queue
                sink.write(*_result(i))
        with pytest.raises(OutputError, match=r"out\.mp4: the writer did not finish within 0\.5 s"):
            sink.close()
        sink.close()  # once closed, closing again returns at once
    finally:
        inner.release.set()
    assert time.monotonic() - started < 3.0
    assert not inner.closed  # never closed under a writer still inside it
