"""People are counted the same everywhere: the run's summary, the events (``person``, ``end``), the history and
its report, MQTT's state. A face that never moved (a picture) and left before it could be called static is not a
person anywhere."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maskwatch.history.db import connect
from maskwatch.history.query import history_report
from maskwatch.history.store import store_events
from maskwatch.monitor.alerts import AlertPolicy
from maskwatch.monitor.monitor import Monitor
from maskwatch.monitor.pipeline import FacePipeline
from maskwatch.monitor.static import LifeMeter
from maskwatch.monitor.track import FaceTracker
from maskwatch.types import Event, Frame
from tests.conftest import FakeClassifier
from tests.test_static import BlobDetector, _texture

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC).timestamp()


def clock_from(t0: float):
    """A policy clock that moves 0.1 s per event, so the events have distinct, real times."""
    ticks = iter(range(10_000))

    def now() -> str:
        when = datetime.fromtimestamp(t0 + 0.1 * next(ticks), UTC)
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return now


def walker_and_picture() -> tuple[Monitor, list[Event]]:
    """4 s at 10 fps under a fixed camera: a person walks across; a picture (a face that never moves) is in view
    from 1.5 s to 2.2 s, shorter than ``static_after_s`` (1 s), so it leaves neither live nor static."""
    background = _texture(240, 320, 0, 100, seed=1)
    face, picture = _texture(40, 34, 150, 255, seed=3), _texture(50, 40, 150, 255, seed=2)
    monitor = Monitor(
        FacePipeline(BlobDetector(), FakeClassifier()),
        FaceTracker(min_hits=2, min_votes=2, hold_unmoved_s=0.5),
        AlertPolicy("door", min_duration_s=0.3, clock=clock_from(T0)),
        life=LifeMeter(static_after_s=1.0),
    )
    events: list[Event] = []
    for i in range(40):
        image = background.copy()
        image[40:80, 10 + 6 * i : 44 + 6 * i] = face
        if 15 <= i < 22:
            image[150:200, 200:240] = picture
        events += monitor(Frame(image=image, index=i, timestamp_s=i / 10)).events
    events += monitor.finish()
    return monitor, events


def test_a_picture_that_left_early_has_no_end_event_and_is_nobody_in_the_history(tmp_path: Path) -> None:
    monitor, events = walker_and_picture()
    assert monitor.snapshot()["people_total"] == 1 and len(monitor.people) == 1
    ends = [e for e in events if e.event == "end"]
    assert [e.track_id for e in ends] == [monitor.people[0].track_id]  # the walker's only
    assert {e.track_id for e in events if e.person} == {monitor.people[0].track_id}
    assert all(json.loads(json.dumps(e.to_json()))["person"] == e.person for e in events)
    conn = connect(tmp_path / "h.db")
    with conn:
        store_events(conn, 1, T0, events)
    total = history_report(conn, tz=UTC, now=T0 + 3600)["total"]
    conn.close()
    assert total["people"] == monitor.snapshot()["people_total"] == 1


def test_the_events_of_a_track_that_is_no_person_are_stored_without_a_person(tmp_path: Path) -> None:
    def event(kind: str, track: int, label: str, *, person: bool, **kw) -> Event:
        return Event(kind, "2026-12-07T09:00:01Z", "door", 1, track, label, 0.9, [1, 2, 3, 4], person=person, **kw)  # type: ignore[arg-type]

    conn = connect(tmp_path / "h.db")
    with conn:
        store_events(
            conn,
            1,
            T0,
            [
                event("update", 7, "with_mask", person=False),  # a poster flickering before it is called static
                event("cross", 8, "with_mask", person=False, line="door", direction="in"),  # outside the zones
                event("end", 9, "with_mask", person=True),
            ],
        )
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (3,)  # every event is kept
    assert conn.execute("SELECT track FROM people").fetchall() == [(9,)]
    total = history_report(conn, tz=UTC, now=T0 + 3600)["total"]
    conn.close()
    assert total["people"] == 1 and total["cross_in"] == 1


def read_history(path: Path) -> dict:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return history_report(conn, tz=UTC, now=time.time() + 3600)["total"]
    finally:
        conn.close()


@pytest.mark.slow
def test_the_demo_counts_the_same_people_in_the_summary_events_history_and_mqtt(tmp_path: Path) -> None:
    from tests.helpers import maskwatch
    from tests.mqtt_broker import MOSQUITTO, Broker, Subscriber

    args = ["run", "--source", "demo", "--no-progress", "--events", str(tmp_path / "ev.jsonl")]
    args += ["--history", str(tmp_path / "h.db")]
    broker = sub = None
    if MOSQUITTO is not None:  # without mosquitto: the summary, the events and the history
        broker = Broker(tmp_path)
        broker.start()
        sub = Subscriber(broker.port, "shop/demo/#")
        args += ["--mqtt", f"mqtt://127.0.0.1:{broker.port}/shop"]
    try:
        done = maskwatch(*args)
        assert done.returncode == 0, done.stderr
        summary = next(line for line in done.stderr.splitlines() if "summary:" in line)
        people = int(summary.split("summary: ")[1].split()[0])
        assert people == 2  # the demo's two walkers; its still face is nobody
        events = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
        assert len({e["track_id"] for e in events if e["person"]}) == people
        assert len([e for e in events if e["event"] == "end"]) == people
        assert read_history(tmp_path / "h.db")["people"] == people
        if sub is not None:
            sub.wait("shop/demo/availability", 2)
            states = [json.loads(m.payload) for m in sub.on("shop/demo/state")]
            assert states[-1]["people_total"] == people
            ends = [json.loads(m.payload) for m in sub.on("shop/demo/event")]
            assert len([e for e in ends if e["event"] == "end"]) == people
    finally:
        if sub is not None:
            sub.close()
        if broker is not None:
            broker.stop()
