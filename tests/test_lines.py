"""Counting lines: the sides, one count per crossing despite jitter, not beside the line's ends, the label at the
crossing; through the monitor to the events, the status, /metrics, MQTT, the report and the overlay."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from maskwatch.monitor.alerts import AlertPolicy
from maskwatch.monitor.base import LineTally, PeopleStatus
from maskwatch.monitor.lines import CountingLine, LineCounter
from maskwatch.monitor.monitor import Monitor, StrideControl
from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.monitor.track import FaceTracker
from maskwatch.outputs.render import LINE_COLOR, OverlayRenderer
from maskwatch.outputs.report import build_report, render_markdown
from maskwatch.runner.status import RunStatus, SourceStatus
from maskwatch.serve.metrics import prometheus_text
from maskwatch.types import UNDECIDED, Event, MaskClass
from tests.test_zones import MASKED, UNMASKED, BlobDetector, ColourClassifier, H, W, near, result_with, scene

SIZE = (W, H)
ACROSS = CountingLine("door", (0.0, 0.5), (1.0, 0.5))  # left to right across the middle: left is the top half
DOWN = CountingLine("aisle", (0.5, 0.0), (0.5, 1.0))  # top to bottom down the middle: left is the right half


@dataclass
class FakeTrack:
    """What the line counter reads of a track (``maskwatch.monitor.alerts.TrackLike``)."""

    track_id: int
    xyxy: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    label: int = int(MaskClass.WITH_MASK)
    confidence: float = 0.9
    last_frame: int = 0
    duration_s: float = 1.0
    live: bool = True
    static: bool = False

    def at(self, x: float, y: float, size: float = 30.0) -> FakeTrack:
        """Move the face's centre to (x, y) pixels."""
        self.xyxy = np.array([x - size / 2, y - size / 2, x + size / 2, y + size / 2], np.float32)
        return self


def walk(counter: LineCounter, track: FakeTrack, path: list[tuple[float, float]]) -> list[Event]:
    events = []
    for i, (x, y) in enumerate(path):
        events += counter.step(i, i / 10, [track.at(x, y)], SIZE)
    return events


# --- sides --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "left_point", "right_point"),
    [
        (ACROSS, (160, 40), (160, 200)),  # y grows downwards: walking to the right, the top is on the left hand
        (DOWN, (280, 120), (40, 120)),  # walking down the picture, the right half is on the left hand
        (CountingLine("back", (1.0, 0.5), (0.0, 0.5)), (160, 200), (160, 40)),  # reversed: the sides swap
    ],
)
def test_left_is_the_left_hand_walking_from_the_first_point_to_the_second(line, left_point, right_point):
    left, right = line.signed_distance(np.array([left_point, right_point], np.float64), SIZE)
    assert left < 0 < right


@pytest.mark.parametrize(("in_side", "downward"), [("left", "out"), ("right", "in")])
def test_crossing_towards_the_inside_counts_in_and_back_counts_out(in_side, downward):
    line = CountingLine("door", (0.0, 0.5), (1.0, 0.5), in_side)  # the top half is its left
    counter = LineCounter([line], source="cam", clock=lambda: "T")
    down = walk(counter, FakeTrack(1), [(160, y) for y in range(40, 221, 20)])
    assert [(e.event, e.line, e.direction, e.track_id) for e in down] == [("cross", "door", downward, 1)]
    up = walk(counter, FakeTrack(1), [(160, y) for y in range(220, 39, -20)])
    assert [e.direction for e in up] == [{"in": "out", "out": "in"}[downward]]
    (tally,) = counter.tallies()
    assert (tally.entered, tally.exited) == (1, 1)


def test_jitter_on_the_line_counts_one_crossing_once():
    counter = LineCounter([ACROSS], source="cam")
    band = ACROSS.band * 30  # 30-px faces: the centre must be 9 px past the line to change side
    wobble = [(160, 120 + d) for d in (-8, 6, -7, 8, -5, 3)] * 4  # within the band: no side at all
    assert walk(counter, FakeTrack(1), [(160, 60), *wobble, (160, 60)]) == []
    path = [(160, 60), (160, 100), (160, 130)]  # now across (10 px below: past the band) ...
    path += [(160, 120 + d) for d in (-8, 8, -6, 9.5, -8.5, 12)] * 3  # ... and jittering about the line
    events = walk(counter, FakeTrack(2), path)
    assert band < 10 and [e.direction for e in events] == ["out"]


def test_passing_beside_an_end_of_the_line_does_not_count():
    short = CountingLine("door", (0.25, 0.5), (0.75, 0.5))  # x 80..240 px
    counter = LineCounter([short], source="cam")
    around = [(60, 60), (20, 100), (20, 140), (60, 200)]  # down the far left, beside the line's first end
    assert walk(counter, FakeTrack(1), around) == []
    through = [(100, 60), (100, 200)]  # through it, one detection on each side (a fast walker)
    assert [e.direction for e in walk(counter, FakeTrack(2), through)] == ["out"]


def test_the_event_carries_the_label_the_person_had_when_crossing():
    counter = LineCounter([ACROSS], source="cam", clock=lambda: "2026-01-01T00:00:00.000Z")
    person = FakeTrack(7, label=int(MaskClass.WITHOUT_MASK))
    (event,) = walk(counter, person, [(160, 60), (160, 200)])
    person.label = int(MaskClass.WITH_MASK)  # puts the mask on afterwards
    walk(counter, person, [(160, 210), (160, 220)])
    record = event.to_json()
    assert (record["label"], record["line"], record["direction"], record["source"]) == (
        "without_mask", "door", "out", "cam",
    )  # fmt: skip
    assert record["ts"] == "2026-01-01T00:00:00.000Z" and record["box"] == [145.0, 185.0, 175.0, 215.0]
    undecided = FakeTrack(8, label=UNDECIDED)
    walk(counter, undecided, [(160, 200), (160, 60)])
    assert counter.by_label() == {"door": {"in": {"undecided": 1}, "out": {"without_mask": 1}}}


