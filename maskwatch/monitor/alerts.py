"""The alert policy: turns a tracker's tracks into ``alert`` / ``update`` / ``end`` events, frame by frame.

It decides; the event outputs (:mod:`maskwatch.outputs.events`) write what it decided.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Literal, Protocol

import numpy as np

from maskwatch.types import CLASS_NAMES, UNDECIDED, Event, EventKind, MaskClass


def utc_now() -> str:
    """The current time as ISO 8601 UTC with milliseconds (``2026-11-26T10:00:00.123Z``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


DEFAULT_ALERT_LABELS: tuple[str, ...] = tuple(c.key for c in MaskClass if c.alerts)
"""The decided labels that alert unless configured otherwise: no mask, and a mask worn incorrectly."""


class TrackLike(Protocol):
    """What the policy reads from a tracker's track (see ``maskwatch.monitor.track.Track``), and all it reads."""

    @property
    def track_id(self) -> int: ...

    @property
    def xyxy(self) -> np.ndarray: ...

    @property
    def label(self) -> int:
        """The decided class id, or ``UNDECIDED``."""
        ...

    @property
    def confidence(self) -> float:
        """The mean probability of ``label`` over the vote window."""
        ...

    @property
    def last_frame(self) -> int: ...

    @property
    def duration_s(self) -> float: ...

    @property
    def live(self) -> bool:
        """Has shown life (moved in the scene): a person, who may alert."""
        ...

    @property
    def static(self) -> bool:
        """Never showed life while followed for a while: a poster or a screen, which raises no event."""
        ...


class AlertPolicy:
    """Decides which events a frame produces.

    - ``alert``: a track is decided one of ``alert_labels``, has been seen ``min_duration_s`` and has shown life
      (``track.live``: moved in the scene), with a mean
      probability of that label (``track.confidence``) of at least ``min_confidence``. A track alerts
      once; it may alert again only after ``cooldown_s`` and after having been decided masked in between. A person
      the tracker re-identifies after a gap keeps their id, so they keep their alert state too.
    - Static tracks (``track.static``: posters, screens) raise no event at all.
    - ``update`` (optional): a track's decided label changed from one class to another.
    - ``end`` (optional): a confirmed track left (lost for longer than the tracker keeps it); the monitor passes
      only the tracks that counted as people.
    """

    def __init__(
        self,
        source: str,
        *,
        alert_labels: Iterable[str] = DEFAULT_ALERT_LABELS,
        min_duration_s: float = 1.0,
        min_confidence: float = 0.0,
        cooldown_s: float = 300.0,
        updates: bool = True,
        ends: bool = True,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.source = source
        self.alert_ids = {CLASS_NAMES.index(name) for name in alert_labels}
        self.min_duration_s = min_duration_s
        self.min_confidence = min_confidence
        self.cooldown_s = cooldown_s
        self.updates = updates
        self.ends = ends
        self.clock = clock
        self.alerts = 0
        self._label: dict[int, int] = {}
        self._last_alert_s: dict[int, float] = {}
        self._masked_since_alert: dict[int, bool] = {}
        self.alerts_by_track: dict[int, int] = {}

    def step(self, frame_index: int, ts: float, tracks: Sequence[TrackLike], ended: Sequence[TrackLike]) -> list[Event]:
        """Events for one frame: ``tracks`` are the alive confirmed tracks, ``ended`` the ones that just left."""
        events: list[Event] = []
        for track in tracks:
            if track.last_frame != frame_index or track.label == UNDECIDED or track.static:
                continue  # only act on what was seen on this frame, never on a poster
            tid, label = track.track_id, int(track.label)
            previous = self._label.get(tid, UNDECIDED)
            self._label[tid] = label
            if previous not in (UNDECIDED, label) and self.updates:
                events.append(self._event("update", frame_index, ts, track))
            if label not in self.alert_ids:
                if tid in self._last_alert_s:
                    self._masked_since_alert[tid] = True
                continue
            if track.duration_s < self.min_duration_s or not track.live:
                continue  # seen too briefly, or not shown life yet (it may be a poster)
            if track.confidence < self.min_confidence:
                continue  # the classifier is not sure (a false alarm, a picture, an odd mask): no alert yet
            last = self._last_alert_s.get(tid)
            if last is not None and not (self._masked_since_alert.get(tid) and ts - last >= self.cooldown_s):
                continue
            self._last_alert_s[tid] = ts
            self._masked_since_alert[tid] = False
            self.alerts += 1
            self.alerts_by_track[tid] = self.alerts_by_track.get(tid, 0) + 1
            events.append(self._event("alert", frame_index, ts, track))
        for track in ended:
            if self.ends and not track.static:
                events.append(self._event("end", frame_index, ts, track))
        self.forget(track.track_id for track in ended)
        return events

    def forget(self, track_ids: Iterable[int]) -> None:
        """Drop what is kept about tracks that left (``step`` does it for its ``ended``; the monitor for the tracks
        that left without being a person, which get no ``end``)."""
        for tid in track_ids:
            for table in (self._label, self._last_alert_s, self._masked_since_alert):
                table.pop(tid, None)

    def _event(self, kind: EventKind, frame_index: int, ts: float, track: TrackLike) -> Event:
        return track_event(kind, self.source, self.clock(), frame_index, ts, track)


def track_event(
    kind: EventKind,
    source: str,
    stamp: str,
    frame_index: int,
    ts: float,
    track: TrackLike,
    *,
    line: str | None = None,
    direction: Literal["in", "out"] | None = None,
) -> Event:
    """The event of ``kind`` about ``track`` on frame ``frame_index`` (``ts`` s into the source), stamped ``stamp``
    (ISO 8601 UTC); ``line`` and ``direction`` for a ``cross``."""
    label = None if track.label == UNDECIDED else CLASS_NAMES[int(track.label)]
    return Event(
        event=kind,
        ts=stamp,
        source=source,
        frame=frame_index,
        track_id=int(track.track_id),
        label=label,
        confidence=float(track.confidence),
        box=[float(v) for v in track.xyxy],
        duration_s=float(track.duration_s),
        t_s=ts,
        line=line,
        direction=direction,
    )
