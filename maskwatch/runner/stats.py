"""A run's counters: what each source did (``RunStats``) and its live frame rate (``FrameRate``)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from maskwatch.types import FrameResult


@dataclass
class RunStats:
    """What a run did, updated live. ``ages_ms``: how old each frame was when its result reached the sinks.

    ``fps_now`` and ``stage_ms`` (moving averages of each stage's milliseconds) feed the status views.
    ``stopped_early``: the run was stopped (a signal, the window closed) before its source ended.
    """

    frames: int = 0
    dropped: int = 0
    faces: int = 0
    wall_s: float = 0.0
    stopped_early: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    ages_ms: deque = field(default_factory=lambda: deque(maxlen=100_000))
    fps_now: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def average(self, stage: str, ms: float) -> None:
        old = self.stage_ms.get(stage)
        self.stage_ms[stage] = ms if old is None else 0.9 * old + 0.1 * ms

    def record(self, result: FrameResult, render_ms: float, sinks_ms: float, fps: float | None, age_ms: float) -> None:
        """Count one written frame: its stage times, faces and classes, the live fps and the frame's age."""
        for name, ms in result.timings_ms.items():
            self.average(name.removesuffix("_ms"), ms)
        self.average("render", render_ms)
        self.average("sinks", sinks_ms)
        self.fps_now = fps or 0.0
        self.frames += 1
        self.faces += len(result.faces)
        for name, n in result.faces.counts().items():
            self.counts[name] = self.counts.get(name, 0) + n
        self.ages_ms.append(age_ms)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def age_percentiles(self) -> dict[str, float]:
        if not self.ages_ms:
            return {}
        ages = np.fromiter(self.ages_ms, dtype=np.float64)
        return {"median_ms": float(np.median(ages)), "p99_ms": float(np.percentile(ages, 99))}


class FrameRate:
    """Frames per second for the HUD and status: the inverse of a moving average of frame intervals."""

    def __init__(self) -> None:
        self.fps: float | None = None
        self._interval: float | None = None
        self._last: float | None = None

    def tick(self, now: float) -> float | None:
        if self._last is not None and now > self._last:
            dt = now - self._last
            self._interval = dt if self._interval is None else 0.9 * self._interval + 0.1 * dt
            self.fps = 1.0 / self._interval
        self._last = now
        return self.fps
