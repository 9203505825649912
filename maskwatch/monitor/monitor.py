"""The monitoring stage: detect (every Nth frame), classify, track, and decide events; keeps the people counts.

A :class:`Monitor` is a :class:`~maskwatch.monitor.base.FrameProcessor` for the runner, like the pipeline it wraps.
On frames where the detector does not run, the tracker's motion model carries every person's box, so a slow CPU
still shows every frame. With a :class:`~maskwatch.monitor.static.LifeMeter`, a track is counted as a person and
may alert once it has shown life (on an input shorter than ``static_after_s``, every face it shows is counted).
A static track (a poster) is shown as an untracked grey face and never counted.

With zones (:mod:`maskwatch.monitor.zones`), only people seen in them are counted and alerted; the others are still
tracked. With counting lines (:mod:`maskwatch.monitor.lines`), every visible person is watched for crossings, which
become ``cross`` events beside the alert policy's.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import asdict, replace

import cv2
import numpy as np
from loguru import logger

from maskwatch.monitor.alerts import AlertPolicy
from maskwatch.monitor.base import PeopleStatus
from maskwatch.monitor.lines import LineCounter
from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.monitor.records import COMPLIANCE, PersonRecord, TimelinePoint, compliance
from maskwatch.monitor.static import CameraMotion, LifeMeter, all_live
from maskwatch.monitor.track import FaceTracker, Track, TrackStep
from maskwatch.monitor.zones import ZoneSet
from maskwatch.types import (
    CLASS_NAMES,
    NO_TRACK,
    UNDECIDED,
    UNDECIDED_KEY,
    Event,
    FaceDetections,
    Frame,
    FrameResult,
    MaskClass,
)


class StrideControl:
    """Chooses how often the detector runs.

    Fixed at ``detect_every`` unless ``auto``: then, from the measured busy time of detection frames and of
    track-only frames, the smallest stride that fits the source's frame interval (with 10 % headroom), capped at
    ``max_every``. It rises at once and falls only after three evaluations agree, so it does not oscillate.
    """

    def __init__(
        self, detect_every: int = 1, *, auto: bool = False, max_every: int = 4, frame_interval_s: float = 0.04
    ) -> None:
        self.every = detect_every
        self.minimum = detect_every
        self.auto = auto
        self.max_every = max(max_every, detect_every)
        self.budget_ms = frame_interval_s * 1e3
        self.detect_ms: float | None = None
        self.track_ms: float | None = None
        self._since = 0
        self._observed = 0
        self._lower_votes = 0

    def should_detect(self, index: int | None = None) -> bool:
        """True when this frame gets the detector. A fixed stride follows the frame ``index`` (every Nth frame of the
        input, so a file analysed in chunks detects on the same frames as in one run); otherwise, and without an
        index, every Nth frame from the first."""
        if index is not None and not self.auto:
            return index % self.every == 0
        if self._since % self.every == 0:
            self._since = 1
            return True
        self._since += 1
        return False

    def observe(self, busy_ms: float, detected: bool) -> None:
        """Feed one frame's busy time (process + render + sinks); re-evaluates every 10 frames."""
        if detected:
            self.detect_ms = busy_ms if self.detect_ms is None else 0.8 * self.detect_ms + 0.2 * busy_ms
        else:
            self.track_ms = busy_ms if self.track_ms is None else 0.8 * self.track_ms + 0.2 * busy_ms
        self._observed += 1
        if self.auto and self._observed % 10 == 0:
            self._evaluate()

    def needed(self) -> int:
        """The stride the measured costs call for."""
        if self.detect_ms is None:
            return self.every
        budget = 0.9 * self.budget_ms
        track = self.track_ms if self.track_ms is not None else 0.1 * self.detect_ms
        if self.detect_ms <= budget:
            return self.minimum
        if track >= budget:
            return self.max_every
        return min(max(math.ceil((self.detect_ms - track) / (budget - track)), self.minimum), self.max_every)

    def _evaluate(self) -> None:
        target = self.needed()
        if target > self.every:
            self._set(target)
        elif target < self.every:
            self._lower_votes += 1
            if self._lower_votes >= 3:
                self._set(target)
        else:
            self._lower_votes = 0

    def _set(self, every: int) -> None:
        logger.info(
            f"detecting on every {every} frame(s): detection frames take {self.detect_ms:.0f} ms, "
            f"the source sends one every {self.budget_ms:.0f} ms"
        )
        self.every = every
        self._lower_votes = 0


