"""The door display: its states from frames and events, its event stream, and the page in headless Chromium."""

from __future__ import annotations

import http.client
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

from maskwatch.serve.door import DoorDisplay, mount_door
from maskwatch.serve.web import WebView
from maskwatch.types import NO_TRACK, UNDECIDED, Event, FaceDetections, Frame, FrameResult, MaskClass

REPO = Path(__file__).resolve().parents[1]
IMAGE = np.zeros((120, 160, 3), np.uint8)
MASK, NO_MASK, INCORRECT = int(MaskClass.WITH_MASK), int(MaskClass.WITHOUT_MASK), int(MaskClass.INCORRECT)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frame(people: dict[int, int], source: str = "cam", index: int = 0) -> FrameResult:
    """A frame with one face per ``{track id: class id}`` (``NO_TRACK`` keys are untracked faces)."""
    n = len(people)
    faces = FaceDetections(
        xyxy=np.tile([10, 10, 40, 40], (n, 1)),
        det_score=np.full(n, 0.9),
        class_id=list(people.values()),
        track_id=list(people.keys()),
    )
    return FrameResult(Frame(IMAGE, index, 0.0, name=source), faces)


def event(kind: str, track: int, label: str | None = "without_mask", source: str = "cam") -> Event:
    return Event(kind, "2026-12-07T10:00:00Z", source, 0, track, label, 0.9, [10, 10, 40, 40])  # type: ignore[arg-type]


@pytest.fixture
def door() -> tuple[DoorDisplay, Clock]:
    clock = Clock()
    return DoorDisplay(idle_after_s=1.0, stale_after_s=5.0, clock=clock), clock


def state(door: DoorDisplay, source: str | None = None) -> str:
    return door.current(source).state


def test_states_follow_people(door: tuple[DoorDisplay, Clock]) -> None:
    d, clock = door
    assert state(d) == "idle"
    d.write(frame({1: UNDECIDED}), IMAGE)
    assert state(d) == "idle"  # someone, not decided yet: please look at the camera
    d.write(frame({1: MASK}), IMAGE)
    assert state(d) == "masked"
    d.write(frame({1: MASK, 2: NO_MASK}), IMAGE)
    assert state(d) == "masked"  # decided unmasked but not alerted (yet): the alarm and the door agree
    d.send(event("alert", 2), IMAGE)
    assert state(d) == "unmasked"  # at once, before the frame that carries the alert
    d.write(frame({1: MASK, 2: NO_MASK}), IMAGE)
    assert state(d) == "unmasked"  # an alerted person outweighs a masked one
    d.write(frame({1: MASK, 2: MASK}), IMAGE)
    assert state(d) == "masked"  # the alerted person put the mask on
    d.write(frame({1: MASK, 2: INCORRECT}), IMAGE)
    assert state(d) == "unmasked"  # ...and pulled it down again (no new alert needed)
    d.send(event("end", 2), IMAGE)
    assert state(d) == "masked"
    d.write(frame({NO_TRACK: MASK}), IMAGE)  # an untracked face (a poster): nobody
    clock.now += 0.5
    assert state(d) == "masked"  # nobody for a moment: kept
    clock.now += 0.6
    assert state(d) == "idle"  # nobody for idle_after_s


def test_an_alerted_person_missed_for_a_moment_stays_red(door: tuple[DoorDisplay, Clock]) -> None:
    d, clock = door
    d.write(frame({1: MASK, 2: NO_MASK}), IMAGE)
    d.send(event("alert", 2), IMAGE)
    clock.now += 0.1
    d.write(frame({1: MASK}), IMAGE)  # the detector lost the alerted face for a frame
    assert state(d) == "unmasked"
    clock.now += 0.5
    d.write(frame({1: MASK, 2: NO_MASK}), IMAGE)
    clock.now += 0.1
    d.write(frame({1: MASK}), IMAGE)
    clock.now += 0.85  # 0.95 s since it was last seen
    assert state(d) == "unmasked"
    clock.now += 0.1  # gone for idle_after_s: the masked person is thanked
    assert state(d) == "masked"


def test_incorrect_alert_and_stale_source(door: tuple[DoorDisplay, Clock]) -> None:
    d, clock = door
    d.send(event("alert", 5, "mask_weared_incorrect"), IMAGE)
    assert state(d) == "unmasked"
    d.send(event("update", 5, "with_mask"), IMAGE)
    assert state(d) == "masked"
    d.send(event("update", 5, "without_mask"), IMAGE)
    d.send(event("cross", 5, "without_mask"), IMAGE)  # a line crossing changes nothing
    assert state(d) == "unmasked"
    clock.now += 5.1  # no frame since: the source stalled
    assert state(d) == "idle"


def test_changes_are_counted_once(door: tuple[DoorDisplay, Clock]) -> None:
    d, _ = door
    seqs = []
    for people in ({1: MASK}, {1: MASK}, {1: MASK}, {}, {2: MASK}):
        d.write(frame(people), IMAGE)
        seqs.append(d.current().seq)
    assert seqs == [1, 1, 1, 1, 1]  # masked once; the empty frame within idle_after_s changes nothing


def test_each_source_has_its_door() -> None:
    clock = Clock()
    d = DoorDisplay(["front", "back"], clock=clock)
    d.send(event("alert", 1, source="back"), IMAGE)
    d.write(frame({3: MASK}, source="front"), IMAGE)
    assert state(d, "front") == "masked" and state(d, "back") == "unmasked"
    assert state(d) == "masked"  # no ?source=: the first
    assert state(d, "nope") == "masked"


