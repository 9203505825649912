"""What a run reports about itself: the live status of the HTTP view and /metrics, and the closing log line."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from loguru import logger

from maskwatch.types import UNDECIDED_KEY, MaskClass

if TYPE_CHECKING:
    from maskwatch.capture.base import Source
    from maskwatch.runner.lane import Lane
    from maskwatch.runner.stats import RunStats


def lane_status(lane: Lane) -> dict:
    """One source's live numbers: name, fps, frames, dropped, connected, people, alerts …"""
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


def view_status(lanes: Sequence[Lane], started: float, *, per_source: bool) -> dict:
    """The HTTP view's status: one source's numbers, or (``per_source``) totals on top and a row per source."""
    uptime_s = round(time.monotonic() - started, 1)
    rows = [lane_status(lane) for lane in lanes]
    if not per_source:
        row = rows[0]
        return {"source": row.pop("name"), "uptime_s": uptime_s, **row}
    return {
        "source": ", ".join(lane.name for lane in lanes),
        "uptime_s": uptime_s,
        "fps": round(sum(r["fps"] for r in rows), 2),
        "frames": sum(r["frames"] for r in rows),
        "dropped": sum(r["dropped"] for r in rows),
        "people_now": sum(r.get("people_now", 0) for r in rows),
        "alerts": sum(r.get("alerts", 0) for r in rows),
        "sources": rows,
    }


def face_counts(counts: dict[str, int]) -> str:
    """Faces per class, readable (``mask 3, no mask 1, mask worn incorrectly 0, undecided 2``): every face once."""
    parts = [f"{c.description} {counts.get(c.key, 0)}" for c in MaskClass]
    return ", ".join([*parts, f"{UNDECIDED_KEY} {counts.get(UNDECIDED_KEY, 0)}"])


def log_done(source: Source, stats: RunStats, *, prefix: str = "") -> None:
    """Log a source's closing summary line (and skipped inputs); ``prefix`` names the source among several."""
    line = f"{prefix}done: {stats.frames} frames in {stats.wall_s:.1f} s (processed at {stats.fps:.1f} frames/s)"
    line += f", {stats.faces} faces ({face_counts(stats.counts)})"
    if source.is_live:
        ages = stats.age_percentiles()
        line += f", {stats.dropped} frames dropped"
        if ages:
            line += f", frame age median {ages['median_ms']:.0f} ms, p99 {ages['p99_ms']:.0f} ms"
        if source.outages:
            line += f", {source.outages} outage(s), {source.downtime_s:.0f} s down"
    logger.info(line)
    if source.skipped:
        logger.warning(f"{prefix}{len(source.skipped)} unreadable image(s) skipped")
