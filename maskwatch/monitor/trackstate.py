"""A tracked face's state: its box and motion model, its label vote and the life meter's signs.

:class:`Track` is written by the tracker (:mod:`maskwatch.monitor.track`), except ``signs``, which only the life
meter (:mod:`maskwatch.monitor.static`) writes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from maskwatch.monitor.vote import LabelChange
from maskwatch.types import CLASS_NAMES, UNDECIDED

TENTATIVE, TRACKED, LOST, DORMANT = "tentative", "tracked", "lost", "dormant"
_NUM_CLASSES = len(CLASS_NAMES)


@dataclass
class LifeSigns:
    """What the life meter (:class:`~maskwatch.monitor.static.LifeMeter`, its only writer) knows of a track: whether
    it moved in the scene. Everything else reads it through :attr:`Track.live` and :attr:`Track.static`."""

    anchor: np.ndarray | None = None  # where a face fixed in the scene would be now
    seen_box: np.ndarray | None = None  # the box on the last detector frame seen
    seen_frame: int = -1
    drift: np.ndarray = field(default_factory=lambda: np.zeros(2))  # moved against the scene (px)
    flow_points: np.ndarray | None = None  # face points followed by optical flow
    steps: deque = field(default_factory=lambda: deque(maxlen=5))  # recent drift steps (px)
    changes: deque = field(default_factory=lambda: deque(maxlen=16))  # (ts, share of the face changed inside)
    evidence: float = 0.0  # largest evidence of life seen (1: enough)
    live: bool = False  # has shown life (moved in the scene): a person
    static: bool = False  # no life for tracking.static_after_s: a poster, a screen
    placed: int = 0  # the track's ``placed`` count these signs were gathered for


@dataclass
class Track:
    """One tracked face. ``track_id`` is ``NO_TRACK`` until the track is confirmed as a person.

    ``xyxy`` is the last matched detection's box, or the motion prediction while lost or between detections
    (once the track has ended it is the last detected box again). The tracker writes every field but ``signs``,
    which only the life meter writes; ``placed`` counts the times re-identification moved the track to a new
    place (the life meter then judges it afresh).
    """

    track_id: int
    xyxy: np.ndarray
    score: float
    first_frame: int
    last_frame: int
    first_ts: float
    last_ts: float
    hits: int = 1
    label: int = UNDECIDED
    confidence: float = 0.0
    state: str = TENTATIVE
    det_xyxy: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    mean: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    cov: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    votes: deque = field(default_factory=deque, repr=False)
    feature: np.ndarray | None = field(default=None, repr=False)  # appearance signature (reid)
    placed: int = 0
    signs: LifeSigns = field(default_factory=LifeSigns, repr=False)
    change: LabelChange = field(default_factory=LabelChange, repr=False)

    @property
    def live(self) -> bool:
        """Whether the track has shown life (moved in the scene): a person."""
        return self.signs.live

    @property
    def static(self) -> bool:
        """Whether the track has shown no life for ``tracking.static_after_s``: a poster, a screen."""
        return self.signs.static

    @property
    def duration_s(self) -> float:
        return self.last_ts - self.first_ts

    @property
    def confirmed(self) -> bool:
        return self.state != TENTATIVE

    @property
    def mean_prob(self) -> np.ndarray:
        """Class probabilities averaged over the vote window (zeros without votes)."""
        if not self.votes:
            return np.zeros(_NUM_CLASSES, np.float32)
        return np.mean([prob for _, prob in self.votes], axis=0).astype(np.float32)

    def vote(
        self, class_id: int, prob: np.ndarray, *, threshold: float, min_votes: int, ts: float | None = None
    ) -> None:
        """Add one classification (made at ``ts`` s) and re-decide the label: it changes when another class wins
        the window, or at once when the change detector (:class:`~maskwatch.monitor.vote.LabelChange`) sees the
        person change (the window then keeps only the votes since)."""
        self.votes.append((int(class_id), np.asarray(prob, np.float32).copy()))
        switched = self.change.update(self.label, int(class_id), prob, ts)
        if switched is not None:
            kept = list(self.votes)[-self.change.confirm :]
            self.votes.clear()
            self.votes.extend(kept)
            self.label = switched
        counts = np.bincount([c for c, _ in self.votes], minlength=_NUM_CLASSES)
        best = int(np.argmax(counts))
        if counts[best] >= min_votes and counts[best] / len(self.votes) >= threshold:
            self.label = best
        if self.label != UNDECIDED:
            self.confidence = float(np.mean([prob[self.label] for _, prob in self.votes]))
