"""Runs capture → pipeline → render → sinks with one producer thread and the consumer on the caller's thread.

Nothing here can hang: every queue operation has a timeout or a stop check, a failing thread's exception
reaches the caller, and sinks are closed by the caller's ``with`` on every exit path.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from loguru import logger
from tqdm import tqdm

from maskwatch.capture.base import Source
from maskwatch.capture.producer import END, Producer
from maskwatch.monitor.base import FrameProcessor
from maskwatch.outputs.render import OverlayRenderer
from maskwatch.outputs.sinks import Sink, WindowSink
from maskwatch.types import FaceDetections, Frame, FrameResult

tqdm.monitor_interval = 0  # no monitor thread: a long run keeps exactly the threads it started


@dataclass
class RunStats:
    """What a run did, updated live. ``ages_ms``: how old each frame was when its result reached the sinks.

    ``fps_now`` and ``stage_ms`` (moving averages of each stage's milliseconds) feed the status views.
    ``stopped_early``: the run was stopped (a signal, the window closed) before its source ended.
    """

    frames: int = 0
    dropped: int = 0
    faces: int = 0
    wall_s: float = 0.0
    stopped_early: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    ages_ms: deque = field(default_factory=lambda: deque(maxlen=100_000))
    fps_now: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def average(self, stage: str, ms: float) -> None:
        old = self.stage_ms.get(stage)
        self.stage_ms[stage] = ms if old is None else 0.9 * old + 0.1 * ms

    def record(self, result: FrameResult, render_ms: float, sinks_ms: float, fps: float | None, age_ms: float) -> None:
        """Count one written frame: its stage times, faces and classes, the live fps and the frame's age."""
        for name, ms in result.timings_ms.items():
            self.average(name.removesuffix("_ms"), ms)
        self.average("render", render_ms)
        self.average("sinks", sinks_ms)
        self.fps_now = fps or 0.0
        self.frames += 1
        self.faces += len(result.faces)
        for name, n in result.faces.counts().items():
            self.counts[name] = self.counts.get(name, 0) + n
        self.ages_ms.append(age_ms)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def age_percentiles(self) -> dict[str, float]:
        if not self.ages_ms:
            return {}
        ages = np.fromiter(self.ages_ms, dtype=np.float64)
        return {"median_ms": float(np.median(ages)), "p99_ms": float(np.percentile(ages, 99))}


class FrameRate:
    """Frames per second for the HUD and status: the inverse of a moving average of frame intervals."""

    def __init__(self) -> None:
        self.fps: float | None = None
        self._interval: float | None = None
        self._last: float | None = None

    def tick(self, now: float) -> float | None:
        if self._last is not None and now > self._last:
            dt = now - self._last
            self._interval = dt if self._interval is None else 0.9 * self._interval + 0.1 * dt
            self.fps = 1.0 / self._interval
        self._last = now
        return self.fps


def write_frame(
    result: FrameResult, fps: float, renderer: OverlayRenderer | None, sinks: Sequence[Sink]
) -> tuple[np.ndarray, float, float]:
    """Draw ``result`` (``renderer`` None: the raw frame) and write it to every sink.

    Returns the image written and the milliseconds spent rendering and in the sinks.
    """
    t_render = time.perf_counter()
    annotated = renderer.annotate(result, fps) if renderer is not None else result.frame.image
    t_sinks = time.perf_counter()
    for sink in sinks:
        sink.write(result, annotated)
    t_end = time.perf_counter()
    return annotated, (t_sinks - t_render) * 1e3, (t_end - t_sinks) * 1e3


def run(
    source: Source,
    process: FrameProcessor,
    sinks: Sequence[Sink],
    renderer: OverlayRenderer | None = None,
    *,
    stop: threading.Event | None = None,
    queue_size: int = 8,
    live_queue_size: int = 2,
    read_timeout_s: float = 10.0,
    status_interval_s: float = 1.0,
    progress: bool = True,
    poll_s: float = 0.1,
    stats: RunStats | None = None,
    summary: Callable[[], str | None] | None = None,
    summary_interval_s: float = 60.0,
    batch_frames: int = 1,
) -> RunStats:
    """Process every frame of ``source`` (files) or the freshest frames (live) until the end or ``stop``.

    Setting ``stop`` ends capture; frames already queued are still processed and written. Raises the
    producer's or any stage's exception after the producer thread has been stopped and joined.

    ``process`` is told each frame's busy time (``observe``) and ends with ``finish``, whose last events go to the
    sinks marked ``takes_events``. ``summary`` (e.g. ``process.summary_line``) is logged every
    ``summary_interval_s`` and at the end, when it has a line.

    ``batch_frames`` > 1: when the consumer is behind, the frames already waiting in the queue (up to
    ``batch_frames``) are processed together (``process.process_batch``: a GPU's batch), then written in order.
    """
    stop = stop or threading.Event()
    live = source.is_live
    frames: queue.Queue = queue.Queue(maxsize=live_queue_size if live else queue_size)
    producer = Producer(source, frames, stop, drop_oldest=live, read_timeout_s=read_timeout_s, poll_s=poll_s)
    needs_image = renderer is not None and any(not s.data_only for s in sinks)
    stats = stats or RunStats()
    rate = FrameRate()
    show_bar = progress and not live
    bar = tqdm(total=source.frame_count, unit="frame", disable=not show_bar, dynamic_ncols=True)
    started = stats.started = time.monotonic()
    next_status = started + status_interval_s
    next_summary = started + summary_interval_s
    last: tuple[FrameResult, np.ndarray] | None = None

    def _deliver(item: Frame, result: FrameResult, share_s: float) -> tuple[FrameResult, np.ndarray]:
        """Render and write one processed frame, and count it (``share_s``: its share of the processing time)."""
        nonlocal next_status, next_summary
        fps = rate.tick(time.monotonic())
        annotated, render_ms, sinks_ms = write_frame(result, fps, renderer if needs_image else None, sinks)
        process.observe(share_s * 1e3 + render_ms + sinks_ms, result.detected)
        now = time.monotonic()
        stats.dropped = producer.stats.dropped
        stats.record(result, render_ms, sinks_ms, fps, (now - item.captured_at) * 1e3)
        bar.update(1)
        if not show_bar and now >= next_status:
            next_status = now + status_interval_s
            logger.info(_status_line(source, stats, fps, producer.stats.dropped, len(result.faces)))
        if summary is not None and now >= next_summary:
            next_summary = now + summary_interval_s
            _log_summary(summary)
        return result, annotated

    producer.start()
    try:
        while True:
            try:
                item = frames.get(timeout=poll_s)
            except queue.Empty:
                if not producer.is_alive() and frames.empty():
                    break
                continue
            if item is END:
                break
            batch, ended = take_waiting(frames, item, batch_frames)
            t_batch = time.perf_counter()
            results = process.process_batch(batch) if len(batch) > 1 else [process(item)]
            share_s = (time.perf_counter() - t_batch) / len(batch)
            for item, result in zip(batch, results, strict=True):
                last = _deliver(item, result, share_s)
            if ended:
                break
            if any(isinstance(s, WindowSink) and s.quit_requested for s in sinks):
                stop.set()
        finish_process(process, sinks, last)
        if summary is not None:
            _log_summary(summary)
    finally:
        stats.stopped_early = stop.is_set() and not producer.stats.exhausted
        stop.set()
        producer.join(timeout=5.0)
        if not producer.is_alive():  # a thread stuck inside a driver read must not see a released capture
            source.close()
        bar.close()
        stats.wall_s = time.monotonic() - started
        stats.dropped = producer.stats.dropped
    if producer.error is not None:
        raise producer.error
    return stats


def take_waiting(frames: queue.Queue, first: Frame, limit: int) -> tuple[list[Frame], bool]:
    """``first`` and the frames already waiting behind it (up to ``limit`` in all), without waiting for more;
    and whether the end of the source was reached among them."""
    batch = [first]
    while len(batch) < limit:
        try:
            waiting = frames.get_nowait()
        except queue.Empty:
            break
        if waiting is END:
            return batch, True
        batch.append(waiting)
    return batch, False


def finish_process(process: FrameProcessor, sinks: Sequence[Sink], last: tuple[FrameResult, np.ndarray] | None) -> None:
    """End the process stage (e.g. close every track) and hand its last events to the sinks that take them."""
    events = process.finish()
    if not events or last is None:
        return
    result, annotated = last
    final = FrameResult(frame=result.frame, faces=FaceDetections.empty(), detected=False, events=events)
    for sink in sinks:
        if sink.takes_events:
            sink.write(final, annotated)


def _log_summary(summary: Callable[[], str | None]) -> None:
    line = summary()
    if line:
        logger.info(line)


def _status_line(source: Source, stats: RunStats, fps: float | None, dropped: int, faces_now: int) -> str:
    done = f"{stats.frames}/{source.frame_count}" if source.frame_count else f"{stats.frames}"
    line = f"{source.name}: {done} frames, {fps or 0:.1f} fps, {faces_now} faces in view"
    if source.is_live:
        line += f", {dropped} dropped"
    elif source.frame_count and fps:
        line += f", ETA {max(source.frame_count - stats.frames, 0) / fps:.0f} s"
    return line
