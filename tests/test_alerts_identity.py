"""Alerts by identity: no alert before a face shows life, none for a poster, one per person across gaps."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from maskwatch.monitor.alerts import AlertPolicy, TrackLike
from maskwatch.monitor.monitor import Monitor
from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.monitor.track import FaceTracker
from maskwatch.types import Frame
from tests.conftest import FakeClassifier, FakeDetector


@dataclass
class _Track:
    track_id: int = 1
    xyxy: np.ndarray = field(default_factory=lambda: np.array([0, 0, 10, 10], np.float32))
    label: int = 1  # without_mask
    confidence: float = 0.9
    last_frame: int = 0
    live: bool = True
    static: bool = False
    duration_s: float = 2.0


def test_no_alert_until_the_track_has_shown_life():
    policy = AlertPolicy("test", min_duration_s=1.0)
    track = _Track(live=False)
    assert policy.step(0, 2.0, [track], []) == []
    track.live, track.last_frame = True, 1
    assert [e.event for e in policy.step(1, 2.1, [track], [])] == ["alert"]


def test_a_static_track_raises_no_event_at_all():
    policy = AlertPolicy("test", min_duration_s=0.0)
    poster = _Track(live=False, static=True)
    assert policy.step(0, 5.0, [poster], []) == []
    poster.label, poster.last_frame = 0, 1  # even a label change is no update
    assert policy.step(1, 5.1, [poster], []) == []
    assert policy.step(2, 5.2, [], [poster]) == []  # and no end
    assert policy.alerts == 0


def test_the_policy_reads_only_what_tracklike_declares():
    class Plain:
        """Exactly the TrackLike fields, as read-only properties: a policy reading anything else would fail."""

        track_id, label, confidence, last_frame, duration_s, live, static = 3, 1, 0.8, 0, 1.5, True, False
        xyxy = np.zeros(4, np.float32)

        def __setattr__(self, name, value):
            raise AttributeError(f"the policy wrote {name}")

    declared = {n for n, v in vars(TrackLike).items() if isinstance(v, property)}
    assert declared == {"track_id", "xyxy", "label", "confidence", "last_frame", "duration_s", "live", "static"}
    assert [e.event for e in AlertPolicy("test").step(0, 1.5, [Plain()], [])] == ["alert"]


def test_a_person_who_leaves_and_returns_is_one_person_with_one_alert():
    # the square vanishes for longer than max_lost frames: re-identified, so the same id, one alert, one person
    monitor = Monitor(
        FacePipeline(FakeDetector(), FakeClassifier()),
        FaceTracker(min_hits=2, min_votes=2, max_lost=5, reid_max_gap_s=10.0),
        AlertPolicy("test", min_duration_s=0.0),
    )
    for i in range(40):
        image = np.full((120, 320, 3), 30, np.uint8)
        if not 15 <= i < 25:
            image[30:80, 100 + i : 140 + i] = 220
        monitor(Frame(image=image, index=i, timestamp_s=i / 10))
    monitor.finish()
    assert monitor.snapshot()["people_total"] == 1
    assert [p.track_id for p in monitor.people] == [1]
    assert [e.event for e in monitor.events] == ["alert", "end"]