class Monitor:
    """``process(frame) -> FrameResult`` with tracking, label voting, alert events and people statistics.

    ``zones``: only people whose face centre is in them count (people numbers, report) and alert; ``lines``: the
    counting lines' crossings (``cross`` events and the ``entered`` / ``exited`` numbers).
    """

    def __init__(
        self,
        pipeline: FacePipeline,
        tracker: FaceTracker,
        policy: AlertPolicy | None = None,
        stride: StrideControl | None = None,
        *,
        life: LifeMeter | None = None,
        zones: ZoneSet | None = None,
        lines: LineCounter | None = None,
        timeline_step_s: float = 0.5,
        max_records: int = 50_000,
        max_timeline: int = 20_000,
    ) -> None:
        self.pipeline = pipeline
        self.tracker = tracker
        self.policy = policy
        self.stride = stride or StrideControl()
        self.life = life
        self.camera = CameraMotion() if life is not None else None
        self.zones = zones if zones else None
        self.lines = lines if lines else None
        self.timeline_step_s = timeline_step_s
        # bounded, so a run of weeks keeps a flat memory: counts stay exact, records keep the latest
        self.people: deque[PersonRecord] = deque(maxlen=max_records)
        self.timeline: list[TimelinePoint] = []
        self.events: deque[Event] = deque(maxlen=max_records)
        self.max_timeline = max_timeline
        self._final_labels: Counter[str] = Counter()
        self._unmasked: set[int] = set()
        self._t0: float | None = None
        self._last_index = -1
        self._last_ts = 0.0
        self._next_sample = 0.0
        self._in_view = 0
        self._unmasked_ended = 0
        self._people_total = 0
        self._counted: set[int] = set()  # ids of the people counted so far (a track counts once it shows life)
        self._ever_inside: set[int] = set()  # with zones: ids of the tracks seen in them (they alone may count)

    def __call__(self, frame: Frame) -> FrameResult:
        detected = self.stride.should_detect(frame.index)
        return self._track(frame, self.pipeline(frame, self.tracker.low_score) if detected else None)

    def process_batch(self, frames: list[Frame]) -> list[FrameResult]:
        """:meth:`__call__` for frames in order, the detector's frames run as one batch (GPU, consumer behind)."""
        detect = [self.stride.should_detect(f.index) for f in frames]
        chosen = [f for f, d in zip(frames, detect, strict=True) if d]
        found = iter(self.pipeline.process_batch(chosen, self.tracker.low_score))
        return [self._track(f, next(found) if d else None) for f, d in zip(frames, detect, strict=True)]

    def _track(self, frame: Frame, result: FrameResult | None) -> FrameResult:
        """Track one frame: with the pipeline's ``result`` (detected) or by prediction alone (``None``)."""
        if self._t0 is None:
            self._t0 = frame.timestamp_s
        t = frame.timestamp_s - self._t0
        timings: dict[str, float] = dict(result.timings_ms) if result is not None else {}
        t0 = time.perf_counter()
        if result is not None:
            matrix: np.ndarray | None = np.eye(2, 3)
            gray: np.ndarray | None = None
            if self.camera is not None:
                pixels = frame.image
                gray = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY) if pixels.ndim == 3 else pixels
                matrix = self.camera.update(gray, result.faces.xyxy)
            image = frame.image if self.tracker.reid else None
            step = self.tracker.update(result.faces, frame.index, t, image=image, cut=matrix is None)
            if self.life is not None and gray is not None:  # the camera's gray frame: there with a life meter
                self.life.observe(gray, self.tracker.tracks, frame.index, matrix)
        else:
            step = self.tracker.predict(frame.index, t)
        if self.life is None:
            all_live(self.tracker.tracks)
        h, w = frame.image.shape[:2]
        rows = self.counting_rows(step.faces, (w, h))
        events = self._decide(frame.index, t, step, {int(i) for i in step.faces.track_id[rows]}, (w, h))
        timings["track_ms"] = (time.perf_counter() - t0) * 1e3
        self._sample(t, step.faces[rows])
        self._in_view = int(rows.sum())
        self._last_index, self._last_ts = frame.index, t
        return FrameResult(
            frame=frame, faces=step.faces, timings_ms=timings, detected=result is not None, events=events
        )

    def observe(self, busy_ms: float, detected: bool) -> None:
        """The runner reports each frame's total busy time here (drives the automatic stride)."""
        self.stride.observe(busy_ms, detected)

    def counting_rows(self, faces: FaceDetections, size_wh: tuple[int, int]) -> np.ndarray:
        """Which rows of a frame's ``faces`` are people who count now: tracked, and in the zones if there are any."""
        rows = faces.track_id != NO_TRACK
        return rows & self.zones.counted(faces.xyxy, size_wh) if self.zones is not None else rows

    def _decide(
        self, frame_index: int, t: float, step: TrackStep, inside: set[int], size_wh: tuple[int, int]
    ) -> list[Event]:
        """Count, alert and watch the lines on one frame; ``inside``: the ids of the people who count on it."""
        alive = self.tracker.tracks
        zoned = self.zones is not None
        if zoned:
            self._ever_inside |= inside
        for track in alive:
            if not track.live or (zoned and track.track_id not in inside):
                continue
            if track.track_id not in self._counted:
                self._counted.add(track.track_id)
                self._people_total += 1
            if track.label != UNDECIDED and MaskClass(track.label).alerts:
                self._unmasked.add(track.track_id)
        watched = [track for track in alive if track.track_id in inside] if zoned else alive
        people = self._people_of(step.ended)
        events = self._policy_step(frame_index, t, watched, step.ended, people)
        if self.lines is not None:
            visible = {int(i) for i in step.faces.track_id if i != NO_TRACK}
            events += self.lines.step(frame_index, t, [tr for tr in alive if tr.track_id in visible], size_wh)
            self.lines.forget(track.track_id for track in step.ended)
        return self._conclude(events, step.ended, people)

    def _people_of(self, ended: list[Track]) -> list[Track]:
        """The ``ended`` tracks that count as people: shown life (on an input too short to tell, any face that is
        not static), and with zones, seen in them."""
        short = self.life is None or self._last_ts < self.life.static_after_s  # the input so far: too short to tell
        return [
            track
            for track in ended
            if (self.zones is None or track.track_id in self._ever_inside)
            and (track.track_id in self._counted or (short and not track.static))
        ]

    def _policy_step(
        self, frame_index: int, t: float, tracks: list[Track], ended: list[Track], people: list[Track]
    ) -> list[Event]:
        """The alert policy's events: ``end`` only for the ended tracks that counted as ``people``."""
        if self.policy is None:
            return []
        counted = {track.track_id for track in people}
        self.policy.forget(track.track_id for track in ended if track.track_id not in counted)
        return self.policy.step(frame_index, t, tracks, people)

    def _conclude(self, events: list[Event], ended: list[Track], people: list[Track]) -> list[Event]:
        """Mark each event with whether its track counts as a person, record the people who left, keep the events."""
        persons = self._counted | {track.track_id for track in people}
        events = [replace(event, person=event.track_id in persons) for event in events]
        self._record(people)
        self._ever_inside.difference_update(track.track_id for track in ended)
        self.events.extend(events)
        return events

    def _record(self, people: Iterable[Track]) -> None:
        """Record the people who left (see :meth:`_people_of`)."""
        for track in people:
            if track.track_id not in self._counted:  # a very short input: every face it shows counts
                self._people_total += 1
                if track.label != UNDECIDED and MaskClass(track.label).alerts:
                    self._unmasked.add(track.track_id)
            alerts = self.policy.alerts_by_track.get(track.track_id, 0) if self.policy is not None else 0
            self._final_labels[UNDECIDED_KEY if track.label == UNDECIDED else CLASS_NAMES[track.label]] += 1
            unmasked = track.track_id in self._unmasked
            self._unmasked_ended += unmasked
            self._unmasked.discard(track.track_id)
            self._counted.discard(track.track_id)  # gone for good: its record is kept, not its id
            self.people.append(
                PersonRecord(
                    track_id=track.track_id,
                    first_s=track.first_ts,
                    last_s=track.last_ts,
                    frames=track.hits,
                    label=None if track.label == UNDECIDED else CLASS_NAMES[track.label],
                    unmasked=unmasked,
                    alerts=alerts,
                )
            )

    def _sample(self, t: float, faces: FaceDetections) -> None:
        """A timeline point (every ``timeline_step_s``) of the people who count in ``faces``."""
        if t < self._next_sample:
            return
        self._next_sample = t + self.timeline_step_s
        if len(self.timeline) >= self.max_timeline:  # halve the resolution instead of growing
            self.timeline = self.timeline[::2]
            self.timeline_step_s *= 2
        ids = faces.class_id
        self.timeline.append(
            TimelinePoint(
                t_s=t,
                in_view=len(ids),
                with_mask=int((ids == MaskClass.WITH_MASK).sum()),
                without_mask=int((ids == MaskClass.WITHOUT_MASK).sum()),
                incorrect=int((ids == MaskClass.INCORRECT).sum()),
                undecided=int((ids == UNDECIDED).sum()),
            )
        )

    def finish(self) -> list[Event]:
        """End every remaining track (end of input): their ``end`` events, also kept in ``events``."""
        ended = self.tracker.finish()
        self._in_view = 0
        people = self._people_of(ended)
        events = self._policy_step(self._last_index, self._last_ts, [], ended, people)
        if self.lines is not None:
            self.lines.forget(track.track_id for track in ended)
        return self._conclude(events, ended, people)

    # statistics -----------------------------------------------------------------------------------------------
    def label_counts(self) -> dict[str, int]:
        """People by decided label: final label for those who left, current label for those in view."""
        counts = {name: 0 for name in CLASS_NAMES} | {UNDECIDED_KEY: 0}
        for label, n in self._final_labels.items():
            counts[label] += n
        for track in self.tracker.tracks + self.tracker.dormant:  # gone for a moment: still counted by label
            if track.track_id not in self._counted:
                continue
            counts[UNDECIDED_KEY if track.label == UNDECIDED else CLASS_NAMES[track.label]] += 1
        return counts

    def people_status(self) -> PeopleStatus:
        """Live numbers for the status line, the HTTP view and /metrics."""
        counts = self.label_counts()
        unmasked = self._unmasked_ended + len(self._unmasked)
        tallies = self.lines.tallies() if self.lines is not None else ()
        return PeopleStatus(
            people_now=self._in_view,
            people_total=self._people_total,
            unmasked_total=unmasked,
            alerts=self.policy.alerts if self.policy is not None else 0,
            compliance=compliance(sum(counts[name] for name in CLASS_NAMES), unmasked),
            detect_every=self.stride.every,
            entered=sum(line.entered for line in tallies),
            exited=sum(line.exited for line in tallies),
            lines=tallies,
        )

    def snapshot(self) -> dict:
        """:meth:`people_status` as a dict (``people_total``, ``alerts`` …), for tools and tests."""
        return asdict(self.people_status())

    def summary_line(self) -> str:
        s = self.people_status()
        share = "n/a" if s.compliance is None else f"{s.compliance:.0%}"
        where = " in the zones" if self.zones is not None else ""
        crossings = f", {s.entered} in / {s.exited} out" if self.lines is not None else ""
        return (
            f"summary: {s.people_total} people seen{where} ({s.unmasked_total} unmasked at some point), "
            f"{s.people_now} in view, compliance {share} ({COMPLIANCE}), {s.alerts} alerts{crossings}"
        )
