"""Several sources in one process: a capture thread per source, one shared inference pipeline, one set of sinks.

Each source is a :class:`~maskwatch.runner.lane.Lane`: its own :class:`~maskwatch.capture.producer.Producer` (a
bounded queue; a live source keeps only its freshest frames, and reconnects on its own), its own
:class:`~maskwatch.monitor.monitor.Monitor` (tracker, alert policy, people counts) and its own frame rate. The caller's
thread runs :func:`run_sources`: it serves the sources round-robin through the one pipeline (models loaded once) and
writes every sink, so the shared event log, detections file and HTTP view each have a single writer. One source is
the one-lane case (:func:`maskwatch.runner.single.run`).

Why threads and not a Ray actor per source: see ``tools/bench_multicam.py`` and the README ("Many cameras").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from loguru import logger
from tqdm import tqdm

from maskwatch.capture.base import Forwarded, RawFrame, Source
from maskwatch.errors import MaskwatchError, SourceError
from maskwatch.outputs.picture import Picture, PictureSink
from maskwatch.outputs.render import OverlayRenderer
from maskwatch.outputs.sinks import Sink
from maskwatch.runner.lane import Lane, is_lazy
from maskwatch.types import FrameResult


class NamedSource(Source):
    """A source whose frames carry a configured name (events, detections and the HTTP view key on it).

    Everything else (``is_live``, ``fps``, ``outages``, ``connected``, ``reconnects`` …) is the wrapped source's.
    """

    is_live: Forwarded[bool] = Forwarded()
    finite: Forwarded[bool] = Forwarded()
    fps: Forwarded[float] = Forwarded()
    frame_count: Forwarded[int | None] = Forwarded()
    first_index: Forwarded[int] = Forwarded()
    reconnects: Forwarded[bool] = Forwarded()
    outages: Forwarded[int] = Forwarded()
    truncated: Forwarded[bool] = Forwarded()
    frames_lost: Forwarded[int] = Forwarded()
    skipped: Forwarded[Sequence[Path]] = Forwarded()
    paths: Forwarded[Sequence[Path]] = Forwarded()

    def __init__(self, inner: Source, name: str) -> None:
        self.inner = inner
        self.name = name

    @property
    def connected(self) -> bool:
        return self.inner.connected

    @property
    def downtime_s(self) -> float:
        return self.inner.downtime_s

    def read(self) -> RawFrame | None:
        item = self.inner.read()
        if item is None:
            return None
        return item._replace(name=self.name)

    def close(self) -> None:
        self.inner.close()


def run_sources(
    lanes: Sequence[Lane],
    shared_sinks: Sequence[Sink],
    renderer: OverlayRenderer | None = None,
    *,
    stop: threading.Event | None = None,
    workers: int = 1,
    queue_size: int = 8,
    live_queue_size: int = 1,
    read_timeout_s: float = 10.0,
    status_interval_s: float = 1.0,
    summary_interval_s: float = 60.0,
    poll_s: float = 0.1,
    batch_frames: int = 1,
    progress: bool = False,
) -> None:
    """Serve every lane round-robin until all have ended (files) or ``stop`` is set (then queued frames finish).

    A live source keeps ``live_queue_size`` frames queued (its freshest: older ones are dropped and counted); a
    file keeps up to ``queue_size`` and is read without loss. When a lane is behind, up to ``batch_frames`` of its
    waiting frames are processed as one batch. A source whose capture fails ends alone (logged) while the others
    go on; its error is raised at the end (as it is with one source; with several, as one :class:`SourceError`
    naming them). A failing stage or sink stops every source and is raised.
    ``workers`` threads serve the sources (source i by worker i mod ``workers``) through the same models; shared
    sinks are then written under one lock. The caller's thread is worker 0 and logs the status lines (one source
    with ``progress``: a progress bar instead) and each lane's ``summary``. Every thread is joined (bounded).
    """
    stop = stop or threading.Event()
    groups = [list(lanes[i :: max(workers, 1)]) for i in range(max(1, min(workers, len(lanes))))]
    if len(groups) > 1:
        lock = threading.Lock()
        shared_sinks = [_LockedSink(sink, lock) for sink in shared_sinks]
    readies = [threading.Event() for _ in groups]
    for group, ready in zip(groups, readies, strict=True):
        for lane in group:
            size = live_queue_size if lane.source.is_live else queue_size
            lane.open(stop, ready, queue_size=size, read_timeout_s=read_timeout_s, poll_s=poll_s)
    one = lanes[0] if len(lanes) == 1 else None
    if one is not None and progress and not one.source.is_live:
        one.bar = tqdm(total=one.source.frame_count, unit="frame", dynamic_ncols=True)
    serve = _Serve(shared_sinks, renderer, poll_s, batch_frames, log_ends=one is None)
    errors: list[BaseException] = []
    helpers = [
        threading.Thread(
            target=_work, args=(serve, group, ready, stop, errors), name=f"maskwatch-infer-{i}", daemon=True
        )
        for i, (group, ready) in enumerate(zip(groups[1:], readies[1:], strict=True), start=1)
    ]
    started = time.monotonic()
    for lane in lanes:
        lane.start(started)
    for helper in helpers:
        helper.start()
    try:
        _main_loop(lanes, serve, groups[0], readies[0], stop, errors, status_interval_s, summary_interval_s)
    finally:
        stopped = stop.is_set()
        stop.set()
        deadline = time.monotonic() + 5.0
        for helper in helpers:
            helper.join(timeout=max(deadline - time.monotonic(), 0.1))
        for lane in lanes:
            lane.shutdown(deadline, stopped=stopped, started=started)
    if errors:
        raise errors[0]
    _raise_source_errors(lanes)


def _main_loop(lanes, serve, group, ready, stop, errors, status_interval_s: float, summary_interval_s: float) -> None:
    """Worker 0: serve ``group``, log the status line and the summaries on time, stop when a window asks; at the
    end, log each lane's last summary."""
    now = time.monotonic()
    next_status, next_summary = now + status_interval_s, now + summary_interval_s
    while not all(lane.done for lane in lanes) and not errors:
        serve.round(group, ready)
        now = time.monotonic()
        if now >= next_status:
            next_status = now + status_interval_s
            if not any(lane.bar is not None for lane in lanes):
                logger.info(status_line(lanes))
        if now >= next_summary:
            next_summary = now + summary_interval_s
            _log_summaries(lanes)
        if any(lane.quit_requested() for lane in lanes):
            stop.set()
    if not errors:
        _log_summaries(lanes)