def test_faces_outside_the_zones_are_nobody() -> None:
    from maskwatch.monitor.zones import Zone, ZoneSet

    left_half = ZoneSet([Zone("door", np.array([[0, 0], [0.5, 0], [0.5, 1], [0, 1]]))])
    d = DoorDisplay(zones={"": left_half}, clock=Clock())
    outside = frame({1: MASK})
    outside.faces.xyxy[:] = [120, 10, 150, 40]  # centre x 135 of 160: right half
    d.write(outside, IMAGE)
    assert state(d) == "idle"
    d.write(frame({1: MASK}), IMAGE)  # centre x 25: inside
    assert state(d) == "masked"


def read_event(resp) -> dict | None:
    """The next ``door`` event of a server-sent event stream (None at its end)."""
    data = None
    while True:
        line = resp.fp.readline()
        if not line:
            return None
        line = line.decode().rstrip("\n")
        if line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            return data


def test_event_stream_sends_changes_and_ends_with_the_view() -> None:
    view = WebView(port=0).start()
    mount_door(view)
    conn = http.client.HTTPConnection("127.0.0.1", view.port, timeout=5)
    try:
        conn.request("GET", "/door/events")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
        assert read_event(resp) == {"state": "idle", "seq": 0}
        view.send(event("alert", 4), IMAGE)
        assert read_event(resp) == {"state": "unmasked", "seq": 1}
        view.write(frame({4: MASK}), IMAGE)
        assert read_event(resp) == {"state": "masked", "seq": 2}
        page = http.client.HTTPConnection("127.0.0.1", view.port, timeout=5)
        page.request("GET", "/door")
        answer = page.getresponse()
        body = answer.read().decode()
        assert answer.status == 200 and "EventSource" in body and "Please wear a mask" in body
        assert "connect-src 'self'" in answer.getheader("Content-Security-Policy", "")
        page.close()
        view.close()
        assert read_event(resp) is None  # the stream ends when the view closes
    finally:
        conn.close()
        view.close()


def test_door_streams_need_the_login() -> None:
    with WebView(port=0, token="door-tok") as view:
        mount_door(view)
        for path, accept, code in (("/door", "text/html", 303), ("/door/events", "text/event-stream", 401)):
            conn = http.client.HTTPConnection("127.0.0.1", view.port, timeout=5)
            conn.request("GET", path, headers={"Accept": accept})
            assert conn.getresponse().status == code
            conn.close()


# --- the page in a real browser -------------------------------------------------------------------------------------

_WATCH = """() => {
  window.__changes = [];
  new MutationObserver(() => window.__changes.push([document.body.dataset.state,
      performance.timeOrigin + performance.now()])).observe(document.body, {attributes: true,
      attributeFilter: ["data-state"]});
}"""
COLORS = {"idle": "rgb(31, 41, 55)", "masked": "rgb(21, 128, 61)", "unmasked": "rgb(185, 28, 28)"}
TEXTS = {"idle": "Please look at the camera", "masked": "Thank you!", "unmasked": "Please wear a mask"}


def wait_state(page, wanted: str) -> None:
    page.wait_for_function("(s) => document.body.dataset.state === s", arg=wanted, timeout=10_000)


def test_door_page_in_headless_chromium() -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with WebView(port=0) as view, sync_playwright() as p:
        mount_door(view)
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1024, "height": 600})
            page.goto(view.url + "door")
            wait_state(page, "idle")
            page.evaluate(_WATCH)
            shown = {}
            for wanted, feed in (
                ("masked", lambda: view.write(frame({1: MASK}), IMAGE)),
                ("unmasked", lambda: view.send(event("alert", 2), IMAGE)),
                ("idle", lambda: view.send(event("end", 1), IMAGE) or view.send(event("end", 2), IMAGE)),
            ):
                feed()
                wait_state(page, wanted)
                page.wait_for_function(
                    "(c) => getComputedStyle(document.body).backgroundColor === c", arg=COLORS[wanted]
                )
                shown[wanted] = page.inner_text("#message")
                page.screenshot(path=str(artifacts / f"door_{wanted}.png"))
            assert shown == {state: TEXTS[state] for state in shown}
            latency = measure_latency(view, page)
        finally:
            browser.close()
    (artifacts / "door_latency.json").write_text(json.dumps(latency, indent=2) + "\n")
    assert latency["changes"] == 2 * latency["rounds"]  # every change reached the page, none twice


def measure_latency(view: WebView, page, rounds: int = 20) -> dict:
    """Milliseconds from ``send()`` to the page's change: an alert turns it red, the alerted person's ``end`` back
    to green (a masked person stays in view)."""
    sent: list[tuple[str, float]] = []
    view.write(frame({1: MASK}), IMAGE)
    wait_state(page, "masked")
    page.evaluate("() => { window.__changes = []; }")
    for i in range(rounds):
        for wanted, kind in (("unmasked", "alert"), ("masked", "end")):
            t = time.time()
            view.send(event(kind, 200 + i), IMAGE)
            sent.append((wanted, t * 1000))
            wait_state(page, wanted)
            time.sleep(0.05)
    changes = page.evaluate("() => window.__changes")
    delays: dict[str, list[float]] = {"unmasked": [], "masked": []}
    for (wanted, t_ms), (state, seen_ms) in zip(sent, changes, strict=False):
        assert state == wanted
        delays[wanted].append(seen_ms - t_ms)
    return {
        "rounds": rounds,
        "changes": len(changes),
        "median_ms": {k: round(statistics.median(v), 1) for k, v in delays.items()},
        "max_ms": {k: round(max(v), 1) for k, v in delays.items()},
    }