def test_a_person_who_left_is_forgotten():
    counter = LineCounter([ACROSS], source="cam")
    walk(counter, FakeTrack(1), [(160, 60)])
    counter.forget([1])
    assert walk(counter, FakeTrack(1), [(160, 200)]) == []  # a new start, not a crossing


# --- through the monitor ------------------------------------------------------------------------------------------
def monitor(lines: list[CountingLine]) -> Monitor:
    pipeline = FacePipeline(BlobDetector(), ColourClassifier())
    counter = LineCounter(lines, source="cam")
    policy = AlertPolicy("cam", min_duration_s=0.3)
    return Monitor(pipeline, FaceTracker(min_hits=2, min_votes=2), policy, StrideControl(1), lines=counter)


def test_people_walking_through_a_door_are_counted_in_and_out_with_their_labels():
    # DOWN (x = 160), inside on its right: the left half of the picture. One masked person walks in (right to left),
    # one unmasked person walks out (left to right), on separate rows.
    frames = [scene([(300 - 10 * i, 60, MASKED), (20 + 10 * i, 180, UNMASKED)], i) for i in range(29)]
    mon = monitor([CountingLine("aisle", (0.5, 0.0), (0.5, 1.0), "right")])
    events = [e for f in frames for e in mon(f).events] + mon.finish()
    crossings = [(e.direction, e.label) for e in events if e.event == "cross"]
    assert sorted(crossings) == [("in", "with_mask"), ("out", "without_mask")]
    status = mon.people_status()
    assert (status.entered, status.exited, status.lines) == (1, 1, (LineTally("aisle", 1, 1),))
    assert "1 in / 1 out" in mon.summary_line()
    assert [e.event for e in events].count("alert") == 1  # alerts go on beside the crossings


def test_crossings_reach_metrics_and_the_report():
    people = PeopleStatus(
        2, 5, 1, 1, 0.8, 1, entered=4, exited=3, lines=(LineTally("door", 3, 2), LineTally("b", 1, 1))
    )
    status = RunStatus(1.0, (SourceStatus("cam", True, True, 10.0, 5, 0, 0, {}, people),))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(prometheus_text(status, 0))
        for s in family.samples
    }
    assert samples[("maskwatch_people_entered_total", ())] == 4
    assert samples[("maskwatch_people_exited_total", ())] == 3
    assert samples[("maskwatch_line_crossings_total", (("direction", "in"), ("line", "door")))] == 3
    assert samples[("maskwatch_line_crossings_total", (("direction", "out"), ("line", "b")))] == 1
    plain = RunStatus(1.0, (SourceStatus("cam", True, True, 10.0, 5, 0, 0, {}, PeopleStatus(0, 0, 0, 0, None, 1)),))
    assert "entered" not in prometheus_text(plain, 0) and "line_crossings" not in prometheus_text(plain, 0)
    crossings = {"door": {"in": {"with_mask": 2, "without_mask": 1}, "out": {}}}
    report = build_report(source="cam", summary={}, people=[], timeline=[], events=[], crossings=crossings)
    assert report["lines"] == {
        "door": {"in": 3, "out": 0, "in_by_label": {"with_mask": 2, "without_mask": 1}, "out_by_label": {}}
    }
    assert "- Line door: 3 in (mask 2, no mask 1), 0 out (none)" in render_markdown(report, [])
    assert "lines" not in build_report(source="cam", summary={}, people=[], timeline=[], events=[])


def test_the_overlay_draws_the_line_and_its_counts():
    renderer = OverlayRenderer(hud=False, lines=[ACROSS])
    result = result_with([(80, 1, int(MaskClass.WITH_MASK))])
    first = renderer.annotate(result)
    assert near(first, 120, 300, LINE_COLOR, tol=40)  # the line across the middle, away from the face
    crossing = Event("cross", "T", "cam", 1, 1, "with_mask", 0.9, [0, 0, 1, 1], line="door", direction="in")
    result.events.append(crossing)
    second = renderer.annotate(result)
    assert not np.array_equal(first, second)  # "in 0" became "in 1"
    assert np.array_equal(OverlayRenderer(hud=False).annotate(result), OverlayRenderer(hud=False).annotate(result))


# --- MQTT -----------------------------------------------------------------------------------------------------
def test_the_mqtt_state_carries_the_crossings(tmp_path: Path):
    from tests.mqtt_broker import MOSQUITTO, Broker, Subscriber

    if MOSQUITTO is None:
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    from maskwatch.outputs.mqtt import MqttOutput, SourceNumbers

    numbers = {"door": SourceNumbers(people_in_view=1, fps=10.0, alerts=0, entered=4, exited=3)}
    broker = Broker(tmp_path).start()
    output = MqttOutput("127.0.0.1", broker.port, sources=["door"], numbers=lambda: numbers, state_interval_s=0.1)
    late = None
    try:
        deadline = time.monotonic() + 10
        while not output.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        late = Subscriber(broker.port, "maskwatch/door/state")  # the retained state
        received = late.wait("maskwatch/door/state")
    finally:
        output.close()
        if late is not None:
            late.close()
        broker.stop()
    state = json.loads(received[-1].payload)
    assert (state["entered"], state["exited"], state["people_in_view"]) == (4, 3, 1)