def _log_summaries(lanes: Sequence[Lane]) -> None:
    for lane in lanes:
        lane.log_summary(f"{lane.name}: " if len(lanes) > 1 else "")


def _raise_source_errors(lanes: Sequence[Lane]) -> None:
    """Raise a failed capture's error: as it is with one source; with several, one line naming the failed ones."""
    errors = [lane.error for lane in lanes if lane.error is not None]
    if not errors:
        return
    first = errors[0]
    failed = [lane for lane in lanes if lane.error is not None]
    if len(lanes) > 1 and isinstance(first, MaskwatchError):
        names = ", ".join(lane.name for lane in failed)
        raise SourceError(f"{len(failed)} of {len(lanes)} sources failed ({names}); first: {first}") from None
    raise first


@dataclass
class _Serve:
    """What every worker does in one round: at most one batch of each of its sources."""

    shared: Sequence[Sink]
    renderer: OverlayRenderer | None
    poll_s: float
    batch_frames: int
    log_ends: bool

    def round(self, group: Sequence[Lane], ready: threading.Event) -> None:
        """One round-robin pass; waits up to ``poll_s`` when no source had a frame."""
        ready.clear()
        served = 0
        for lane in group:
            if lane.done:
                continue
            batch, ended = lane.take(self.batch_frames)
            if batch:
                lane.serve(batch, self.shared, self.renderer)
                served += 1
            if ended:
                lane.end(self.shared, log=self.log_ends)
        if not served:
            ready.wait(self.poll_s)


def _work(serve: _Serve, group, ready, stop: threading.Event, errors: list) -> None:
    """A helper worker: serve ``group`` until its sources end; an exception stops the run and is handed over."""
    try:
        while not all(lane.done for lane in group):
            serve.round(group, ready)
    except BaseException as exc:
        errors.append(exc)
        stop.set()


class _LockedSink:
    """A shared sink written by several workers: one lock around every write (the event log is single-writer)."""

    def __init__(self, sink: Sink, lock: threading.Lock) -> None:
        self.sink, self.lock = sink, lock
        self.data_only, self.takes_events = sink.data_only, sink.takes_events
        self.lazy = is_lazy(sink)

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        with self.lock:
            self.sink.write(result, annotated)

    def write_picture(self, result: FrameResult, picture: Picture) -> None:
        with self.lock:
            cast(PictureSink, self.sink).write_picture(result, picture)

    def close(self) -> None:
        """Closed by its owner, not here."""


def status_line(lanes: Sequence[Lane]) -> str:
    """One log line for all sources: ``door 12.0 fps 240 frames 3 dropped | lobby …`` (one source: its frames of
    all, fps, faces in view, and its dropped frames or the time left)."""
    if len(lanes) == 1:
        return _one_status_line(lanes[0])
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


def _one_status_line(lane: Lane) -> str:
    source, stats, fps = lane.source, lane.stats, lane.rate.fps
    done = f"{stats.frames}/{source.frame_count}" if source.frame_count else f"{stats.frames}"
    faces_now = len(lane.last[0].faces) if lane.last is not None else 0
    line = f"{lane.name}: {done} frames, {fps or 0:.1f} fps, {faces_now} faces in view"
    if source.is_live:
        line += f", {stats.dropped} dropped"
    elif source.frame_count and fps:
        line += f", ETA {max(source.frame_count - stats.frames, 0) / fps:.0f} s"
    return line
