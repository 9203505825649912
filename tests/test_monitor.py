"""The monitoring stage: detection stride, tracking through the runner, events, people counts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from maskwatch.capture.sources import open_source
from maskwatch.config import config_from_dict
from maskwatch.monitor.alerts import AlertPolicy
from maskwatch.monitor.monitor import Monitor, StrideControl
from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.monitor.track import FaceTracker
from maskwatch.outputs.events import EventLog, EventOutputs
from maskwatch.outputs.sinks import JsonLinesSink, Sink
from maskwatch.runner.single import run
from maskwatch.wiring import build_monitor
from tests.conftest import FakeClassifier, FakeDetector, write_video


def test_fixed_stride_detects_every_nth_frame():
    stride = StrideControl(3)
    assert [stride.should_detect() for _ in range(7)] == [True, False, False, True, False, False, True]


def test_auto_stride_rises_when_detection_is_too_slow_and_falls_back():
    stride = StrideControl(1, auto=True, max_every=4, frame_interval_s=0.040)
    for _ in range(40):  # detection 80 ms, tracking 5 ms, a frame every 40 ms
        detected = stride.should_detect()
        stride.observe(80.0 if detected else 5.0, detected)
    # (80 - 5) / (36 - 5) -> 3 frames per detection
    assert stride.every == 3
    for _ in range(100):  # the machine got faster
        detected = stride.should_detect()
        stride.observe(20.0 if detected else 5.0, detected)
    assert stride.every == 1


def test_auto_stride_is_capped_and_off_for_files():
    stride = StrideControl(1, auto=True, max_every=4, frame_interval_s=0.040)
    for _ in range(40):
        detected = stride.should_detect()
        stride.observe(500.0 if detected else 5.0, detected)
    assert stride.every == 4
    fixed = StrideControl(2, auto=False, frame_interval_s=0.040)
    for _ in range(40):
        detected = fixed.should_detect()
        fixed.observe(500.0 if detected else 5.0, detected)
    assert fixed.every == 2


def _monitor(detect_every: int = 1, min_duration_s: float = 0.3) -> Monitor:
    pipeline = FacePipeline(FakeDetector(), FakeClassifier())
    policy = AlertPolicy("test", min_duration_s=min_duration_s)
    return Monitor(pipeline, FaceTracker(min_hits=2, min_votes=2), policy, StrideControl(detect_every))


def test_one_person_one_track_one_alert_through_the_runner(tmp_path):
    # the fake detector finds the moving bright square; the fake classifier calls it "without_mask"
    video = write_video(tmp_path / "in.mp4", frames=30, size_wh=(320, 120))
    monitor = _monitor()
    events = tmp_path / "events.jsonl"
    dets = tmp_path / "dets.jsonl"
    with EventOutputs([EventLog(events)]) as log, JsonLinesSink(dets) as det_sink:
        stats = run(open_source(str(video)), monitor, [det_sink, log], None, progress=False)
    assert stats.frames == 30
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert [r["event"] for r in records] == ["alert", "end"]
    assert records[0]["label"] == "without_mask" and records[0]["track_id"] == 1
    assert records[0]["frame"] == 3  # seen for 0.3 s at 10 fps
    frames = [json.loads(line) for line in dets.read_text().splitlines()]
    ids = {face["track_id"] for f in frames for face in f["faces"]}
    assert ids == {1}
    assert frames[0]["faces"] == []  # not yet confirmed (min_hits 2)
    snap = monitor.snapshot()
    assert snap["people_total"] == 1 and snap["unmasked_total"] == 1 and snap["alerts"] == 1
    assert snap["compliance"] == 0.0
    assert len(monitor.people) == 1 and monitor.people[0].label == "without_mask"
    assert monitor.timeline and max(p.in_view for p in monitor.timeline) == 1


@pytest.mark.parametrize("frames", [1, 2])
def test_a_video_shorter_than_min_hits_reports_the_face_it_shows(tmp_path, frames):
    # tracking.min_hits is 3: a face on a 1- or 2-frame video never had the detections to become a person
    cfg = config_from_dict({})
    assert cfg.tracking.min_hits > frames
    source = open_source(str(write_video(tmp_path / "short.mp4", frames=frames, size_wh=(320, 120))))
    assert source.frame_count == frames
    pipeline = FacePipeline(FakeDetector(), FakeClassifier())
    monitor = build_monitor(
        cfg, pipeline, source_name="short", fps=source.fps, live=False, frame_count=source.frame_count
    )
    run(source, monitor, [], None, progress=False)
    assert monitor.snapshot()["people_total"] == 1
    assert len(monitor.people) == 1 and monitor.people[0].label == "without_mask"  # the fake's label, decided
    # a long enough input keeps the configured min_hits (a one-frame false detection is no person), which are the
    # counts of a 25-fps source (other frame rates get the counts that last as long)
    long_monitor = build_monitor(cfg, pipeline, source_name="long", fps=25.0, live=False, frame_count=300)
    assert long_monitor.tracker.min_hits == cfg.tracking.min_hits
    assert build_monitor(cfg, pipeline, source_name="cam", fps=25.0, live=True).tracker.min_hits == 3


def test_detect_every_nth_frame_still_outputs_every_frame(tmp_path):
    video = write_video(tmp_path / "in.mp4", frames=30, size_wh=(320, 120))
    monitor = _monitor(detect_every=3)
    detector = monitor.pipeline.detector
    results = []

    class Keep(Sink):
        def write(self, result, annotated):
            results.append(result)

        def close(self):
            pass

    run(open_source(str(video)), monitor, [Keep()], None, progress=False)
    assert len(results) == 30
    assert detector.calls == 10
    assert [r.detected for r in results[:6]] == [True, False, False, True, False, False]
    tracked = [r for r in results[6:] if not r.detected]
    assert tracked and all(len(r.faces) == 1 and r.faces.track_id[0] == 1 for r in tracked)
    # predicted boxes follow the square (it moves 5 px per frame)
    for r in tracked:
        x = 10 + (r.frame_index * 5) % 260
        assert abs(float(r.faces.xyxy[0, 0]) - x) < 6


def test_people_are_not_double_counted_across_two_visits(tmp_path):
    # the square vanishes for longer than max_lost frames: a second person (a new track), counted once each
    monitor = Monitor(
        FacePipeline(FakeDetector(), FakeClassifier()),
        FaceTracker(min_hits=2, min_votes=2, max_lost=5),
        AlertPolicy("test", min_duration_s=0.0),
    )
    from maskwatch.types import Frame

    for i in range(40):
        image = np.full((120, 320, 3), 30, np.uint8)
        if not 15 <= i < 25:
            image[30:80, 100 + i : 140 + i] = 220
        monitor(Frame(image=image, index=i, timestamp_s=i / 10))
    monitor.finish()
    assert monitor.snapshot()["people_total"] == 2
    assert sorted(p.track_id for p in monitor.people) == [1, 2]
    assert [e.event for e in monitor.events].count("alert") == 2


def test_long_runs_keep_bounded_records_and_exact_counts():
    """Weeks of live running: records and timeline stay bounded, the people counts stay exact."""
    from maskwatch.types import Frame

    monitor = Monitor(
        FacePipeline(FakeDetector(), FakeClassifier()),
        FaceTracker(min_hits=2, min_votes=2, max_lost=2),
        AlertPolicy("test", min_duration_s=0.0),
        max_records=3,
        max_timeline=8,
        timeline_step_s=0.1,
    )
    index = 0
    for visit in range(6):  # six people, one after another, each unmasked (bright square)
        for _ in range(6):
            image = np.full((120, 320, 3), 30, np.uint8)
            image[30:80, 100 + 20 * visit : 140 + 20 * visit] = 220
            monitor(Frame(image=image, index=index, timestamp_s=index / 10))
            index += 1
        for _ in range(5):
            monitor(Frame(image=np.full((120, 320, 3), 30, np.uint8), index=index, timestamp_s=index / 10))
            index += 1
    monitor.finish()
    snap = monitor.snapshot()
    assert snap["people_total"] == 6 and snap["unmasked_total"] == 6 and snap["alerts"] == 6
    assert monitor.label_counts()["without_mask"] == 6
    assert len(monitor.people) == 3 and [p.track_id for p in monitor.people] == [4, 5, 6]
    assert len(monitor.events) == 3 and len(monitor.timeline) <= 8
    assert monitor.timeline[-1].t_s > 5.0  # the timeline still spans the whole run, at a coarser step


class _MaskOnLater(FakeClassifier):
    """No mask on the first ``bare`` calls, a mask after."""

    def __init__(self, bare: int) -> None:
        self.bare, self.calls = bare, 0

    def classify(self, crops_bgr: list[np.ndarray]) -> np.ndarray:
        self.calls += 1
        row = [0.1, 0.8, 0.1] if self.calls <= self.bare else [0.8, 0.1, 0.1]
        return np.array([row] * len(crops_bgr), np.float32)


def test_compliance_does_not_count_a_person_seen_unmasked_as_compliant(tmp_path):
    video = write_video(tmp_path / "in.mp4", frames=30, size_wh=(320, 120))
    tracker = FaceTracker(min_hits=2, min_votes=2)
    monitor = Monitor(FacePipeline(FakeDetector(), _MaskOnLater(bare=8)), tracker, AlertPolicy("test"))
    run(open_source(str(video)), monitor, [], None, progress=False)
    assert [p.label for p in monitor.people] == ["with_mask"] and monitor.people[0].unmasked  # put the mask on
    snap = monitor.snapshot()
    assert snap["people_total"] == 1 and snap["unmasked_total"] == 1
    assert snap["compliance"] == 0.0  # not 100 %: the one person was seen without a mask
    line = monitor.summary_line()
    assert "1 unmasked at some point" in line and "compliance 0% (people never seen without a mask" in line
