"""One source: capture → pipeline → render → sinks, the one-lane case of :func:`maskwatch.runner.lanes.run_sources`.

Nothing here can hang: every queue operation has a timeout or a stop check, a failing thread's exception
reaches the caller, and sinks are closed by the caller's ``with`` on every exit path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from maskwatch.capture.base import Source
from maskwatch.monitor.base import FrameProcessor
from maskwatch.outputs.render import OverlayRenderer
from maskwatch.outputs.sinks import Sink
from maskwatch.runner.lane import Lane
from maskwatch.runner.lanes import run_sources
from maskwatch.runner.stats import RunStats


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
    lane = Lane(source.name, source, process, list(sinks), stats=stats or RunStats(), summary=summary)
    run_sources(
        [lane],
        [],
        renderer,
        stop=stop,
        queue_size=queue_size,
        live_queue_size=live_queue_size,
        read_timeout_s=read_timeout_s,
        status_interval_s=status_interval_s,
        summary_interval_s=summary_interval_s,
        poll_s=poll_s,
        batch_frames=batch_frames,
        progress=progress,
    )
    return lane.stats
