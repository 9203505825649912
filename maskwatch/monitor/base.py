"""The processing stage's door: what the runner calls on it, frame by frame and at the end.

:class:`~maskwatch.monitor.pipeline.FacePipeline` (detect and classify only) and
:class:`~maskwatch.monitor.monitor.Monitor` (the pipeline with tracking, events and people counts) both implement
all of it; where a stage has nothing to do, its method does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from maskwatch.types import Event, Frame, FrameResult


@dataclass(frozen=True)
class LineTally:
    """A counting line's crossings so far: ``entered`` (to its inside) and ``exited``."""

    name: str
    entered: int = 0
    exited: int = 0


@dataclass(frozen=True)
class PeopleStatus:
    """A tracked source's live people numbers, for the status views and ``/metrics``.

    ``compliance``: the share of decided people wearing a mask correctly (None before anyone is decided).
    With zones, only the people counted in them are in these numbers. ``entered`` / ``exited``: crossings of all
    counting lines, ``lines`` per line (empty without lines).
    """

    people_now: int
    people_total: int
    unmasked_total: int
    alerts: int
    compliance: float | None
    detect_every: int
    entered: int = 0
    exited: int = 0
    lines: tuple[LineTally, ...] = ()


class FrameProcessor(Protocol):
    """Turns captured frames into results for the renderer and the sinks."""

    def __call__(self, frame: Frame) -> FrameResult:
        """Process one frame."""
        ...

    def process_batch(self, frames: list[Frame]) -> list[FrameResult]:
        """Process several frames in order (the models run them as one batch where they can)."""
        ...

    def observe(self, busy_ms: float, detected: bool) -> None:
        """Told each frame's busy time (process + render + sinks) and whether the detector ran on it."""
        ...

    def finish(self) -> list[Event]:
        """The input ended: the last events (e.g. every remaining track's ``end``)."""
        ...

    def people_status(self) -> PeopleStatus | None:
        """Live people numbers for the status views; None without tracking."""
        ...

    def summary_line(self) -> str | None:
        """The periodic summary log line, or None when there is nothing to summarise."""
        ...
