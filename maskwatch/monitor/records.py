"""What the monitoring stage keeps about a run: one record per person, a timeline of who was in view, and the
compliance share; the end-of-run report (:mod:`maskwatch.outputs.report`) is written from them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PersonRecord:
    """One tracked person over the run; ``label`` is the final decided class name or None."""

    track_id: int
    first_s: float
    last_s: float
    frames: int
    label: str | None
    unmasked: bool
    alerts: int


@dataclass
class TimelinePoint:
    """Confirmed people in view at ``t_s`` seconds into the source, split by their decided label."""

    t_s: float
    in_view: int
    with_mask: int
    without_mask: int
    incorrect: int
    undecided: int


def compliance(with_mask: int, without_mask: int, incorrect: int) -> float | None:
    """Share of decided people wearing a mask correctly; None when nobody is decided."""
    decided = with_mask + without_mask + incorrect
    return with_mask / decided if decided > 0 else None
