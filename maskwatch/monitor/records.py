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


COMPLIANCE = "people never seen without a mask or wearing it incorrectly, of those with a decided label"
"""What a run's compliance share counts, as the summary line and the report say it."""


def compliance(decided: int, unmasked: int) -> float | None:
    """A run's compliance: the share of the people with a decided label who were never seen unmasked (without a
    mask, or wearing it incorrectly) while in view; None when nobody is decided. Someone who took the mask off for
    a while and put it back on is not compliant."""
    return (decided - unmasked) / decided if decided > 0 else None


def masked_share(with_mask: int, without_mask: int, incorrect: int) -> float | None:
    """At one moment: the share of the decided people in view wearing a mask correctly; None when nobody is."""
    decided = with_mask + without_mask + incorrect
    return with_mask / decided if decided > 0 else None
