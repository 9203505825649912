"""Alert policy (de-duplication, cooldown, minimum duration) and the events log (flush, rotation, snapshots)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest

from maskwatch.monitor.alerts import AlertPolicy, utc_now
from maskwatch.outputs.events import EventLog, EventOutputs, Snapshots, snapshot_folder
from maskwatch.types import UNDECIDED, Event, FaceDetections, Frame, FrameResult

MASK, NOMASK, WRONG = 0, 1, 2


@dataclass
class FakeTrack:
    track_id: int
    label: int = UNDECIDED
    confidence: float = 0.9
    first_ts: float = 0.0
    last_ts: float = 0.0
    last_frame: int = 0
    xyxy: np.ndarray = field(default_factory=lambda: np.array([10, 10, 50, 60], np.float32))
    live: bool = True
    static: bool = False

    @property
    def duration_s(self) -> float:
        return self.last_ts - self.first_ts


def play(policy: AlertPolicy, labels: list[int], fps: float = 10.0, track_id: int = 1) -> list[Event]:
    """Feed one track whose decided label per frame is ``labels``; return all events."""
    track = FakeTrack(track_id)
    events = []
    for i, label in enumerate(labels):
        track.label, track.last_frame, track.last_ts = label, i, i / fps
        events += policy.step(i, i / fps, [track], [])
    return events


def test_one_alert_per_person_after_min_duration():
    policy = AlertPolicy("cam", min_duration_s=1.0, clock=lambda: "T")
    events = play(policy, [UNDECIDED] * 3 + [NOMASK] * 40)
    alerts = [e for e in events if e.event == "alert"]
    assert len(alerts) == 1
    assert alerts[0].frame == 10 and alerts[0].t_s == 1.0  # first frame with duration >= 1 s at 10 fps
    assert alerts[0].label == "without_mask" and alerts[0].track_id == 1 and alerts[0].source == "cam"
    assert policy.alerts == 1 and policy.alerts_by_track == {1: 1}


def test_masked_person_never_alerts_and_incorrect_does():
    assert play(AlertPolicy("cam", min_duration_s=0.0), [MASK] * 30) == []
    events = play(AlertPolicy("cam", min_duration_s=0.0), [WRONG] * 5)
    assert [e.event for e in events] == ["alert"] and events[0].label == "mask_weared_incorrect"


def test_an_unsure_label_does_not_alert_until_it_is_sure():
    policy = AlertPolicy("cam", min_duration_s=0.0, min_confidence=0.5)
    track = FakeTrack(1, label=NOMASK, confidence=0.41)  # e.g. a poster or a false alarm: near-equal probabilities
    assert [e for i in range(20) for e in policy.step(i, i / 10, [_seen(track, i)], [])] == []
    track.confidence = 0.62
    events = policy.step(20, 2.0, [_seen(track, 20)], [])
    assert [e.event for e in events] == ["alert"]


def _seen(track: FakeTrack, i: int) -> FakeTrack:
    track.last_frame, track.last_ts = i, i / 10
    return track


def test_cooldown_needs_time_and_a_masked_spell():
    # no mask -> mask -> no mask within the cooldown: one alert, two label updates
    policy = AlertPolicy("cam", min_duration_s=0.0, cooldown_s=10.0)
    events = play(policy, [NOMASK] * 5 + [MASK] * 5 + [NOMASK] * 5)
    assert [e.event for e in events] == ["alert", "update", "update"]
    # same, but the mask came off again after the cooldown: a second alert
    policy = AlertPolicy("cam", min_duration_s=0.0, cooldown_s=1.0)
    events = play(policy, [NOMASK] * 5 + [MASK] * 15 + [NOMASK] * 5)
    assert [e.event for e in events] == ["alert", "update", "update", "alert"]
    # unmasked all along, far past the cooldown: still one alert
    policy = AlertPolicy("cam", min_duration_s=0.0, cooldown_s=1.0)
    assert [e.event for e in play(policy, [NOMASK] * 100)] == ["alert"]


def test_updates_and_ends_are_optional():
    policy = AlertPolicy("cam", min_duration_s=0.0, updates=False, ends=False)
    events = play(policy, [MASK] * 3 + [NOMASK] * 3)
    assert [e.event for e in events] == ["alert"]
    assert policy.step(9, 0.9, [], [FakeTrack(1, label=NOMASK)]) == []
    policy = AlertPolicy("cam", min_duration_s=0.0)
    ended = policy.step(9, 0.9, [], [FakeTrack(7, label=MASK, first_ts=0.0, last_ts=2.5)])
    assert [(e.event, e.track_id, e.label, e.duration_s) for e in ended] == [("end", 7, "with_mask", 2.5)]


def test_two_people_alert_independently():
    policy = AlertPolicy("cam", min_duration_s=0.0)
    a, b = FakeTrack(1, label=NOMASK), FakeTrack(2, label=NOMASK)
    events = []
    for i in range(5):
        for t in (a, b):
            t.last_frame, t.last_ts = i, i / 10
        events += policy.step(i, i / 10, [a, b], [])
    assert sorted(e.track_id for e in events) == [1, 2]


def test_tracks_not_seen_this_frame_do_nothing():
    policy = AlertPolicy("cam", min_duration_s=0.0)
    track = FakeTrack(1, label=NOMASK, last_frame=3)
    assert policy.step(5, 0.5, [track], []) == []


def test_utc_now_is_iso8601_utc():
    ts = utc_now()
    assert ts.endswith("Z") and "T" in ts and len(ts) == len("2026-11-26T10:00:00.123Z")


def _result(events: list[Event], image: np.ndarray | None = None) -> FrameResult:
    image = np.full((120, 160, 3), 90, np.uint8) if image is None else image
    frame = Frame(image=image, index=events[0].frame if events else 0, timestamp_s=0.0, name="cam")
    return FrameResult(frame=frame, faces=FaceDetections.empty(), events=events)


def _event(i: int, kind: str = "alert") -> Event:
    return Event(kind, "2026-11-26T00:00:00.000Z", "cam", i, i, "without_mask", 0.9, [20, 20, 80, 100], 1.5)


def _log(path, **kw) -> EventOutputs:
    """The events log behind the fan-out, as a run wires it."""
    return EventOutputs([EventLog(path, **kw)])


def test_event_log_writes_each_event_at_once(tmp_path):
    path = tmp_path / "events.jsonl"
    log = _log(path)
    log.write(_result([_event(1)]), None)
    # readable before close: flushed (and fsynced) per event
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert {"event", "ts", "source", "frame", "track_id", "label", "confidence", "box"} <= set(record)
    assert record["event"] == "alert" and record["box"] == [20.0, 20.0, 80.0, 100.0]
    log.write(_result([_event(2, "end")]), None)
    log.close()
    # a second run appends
    with _log(path) as again:
        again.write(_result([_event(3)]), None)
    assert [json.loads(line)["frame"] for line in path.read_text().splitlines()] == [1, 2, 3]


def test_event_log_rotates_by_size(tmp_path):
    path = tmp_path / "events.jsonl"
    with _log(path, max_bytes=1000, backups=2) as log:
        for i in range(40):
            log.write(_result([_event(i)]), None)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    for name in files:
        assert (tmp_path / name).stat().st_size < 1000 + 300
        for line in (tmp_path / name).read_text().splitlines():
            json.loads(line)  # every kept line is whole
    newest = [json.loads(line)["frame"] for line in path.read_text().splitlines()]
    older = [json.loads(line)["frame"] for line in (tmp_path / "events.jsonl.1").read_text().splitlines()]
    assert newest[-1] == 39 and older[-1] == newest[0] - 1


def test_snapshots_only_when_asked_and_blurred_on_request(tmp_path):
    image = np.zeros((120, 160, 3), np.uint8)
    cv2.randu(image, 0, 255)
    detail = {}
    for blur in (False, True):
        path = tmp_path / f"events_{blur}.jsonl"
        with EventOutputs([Snapshots(snapshot_folder(path), blur=blur), EventLog(path)]) as log:
            log.write(_result([_event(4), _event(5, "end")], image), None)
        records = [json.loads(line) for line in path.read_text().splitlines()]
        assert "snapshot" in records[0] and "snapshot" not in records[1]
        snap = cv2.imread(records[0]["snapshot"])
        assert snap is not None and snap.shape[0] > 50
        detail[blur] = float(np.abs(np.diff(snap.astype(np.float32), axis=1)).mean())
    assert detail[True] < detail[False] / 4  # noise keeps its detail unless blurred
    with _log(tmp_path / "plain.jsonl") as log:
        log.write(_result([_event(4)], image), None)
    assert "snapshot" not in json.loads((tmp_path / "plain.jsonl").read_text())
    assert not (tmp_path / "plain_snapshots").exists()


def test_the_fan_out_hands_each_event_to_every_output_in_order_after_the_log_has_it(tmp_path):
    path = tmp_path / "e.jsonl"
    got = []

    class Collect:
        """A new event output: nothing but send and close."""

        def send(self, event, image):
            on_disk = [json.loads(line)["frame"] for line in path.read_text().splitlines()]
            got.append((event.event, event.frame, image.shape, on_disk[-1]))

        def close(self):
            got.append("closed")

    with EventOutputs([EventLog(path), Collect()]) as outputs:
        outputs.write(_result([_event(1), _event(2, "end")]), None)
    assert got == [("alert", 1, (120, 160, 3), 1), ("end", 2, (120, 160, 3), 2), "closed"]


def test_event_kinds_are_typed():
    assert [_event(1, kind).event for kind in ("alert", "update", "end")] == ["alert", "update", "end"]
    with pytest.raises(ValueError, match="event kind must be one of alert, update, end"):
        _event(1, "alarm")
