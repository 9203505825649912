"""What a run reports about itself: the live status dict and the closing log line."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from maskwatch.capture.base import Source
    from maskwatch.monitor.base import FrameProcessor
    from maskwatch.runner.single import RunStats


def run_status(source: Source, stats: RunStats, process: FrameProcessor) -> dict:
    """The live status dict of the HTTP view and /metrics (``process``'s snapshot adds the people counts)."""
    status = {
        "source": source.name,
        "live": source.is_live,
        "uptime_s": round(time.monotonic() - stats.started, 1),
        "frames": stats.frames,
        "dropped": stats.dropped,
        "fps": round(stats.fps_now, 2),
        "stage_ms": {k: round(v, 2) for k, v in stats.stage_ms.items()},
        "outages": source.outages,
        "connected": source.connected,
    }
    status.update(process.snapshot())
    return status


def log_done(source: Source, stats: RunStats) -> None:
    """Log the run's closing summary line (and skipped inputs)."""
    counts = ", ".join(f"{k}={v}" for k, v in stats.counts.items())
    line = f"done: {stats.frames} frames in {stats.wall_s:.1f} s ({stats.fps:.1f} fps), {stats.faces} faces ({counts})"
    if source.is_live:
        ages = stats.age_percentiles()
        line += f", {stats.dropped} frames dropped"
        if ages:
            line += f", frame age median {ages['median_ms']:.0f} ms, p99 {ages['p99_ms']:.0f} ms"
        if source.outages:
            line += f", {source.outages} outage(s), {source.downtime_s:.0f} s down"
    logger.info(line)
    if source.skipped:
        logger.warning(f"{len(source.skipped)} unreadable image(s) skipped")
