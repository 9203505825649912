"""What a run reports about itself: the live status dict and the closing log line."""

from __future__ import annotations

from loguru import logger


def run_status(source, stats, monitor) -> dict:
    """The live status dict of the HTTP view and /metrics."""
    import time

    status = {
        "source": source.name,
        "live": source.is_live,
        "uptime_s": round(time.monotonic() - stats.started, 1),
        "frames": stats.frames,
        "dropped": stats.dropped,
        "fps": round(stats.fps_now, 2),
        "stage_ms": {k: round(v, 2) for k, v in stats.stage_ms.items()},
        "outages": getattr(source, "outages", 0),
        "connected": getattr(source, "connected", True),
    }
    if monitor is not None:
        status.update(monitor.snapshot())
    return status


def log_done(source, stats) -> None:
    """Log the run's closing summary line (and skipped inputs)."""
    counts = ", ".join(f"{k}={v}" for k, v in stats.counts.items())
    line = f"done: {stats.frames} frames in {stats.wall_s:.1f} s ({stats.fps:.1f} fps), {stats.faces} faces ({counts})"
    if source.is_live:
        ages = stats.age_percentiles()
        line += f", {stats.dropped} frames dropped"
        if ages:
            line += f", frame age median {ages['median_ms']:.0f} ms, p99 {ages['p99_ms']:.0f} ms"
        if getattr(source, "outages", 0):
            line += f", {source.outages} outage(s), {source.downtime_s:.0f} s down"
    logger.info(line)
    skipped = getattr(source, "skipped", [])
    if skipped:
        logger.warning(f"{len(skipped)} unreadable image(s) skipped")
