"""A change detector on a track's classifier probabilities: a person who puts a mask on or takes it off.

The vote window (:meth:`maskwatch.monitor.track.Track.vote`) decides a label and keeps it against noise, but
a majority of a window of about 2 s follows a real change only after about a second. :class:`LabelChange` runs
beside it a CUSUM per class (Page, 1954) on the margin of that class over the decided label, weighted by the time
between classifications: it grows by ``(p_other - p_label - margin) * dt`` and never falls below zero. Another
class takes over once its sum reaches ``evidence`` (probability-seconds) *and* the last ``confirm`` classifications
all chose it: a clear change (a margin of 0.6) is followed within about 0.2 s, a classifier that wavers around the
decided label (its mean margin below ``margin``) never accumulates, and one odd frame is never enough.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

MAX_DT_S = 0.25
"""Longest time one classification stands for (a gap in detections does not count as evidence)."""


@dataclass
class LabelChange:
    """Per-track state of the change detector; :meth:`update` says which class takes over, if any."""

    margin: float = 0.1
    evidence: float = 0.08
    confirm: int = 2
    sums: np.ndarray | None = None
    last_ts: float | None = None
    recent: deque = field(default_factory=lambda: deque(maxlen=8))  # the latest classifications' classes

    def update(self, label: int, class_id: int, prob: np.ndarray, ts: float | None) -> int | None:
        """Add one classification (``prob`` of every class at time ``ts`` s) against the decided ``label`` (a
        class id, or negative when undecided); returns the class that takes over, or None."""
        self.recent.append(int(class_id))
        dt = 0.0 if ts is None or self.last_ts is None else min(max(ts - self.last_ts, 0.0), MAX_DT_S)
        self.last_ts = ts if ts is not None else self.last_ts
        prob = np.asarray(prob, np.float64)
        if label < 0 or ts is None:
            self.sums = None
            return None
        if self.sums is None:
            self.sums = np.zeros(len(prob))
        self.sums = np.maximum(self.sums + (prob - prob[label] - self.margin) * dt, 0.0)
        self.sums[label] = 0.0
        best = int(np.argmax(self.sums))
        chosen = list(self.recent)[-self.confirm :]
        if self.sums[best] >= self.evidence and len(chosen) == self.confirm and all(c == best for c in chosen):
            self.sums[:] = 0.0
            return best
        return None
