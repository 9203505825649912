"""One source's part of a run: its capture thread and queue, its process stage, its own sinks and counters.

A run serves one or more lanes (:func:`maskwatch.runner.lanes.run_sources`); every per-source rule (how a frame is
processed, drawn, written and counted, how a source ends, how its capture thread is shut down) lives here, once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
from loguru import logger
from tqdm import tqdm

from maskwatch.capture.base import Source
from maskwatch.capture.producer import END, Producer
from maskwatch.monitor.base import FrameProcessor
from maskwatch.outputs.picture import Picture, PictureSink
from maskwatch.outputs.render import OverlayRenderer
from maskwatch.outputs.sinks import Sink, WindowSink
from maskwatch.runner.stats import FrameRate, RunStats
from maskwatch.types import FaceDetections, Frame, FrameResult

tqdm.monitor_interval = 0  # no monitor thread: a long run keeps exactly the threads it started


class _NotifyingQueue(queue.Queue):
    """A bounded queue that sets ``ready`` on every put, so one consumer can wait on many queues at once."""

    def __init__(self, maxsize: int, ready: threading.Event) -> None:
        super().__init__(maxsize)
        self.ready = ready

    def _put(self, item) -> None:
        super()._put(item)
        self.ready.set()


@dataclass
class Lane:
    """One source of a run: ``process`` is its Monitor (or the pipeline without tracking), ``sinks`` its own
    outputs (the run's shared sinks are passed to each call), ``summary`` its periodic summary line (None: none),
    ``renderer`` its own overlay (one that draws its zones and lines; None: the run's)."""

    name: str
    source: Source
    process: FrameProcessor
    sinks: list[Sink] = field(default_factory=list)
    stats: RunStats = field(default_factory=RunStats)
    summary: Callable[[], str | None] | None = None
    renderer: OverlayRenderer | None = None
    rate: FrameRate = field(default_factory=FrameRate)
    frames: queue.Queue | None = None
    producer: Producer | None = None
    done: bool = False
    last: tuple[FrameResult, np.ndarray] | None = None
    bar: tqdm | None = None

    @property
    def error(self) -> BaseException | None:
        return self.producer.error if self.producer is not None else None

    def _opened(self) -> tuple[queue.Queue, Producer]:
        """The frame queue and the capture thread (made by :meth:`open`)."""
        if self.frames is None or self.producer is None:
            raise RuntimeError(f"lane {self.name} was not opened")
        return self.frames, self.producer

    def start(self, started: float) -> None:
        """Start the capture thread; the run's clock started at ``started``."""
        self.stats.started = started
        self._opened()[1].start()

    def open(self, stop: threading.Event, ready: threading.Event, *, queue_size: int, **producer_kw) -> None:
        """Make the frame queue (``queue_size`` frames, wakes ``ready``) and the capture thread (not started)."""
        live = self.source.is_live
        self.frames = _NotifyingQueue(queue_size, ready)
        self.producer = Producer(self.source, self.frames, stop, drop_oldest=live, **producer_kw)

    def take(self, limit: int) -> tuple[list[Frame], bool]:
        """The frames waiting now (up to ``limit``), and whether the source ended among them (or its thread died)."""
        frames, producer = self._opened()
        try:
            first = frames.get_nowait()
        except queue.Empty:
            return [], not producer.is_alive() and frames.empty()
        return ([], True) if first is END else take_waiting(frames, first, limit)

    def serve(self, batch: list[Frame], shared: Sequence[Sink], renderer: OverlayRenderer | None) -> None:
        """Process ``batch`` (one model batch when several), then draw, write and count each frame in order."""
        sinks = [*shared, *self.sinks]
        renderer = self.renderer if self.renderer is not None and renderer is not None else renderer
        draw = renderer if renderer is not None and any(not s.data_only for s in sinks) else None  # else no pixels
        t_batch = time.perf_counter()
        results = self.process.process_batch(batch) if len(batch) > 1 else [self.process(batch[0])]
        share_ms = (time.perf_counter() - t_batch) * 1e3 / len(batch)
        for frame, result in zip(batch, results, strict=True):
            fps = self.rate.tick(time.monotonic())
            render_ms, sinks_ms = write_frame(result, fps, draw, sinks)
            self.last = (result, result.frame.image)
            self.process.observe(share_ms + render_ms + sinks_ms, result.detected)
            self.stats.dropped = self._opened()[1].stats.dropped
            self.stats.record(result, render_ms, sinks_ms, fps, (time.monotonic() - frame.captured_at) * 1e3)
            if self.bar is not None:
                self.bar.update(1)

    def end(self, shared: Sequence[Sink], *, log: bool) -> None:
        """The source ended (file done, stopped, or failed): close its tracks and hand the last events on."""
        self.done = True
        finish_process(self.process, [*shared, *self.sinks], self.last)
        if not log:
            return
        if self.error is not None:
            logger.warning(f"{self.name} stopped: {self.error}; the other sources go on")
        else:
            logger.info(f"{self.name} ended after {self.stats.frames} frames")

    def quit_requested(self) -> bool:
        """Whether one of its windows asked to stop (``q``, Esc, or closed)."""
        return any(isinstance(s, WindowSink) and s.quit_requested for s in self.sinks)

    def log_summary(self, prefix: str = "") -> None:
        line = self.summary() if self.summary is not None else None
        if line:
            logger.info(prefix + line)

    def shutdown(self, deadline: float, *, stopped: bool, started: float) -> None:
        """Join the capture thread (until ``deadline``), release the source, settle the counters."""
        producer = self._opened()[1]
        producer.join(timeout=max(deadline - time.monotonic(), 0.1))
        if not producer.is_alive():  # a thread stuck in a driver read must not see a released capture
            self.source.close()
        self.stats.wall_s = time.monotonic() - started
        self.stats.dropped = producer.stats.dropped
        self.stats.stopped_early = stopped and not producer.stats.exhausted  # this source was cut short
        if self.bar is not None:
            self.bar.close()


def write_frame(
    result: FrameResult, fps: float | None, renderer: OverlayRenderer | None, sinks: Sequence[Sink]
) -> tuple[float, float]:
    """Hand ``result`` to every sink: drawn by ``renderer`` (None: the raw frame) now when a sink that is not lazy
    takes pixels, else drawn later by the lazy sinks that use it (:class:`~maskwatch.outputs.picture.Picture`).
    Data-only sinks get the raw frame.

    Returns the milliseconds spent rendering and in the sinks.
    """
    t_render = time.perf_counter()
    picture = Picture(result.frame.image, renderer.plan(result, fps) if renderer is not None else None)
    drawn = result.frame.image
    if any(not sink.data_only and not is_lazy(sink) for sink in sinks):
        image = picture.annotated()  # an in-memory picture always draws
        drawn = image if image is not None else drawn
    t_sinks = time.perf_counter()
    for sink in sinks:
        if is_lazy(sink):
            cast(PictureSink, sink).write_picture(result, picture)
        else:
            sink.write(result, result.frame.image if sink.data_only else drawn)
    t_end = time.perf_counter()
    return (t_sinks - t_render) * 1e3, (t_end - t_sinks) * 1e3


def is_lazy(sink: object) -> bool:
    """Whether ``sink`` is a :class:`~maskwatch.outputs.picture.PictureSink` (draws only the frames it uses)."""
    return bool(getattr(sink, "lazy", False))


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
