"""What a run reports about itself: the live status of the HTTP view and /metrics, and the closing log line."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from loguru import logger

from maskwatch.monitor.base import PeopleStatus
from maskwatch.types import UNDECIDED_KEY, MaskClass

if TYPE_CHECKING:
    from maskwatch.capture.base import Source
    from maskwatch.runner.lane import Lane
    from maskwatch.runner.stats import RunStats


@dataclass(frozen=True)
class SourceStatus:
    """One source's live numbers: ``fps`` (processed, moving average), frames and drops so far, whether it delivers
    (``connected``), outages, each stage's milliseconds per frame, and its people numbers (None untracked)."""

    name: str
    live: bool
    connected: bool
    fps: float
    frames: int
    dropped: int
    outages: int
    stage_ms: dict[str, float]
    people: PeopleStatus | None = None

    def to_json(self) -> dict:
        row = {
            "name": self.name,
            "live": self.live,
            "connected": self.connected,
            "fps": self.fps,
            "frames": self.frames,
            "dropped": self.dropped,
            "outages": self.outages,
            "stage_ms": dict(self.stage_ms),
        }
        return row | (asdict(self.people) if self.people is not None else {})


@dataclass(frozen=True)
class RunStatus:
    """A run's live status (``/status``, ``/metrics``, the page): its sources; ``per_source`` when several are
    served (then ``/status`` has totals on top and a row per source, and metrics a ``source`` label)."""

    uptime_s: float
    sources: tuple[SourceStatus, ...]
    per_source: bool = False

    @property
    def source(self) -> str:
        return ", ".join(s.name for s in self.sources)

    def to_json(self) -> dict:
        """The ``/status`` document: one source's numbers, or totals and ``sources`` rows."""
        if not self.per_source:
            row = self.sources[0].to_json()
            first = {"source": row.pop("name"), "live": row.pop("live"), "uptime_s": self.uptime_s}
            return first | row
        rows = [s.to_json() for s in self.sources]
        return {
            "source": self.source,
            "uptime_s": self.uptime_s,
            "fps": round(sum(s.fps for s in self.sources), 2),
            "frames": sum(s.frames for s in self.sources),
            "dropped": sum(s.dropped for s in self.sources),
            "people_now": sum(s.people.people_now for s in self.sources if s.people is not None),
            "alerts": sum(s.people.alerts for s in self.sources if s.people is not None),
            "sources": rows,
        }


def source_status(lane: Lane) -> SourceStatus:
    """One lane's :class:`SourceStatus` now."""
    stats = lane.stats
    return SourceStatus(
        name=lane.name,
        live=lane.source.is_live,
        connected=bool(lane.source.connected) and not lane.done,
        fps=round(stats.fps_now, 2),
        frames=stats.frames,
        dropped=stats.dropped,
        outages=lane.source.outages,
        stage_ms={k: round(v, 2) for k, v in stats.stage_ms.items()},
        people=lane.process.people_status(),
    )


def view_status(lanes: Sequence[Lane], started: float, *, per_source: bool) -> RunStatus:
    """The run's :class:`RunStatus` now (``started``: the run's start, ``time.monotonic()``)."""
    sources = tuple(source_status(lane) for lane in lanes)
    return RunStatus(uptime_s=round(time.monotonic() - started, 1), sources=sources, per_source=per_source)


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
