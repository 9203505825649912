import queue
import threading
import time

import numpy as np
import pytest
from loguru import logger

import maskwatch.capture.sources as capture
from maskwatch.capture.base import RawFrame, Source
from maskwatch.capture.producer import END, Producer
from maskwatch.capture.reconnect import ReconnectingSource
from maskwatch.capture.sources import open_source
from maskwatch.errors import SourceError
from maskwatch.media import scrub_url

SECRET_URL = "rtsp://user:pw@host/x"


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class FakeCamera(Source):
    """Delivers ``frames`` frames (pixel value ``mark``), then returns None (unplugged) or raises."""

    is_live = True
    finite = False
    frame_count = None

    def __init__(self, frames: int | None = 5, mark: int = 1, raise_after: bool = False, period_s: float = 0.0):
        self.frames, self.mark, self.raise_after, self.period_s = frames, mark, raise_after, period_s
        self.name, self.fps, self.sent, self.closed = "fake", 30.0, 0, False

    def read(self):
        if self.frames is not None and self.sent >= self.frames:
            if self.raise_after:
                raise OSError(f"device {SECRET_URL} vanished")
            return None
        if self.period_s:
            time.sleep(self.period_s)
        self.sent += 1
        return RawFrame(np.full((4, 4, 3), self.mark, np.uint8), self.name)

    def close(self) -> None:
        self.closed = True


class FlakyOpener:
    """Fails ``failures`` times (SourceError naming the secret URL), then opens a fresh camera."""

    def __init__(self, clock, failures: int = 2, **camera) -> None:
        self.clock, self.failures, self.camera, self.times = clock, failures, camera, []
        self.opened: list[FakeCamera] = []

    def __call__(self) -> FakeCamera:
        self.times.append(self.clock())
        if len(self.times) <= self.failures:
            raise SourceError(f"cannot open stream {SECRET_URL}: unreachable")
        self.opened.append(FakeCamera(**self.camera))
        return self.opened[-1]


@pytest.fixture
def logs():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{level} {message}")
    yield lines
    logger.remove(sink)


def _poll(source, clock: FakeClock, steps: int, dt: float = 0.1) -> list:
    got = []
    for _ in range(steps):
        item = source.read()
        if item is not None:
            got.append(int(item[0][0, 0, 0]))
        clock.t += dt
    return got


def test_reconnects_after_unplug_with_growing_backoff(logs):
    clock = FakeClock()
    first = FakeCamera(frames=5, mark=1)
    opener = FlakyOpener(clock, failures=2, frames=None, mark=2)
    src = ReconnectingSource(opener, SECRET_URL, stall_s=1.0, backoff_s=0.5, clock=clock, first=first)
    assert src.connected and src.fps == 30.0 and src.reconnects and src.is_live and not src.finite
    got = _poll(src, clock, 60)
    assert got[:5] == [1] * 5 and set(got[5:]) == {2} and len(got) > 10
    assert src.outages == 1 and src.connected and first.closed
    assert len(opener.times) == 3
    gaps = np.diff(opener.times)
    assert gaps[1] > gaps[0] >= 0.45  # backoff doubles after each failure
    # down from the last frame (t=100.4): the stall_s of silence before the loss was noticed counts too
    assert src.downtime_s == pytest.approx(opener.times[-1] - 100.4, abs=0.11)
    assert src.downtime_s >= opener.times[-1] - opener.times[0] + 1.0 - 1e-6
    assert src.downtime_s > 0
    down = src.downtime_s
    _poll(src, clock, 5)
    assert src.downtime_s == down  # no longer growing once reconnected
    text = "\n".join(logs)
    assert "lost rtsp://***@host/x: no frames for" in text and "reconnecting" in text
    assert "reconnected to rtsp://***@host/x after" in text
    assert sum("reconnecting to" in line and "failed" in line for line in logs) == 2  # one line per attempt
    assert "pw" not in text


def test_short_gap_is_not_an_outage():
    clock = FakeClock()
    camera = FakeCamera(frames=None)
    real_read, empty = camera.read, [3]

    def read():  # three empty reads (a hiccup shorter than stall_s), then frames again
        if empty[0]:
            empty[0] -= 1
            return None
        return real_read()

    camera.read = read
    src = ReconnectingSource(lambda: pytest.fail("must not reopen"), "cam", stall_s=1.0, clock=clock, first=camera)
    assert _poll(src, clock, 3) == []
    assert len(_poll(src, clock, 10)) == 10
    assert src.outages == 0 and src.connected and src.downtime_s == 0.0


def test_read_error_is_a_lost_device(logs):
    clock = FakeClock()
    first = FakeCamera(frames=2, raise_after=True)
    opener = FlakyOpener(clock, failures=0, frames=None, mark=3)
    src = ReconnectingSource(opener, SECRET_URL, stall_s=0.5, backoff_s=0.2, clock=clock, first=first)
    assert _poll(src, clock, 3) == [1, 1]  # the first failing read is not yet an outage
    assert src.connected and src.outages == 0
    got = _poll(src, clock, 10)
    assert src.outages == 1 and first.closed and 3 in got
    failures = [line for line in logs if "reading" in line and "failed" in line]
    assert len(failures) == 1  # logged once, not on every failing read
    assert "pw" not in "\n".join(logs) and "rtsp://***@host/x" in failures[0]


