"""The outcome of each video of ``maskwatch batch`` and the end-of-batch table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TaskResult:
    """One video's outcome, as the summary table shows it."""

    video: str
    status: str  # "done", "skipped" (already done) or "failed"
    frames: int = 0
    fps: float = 0.0
    people: int = 0
    alerts: int = 0
    attempts: int = 0
    error: str = ""
    task_s: float = 0.0
    """Whole task time, model loading included (``fps`` is the run's own, as ``maskwatch run`` reports it)."""
    stage_s: dict = field(default_factory=dict)
    """Task seconds by stage (analyse, stitch, render, finish)."""


def summary_lines(table: list[TaskResult]) -> list[str]:
    """The end-of-batch table: file, frames, fps, people, alerts, status."""
    lines = [f"{'file':<32} {'frames':>7} {'fps':>6} {'task s':>7} {'people':>6} {'alerts':>6}  status"]
    for r in table:
        status = r.status if r.status != "failed" else f"FAILED after {r.attempts} attempt(s): {r.error}"
        name = Path(r.video).name[:32]
        lines.append(f"{name:<32} {r.frames:>7} {r.fps:>6.1f} {r.task_s:>7.1f} {r.people:>6} {r.alerts:>6}  {status}")
    failed = sum(r.status == "failed" for r in table)
    lines.append(
        f"{len(table)} videos: {sum(r.status == 'done' for r in table)} done, "
        f"{sum(r.status == 'skipped' for r in table)} skipped, {failed} failed"
    )
    return lines
