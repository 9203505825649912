"""Several sources in one process: a capture thread per source, one shared inference pipeline, one set of sinks.

Each source gets its own :class:`~maskwatch.capture.producer.Producer` (a bounded queue; a live source keeps only its
freshest frame, and reconnects on its own), its own :class:`~maskwatch.monitor.monitor.Monitor` (tracker, alert policy,
people counts) and its own frame rate. The caller's thread runs :func:`run_sources`: it serves the sources
round-robin through the one pipeline (models loaded once) and writes every sink, so the shared event log,
detections file and HTTP view each have a single writer.

Why threads and not a Ray actor per source: see ``tools/bench_multicam.py`` and the README ("Many cameras").
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from loguru import logger

from maskwatch.capture.base import RawFrame, Source
from maskwatch.capture.producer import END, Producer
from maskwatch.errors import MaskwatchError, SourceError
from maskwatch.monitor.base import FrameProcessor
from maskwatch.outputs.render import OverlayRenderer
from maskwatch.outputs.sinks import Sink, WindowSink
from maskwatch.runner.single import FrameRate, RunStats, finish_process, write_frame
from maskwatch.types import Frame, FrameResult


class NamedSource(Source):
    """A source whose frames carry a configured name (events, detections and the HTTP view key on it).

    Everything else (``is_live``, ``fps``, ``outages``, ``connected``, ``reconnects`` …) is the wrapped source's.
    """

    def __init__(self, inner: Source, name: str) -> None:
        self.inner = inner
        self.name = name

    @property
    def is_live(self) -> bool:
        return self.inner.is_live

    @property
    def finite(self) -> bool:
        return self.inner.finite

    @property
    def fps(self) -> float:
        return self.inner.fps

    @property
    def frame_count(self) -> int | None:
        return self.inner.frame_count

    @property
    def first_index(self) -> int:
        return self.inner.first_index

    @property
    def reconnects(self) -> bool:
        return self.inner.reconnects

    @property
    def outages(self) -> int:
        return self.inner.outages

    @property
    def connected(self) -> bool:
        return self.inner.connected

    @property
    def downtime_s(self) -> float:
        return self.inner.downtime_s

    @property
    def truncated(self) -> bool:
        return self.inner.truncated

    @property
    def skipped(self) -> Sequence[Path]:
        return self.inner.skipped

    @property
    def paths(self) -> Sequence[Path]:
        return self.inner.paths

    def read(self) -> RawFrame | None:
        item = self.inner.read()
        if item is None:
            return None
        return item._replace(name=self.name)

    def close(self) -> None:
        self.inner.close()


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
    """One source's part of a multi-source run: its capture thread, its process stage, its own sinks and stats.

    ``process`` is the source's Monitor (or the shared pipeline without tracking).
    """

    name: str
    source: Source
    process: FrameProcessor
    sinks: list[Sink] = field(default_factory=list)
    stats: RunStats = field(default_factory=RunStats)
    rate: FrameRate = field(default_factory=FrameRate)
    frames: queue.Queue | None = None
    producer: Producer | None = None
    done: bool = False
    last: tuple[FrameResult, np.ndarray] | None = None

    @property
    def error(self) -> BaseException | None:
        return self.producer.error if self.producer is not None else None


def run_sources(
    lanes: Sequence[Lane],
    shared_sinks: Sequence[Sink],
    renderer: OverlayRenderer | None = None,
    *,
    stop: threading.Event | None = None,
    workers: int = 1,
    queue_size: int = 8,
    read_timeout_s: float = 10.0,
    status_interval_s: float = 1.0,
    summary_interval_s: float = 60.0,
    poll_s: float = 0.1,
) -> None:
    """Serve every lane round-robin until all have ended (files) or ``stop`` is set (then queued frames finish).

    A live source keeps one frame queued (its freshest: older ones are dropped and counted); a file keeps up to
    ``queue_size`` and is read without loss. A source whose capture fails ends alone (logged) while the others
    go on; its error is raised at the end. A failing stage or sink stops every source and is raised.
    ``workers`` threads serve the sources (source i by worker i mod ``workers``) through the same models: torch
    releases the GIL in its kernels, so two workers keep two cores busy; shared sinks are then written under one
    lock. The caller's thread is worker 0 and logs the status lines. Every thread is joined (bounded) at the end.
    """
    stop = stop or threading.Event()
    groups = [list(lanes[i :: max(workers, 1)]) for i in range(max(1, min(workers, len(lanes))))]
    if len(groups) > 1:
        lock = threading.Lock()
        shared_sinks = [_LockedSink(sink, lock) for sink in shared_sinks]
    readies = [threading.Event() for _ in groups]
    for group, ready in zip(groups, readies, strict=True):
        for lane in group:
            live = lane.source.is_live
            lane.frames = _NotifyingQueue(1 if live else queue_size, ready)
            lane.producer = Producer(
                lane.source, lane.frames, stop, drop_oldest=live, read_timeout_s=read_timeout_s, poll_s=poll_s
            )
    started = time.monotonic()
    next_status, next_summary = started + status_interval_s, started + summary_interval_s
    errors: list[BaseException] = []
    helpers = [
        threading.Thread(
            target=_work,
            args=(group, ready, shared_sinks, renderer, poll_s, stop, errors),
            name=f"maskwatch-infer-{i}",
            daemon=True,
        )
        for i, (group, ready) in enumerate(zip(groups[1:], readies[1:], strict=True), start=1)
    ]
    for lane in lanes:
        lane.stats.started = started
        lane.producer.start()
    for helper in helpers:
        helper.start()
    try:
        while not all(lane.done for lane in lanes) and not errors:
            _round(groups[0], readies[0], shared_sinks, renderer, poll_s)
            now = time.monotonic()
            if now >= next_status:
                next_status = now + status_interval_s
                logger.info(status_line(lanes))
            if now >= next_summary:
                next_summary = now + summary_interval_s
                for lane in lanes:
                    line = lane.process.summary_line()
                    if line:
                        logger.info(f"{lane.name}: {line}")
            if any(isinstance(s, WindowSink) and s.quit_requested for lane in lanes for s in lane.sinks):
                stop.set()
    finally:
        stopped_early = stop.is_set()
        stop.set()
        deadline = time.monotonic() + 5.0
        for helper in helpers:
            helper.join(timeout=max(deadline - time.monotonic(), 0.1))
        for lane in lanes:
            lane.producer.join(timeout=max(deadline - time.monotonic(), 0.1))
            if not lane.producer.is_alive():  # a thread stuck in a driver read must not see a released capture
                lane.source.close()
            lane.stats.wall_s = time.monotonic() - started
            lane.stats.dropped = lane.producer.stats.dropped
            lane.stats.stopped_early = stopped_early and not lane.producer.stats.exhausted  # this source was cut
    if errors:
        raise errors[0]
    failed = [lane for lane in lanes if lane.error is not None]
    if failed:
        first = failed[0].error
        if isinstance(first, MaskwatchError):
            names = ", ".join(lane.name for lane in failed)
            raise SourceError(f"{len(failed)} of {len(lanes)} sources failed ({names}); first: {first}") from None
        raise first


def _round(
    group: Sequence[Lane],
    ready: threading.Event,
    shared_sinks: Sequence[Sink],
    renderer: OverlayRenderer | None,
    poll_s: float,
) -> None:
    """One round-robin pass: at most one frame of each source; waits up to ``poll_s`` when none had a frame."""
    ready.clear()
    served = 0
    for lane in group:
        if lane.done:
            continue
        try:
            item = lane.frames.get_nowait()
        except queue.Empty:
            if not lane.producer.is_alive() and lane.frames.empty():
                _end(lane, shared_sinks)
            continue
        if item is END:
            _end(lane, shared_sinks)
            continue
        _serve(lane, item, shared_sinks, renderer)
        served += 1
    if not served:
        ready.wait(poll_s)


def _work(group, ready, shared_sinks, renderer, poll_s: float, stop: threading.Event, errors: list) -> None:
    """A helper worker: serve ``group`` until its sources end; an exception stops the run and is handed over."""
    try:
        while not all(lane.done for lane in group):
            _round(group, ready, shared_sinks, renderer, poll_s)
    except BaseException as exc:
        errors.append(exc)
        stop.set()


class _LockedSink:
    """A shared sink written by several workers: one lock around every write (the event log is single-writer)."""

    def __init__(self, sink: Sink, lock: threading.Lock) -> None:
        self.sink, self.lock = sink, lock
        self.data_only, self.takes_events = sink.data_only, sink.takes_events

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        with self.lock:
            self.sink.write(result, annotated)


def _serve(lane: Lane, frame: Frame, shared_sinks: Sequence[Sink], renderer: OverlayRenderer | None) -> None:
    """One frame of one source: process, render if a sink shows pixels, write the sinks, update the stats."""
    t_start = time.perf_counter()
    result = lane.process(frame)
    fps = lane.rate.tick(time.monotonic())
    sinks = [*shared_sinks, *lane.sinks]
    needs_image = renderer is not None and any(not s.data_only for s in sinks)
    annotated, render_ms, sinks_ms = write_frame(result, fps, renderer if needs_image else None, sinks)
    lane.last = (result, annotated)
    lane.process.observe((time.perf_counter() - t_start) * 1e3, result.detected)
    lane.stats.dropped = lane.producer.stats.dropped
    age_ms = (time.monotonic() - frame.captured_at) * 1e3
    lane.stats.record(result, render_ms, sinks_ms, fps, age_ms)


def _end(lane: Lane, shared_sinks: Sequence[Sink]) -> None:
    """A source ended (file done, stopped, or failed): close its tracks and hand the last events to the sinks."""
    lane.done = True
    finish_process(lane.process, [*shared_sinks, *lane.sinks], lane.last)
    if lane.error is not None:
        logger.warning(f"{lane.name} stopped: {lane.error}; the other sources go on")
    else:
        logger.info(f"{lane.name} ended after {lane.stats.frames} frames")


def status_line(lanes: Sequence[Lane]) -> str:
    """One log line for all sources: ``door 12.0 fps 240 frames 3 dropped | lobby …``."""
    parts = []
    for lane in lanes:
        part = f"{lane.name} {lane.stats.fps_now:.1f} fps {lane.stats.frames} frames"
        if lane.source.is_live:
            part += f" {lane.producer.stats.dropped if lane.producer else 0} dropped"
            if not lane.source.connected:
                part += " (disconnected)"
        if lane.done:
            part += " (ended)"
        parts.append(part)
    return " | ".join(parts)


def lane_status(lane: Lane) -> dict:
    """One source's row of ``/status``: name, fps, frames, dropped, connected, people, alerts …"""
    stats = lane.stats
    row = {
        "name": lane.name,
        "live": lane.source.is_live,
        "connected": bool(lane.source.connected) and not lane.done,
        "fps": round(stats.fps_now, 2),
        "frames": stats.frames,
        "dropped": stats.dropped,
        "outages": lane.source.outages,
        "stage_ms": {k: round(v, 2) for k, v in stats.stage_ms.items()},
    }
    row.update(lane.process.snapshot())
    return row


def status(lanes: Sequence[Lane], started: float) -> dict:
    """The HTTP view's status: totals on top, one row per source under ``sources``."""
    rows = [lane_status(lane) for lane in lanes]
    return {
        "source": ", ".join(lane.name for lane in lanes),
        "uptime_s": round(time.monotonic() - started, 1),
        "fps": round(sum(r["fps"] for r in rows), 2),
        "frames": sum(r["frames"] for r in rows),
        "dropped": sum(r["dropped"] for r in rows),
        "people_now": sum(r.get("people_now", 0) for r in rows),
        "alerts": sum(r.get("alerts", 0) for r in rows),
        "sources": rows,
    }