def test_max_backoff_caps_attempts():
    clock = FakeClock()
    opener = FlakyOpener(clock, failures=100)
    opened_at = clock.t
    src = ReconnectingSource(
        opener, "cam", stall_s=0.1, backoff_s=1.0, max_backoff_s=4.0, clock=clock, first=FakeCamera(frames=0)
    )
    _poll(src, clock, 400)
    gaps = np.diff(opener.times)
    assert max(gaps) == pytest.approx(4.0, abs=0.11)
    assert src.outages == 1 and not src.connected
    assert src.downtime_s == pytest.approx(clock.t - opened_at)  # it never sent a frame: down since it opened


def test_close_during_outage_is_prompt():
    opener = FlakyOpener(time.monotonic, failures=1000)
    src = ReconnectingSource(opener, "cam", stall_s=0.05, backoff_s=30.0, first=FakeCamera(frames=1))
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        src.read()
        time.sleep(0.01)
    assert src.outages == 1 and len(opener.times) == 1  # waiting out a 30 s backoff without blocking
    start = time.monotonic()
    src.read()
    src.close()
    src.close()  # idempotent
    assert time.monotonic() - start < 0.1
    assert src.read() is None
    down = src.downtime_s
    time.sleep(0.02)
    assert src.downtime_s == down > 0  # frozen once closed


def test_producer_keeps_going_across_an_outage(logs):
    opener = FlakyOpener(time.monotonic, failures=2, frames=None, mark=2, period_s=0.002)
    first = FakeCamera(frames=5, mark=1, period_s=0.002)
    src = ReconnectingSource(opener, SECRET_URL, stall_s=0.1, backoff_s=0.02, first=first)
    frames: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    # read_timeout_s is far below the outage: without reconnect support the producer would raise
    producer = Producer(src, frames, stop, drop_oldest=True, read_timeout_s=0.05, poll_s=0.01)
    producer.start()
    marks = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and marks.count(2) < 20:
        try:
            item = frames.get(timeout=0.5)
        except queue.Empty:
            continue
        assert item is not END, producer.error
        marks.append(int(item.image[0, 0, 0]))
        time.sleep(0.005)
    stop.set()
    producer.join(timeout=2)
    assert not producer.is_alive() and producer.error is None
    assert marks.count(2) >= 20 and marks.index(2) > 0 and 1 in marks
    assert src.outages == 1 and len(opener.times) == 3 and src.downtime_s > 0
    src.close()
    assert opener.opened[-1].closed
    assert "pw" not in "\n".join(logs)


class _FakeLive(FakeCamera):
    instances: list = []

    def __init__(self, spec, open_timeout_s: float = 10.0) -> None:
        super().__init__(frames=None)
        self.spec, self.name = spec, scrub_url(str(spec))
        _FakeLive.instances.append(self)


def test_open_source_wraps_live_sources(monkeypatch):
    monkeypatch.setattr(capture, "LiveSource", _FakeLive)
    _FakeLive.instances.clear()
    src = open_source(SECRET_URL, open_timeout_s=7.0)
    assert isinstance(src, ReconnectingSource) and src.name == "rtsp://***@host/x" and src.stall_s == 7.0
    assert len(_FakeLive.instances) == 1 and src.read() is not None
    reopened = src.opener()
    assert isinstance(reopened, _FakeLive) and reopened.spec == SECRET_URL
    cam = open_source("0", stall_s=2.0)
    assert isinstance(cam, ReconnectingSource) and cam.stall_s == 2.0 and cam.opener().spec == 0
    plain = open_source(SECRET_URL, reconnect=False)
    assert isinstance(plain, _FakeLive)


def test_open_source_first_failure_is_not_retried(monkeypatch):
    def refuse(spec, open_timeout_s=10.0):
        raise SourceError("cannot open stream: unreachable")

    monkeypatch.setattr(capture, "LiveSource", refuse)
    with pytest.raises(SourceError, match="unreachable"):
        open_source("rtsp://host/x")


class StalledCamera(FakeCamera):
    """Sends ``frames`` frames; then one read blocks ``block_s`` (OpenCV's read timeout, fake clock) and returns
    None, as a camera does when its stream goes away."""

    def __init__(self, clock: FakeClock, frames: int, block_s: float) -> None:
        super().__init__(frames=frames)
        self.clock, self.block_s = clock, block_s

    def read(self):
        item = super().read()
        if item is None:
            self.clock.t += self.block_s
        return item


def test_downtime_counts_from_the_last_frame_and_survives_the_reconnect(logs):
    # the stream is gone for 12 s: a read blocks for all of them (longer than stall_s), then it reopens at once
    from maskwatch.runner.single import RunStats
    from maskwatch.runner.status import log_done

    clock = FakeClock()
    first = StalledCamera(clock, frames=3, block_s=12.0)
    opener = FlakyOpener(clock, failures=0, frames=None, mark=2)
    src = ReconnectingSource(opener, "cam", stall_s=10.0, backoff_s=1.0, clock=clock, first=first)
    assert _poll(src, clock, 3, dt=0.0) == [1, 1, 1]
    last_frame_at = clock.t
    assert _poll(src, clock, 1, dt=0.0) == []  # blocks 12 s: lost
    assert src.outages == 1 and not src.connected
    assert _poll(src, clock, 3, dt=0.0) == [2, 2]  # reopened at once, frames again
    assert src.connected and clock.t - last_frame_at == pytest.approx(12.0)
    assert src.downtime_s == pytest.approx(12.0)
    log_done(src, RunStats(frames=5, wall_s=20.0))
    done = [line for line in logs if "done:" in line]
    assert len(done) == 1 and "1 outage(s), 12 s down" in done[0], done
