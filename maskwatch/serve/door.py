"""The door display (``GET /door`` on the HTTP view): a full-screen kiosk page for the person at the door.

Three states, decided from what the monitor already hands the view:

- ``unmasked`` (red, "please wear a mask"): a person in view was alerted (an ``alert`` event: decided unmasked or
  wearing the mask wrongly, seen long enough, see the alert policy) and is not decided masked now;
- ``masked`` (green, "thank you"): no such person, and a person in view is decided masked (the tracked face's
  decided label, which the overlay draws green);
- ``idle`` (neutral, "please look at the camera"): nobody in view for ``idle_after_s``, or only people not decided
  yet; also when no frame came for ``stale_after_s`` (the source stalled).

The page follows ``/door/events``, server-sent events that send the state when a client connects and on every
change; the stream ends when the view closes, and the browser's EventSource reconnects by itself.
With several sources, ``?source=NAME`` picks the door (default: the first source). With zones, a face that does
not count there (outside the watch zones, or in an ignore zone) is nobody at the door.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from maskwatch.serve.routes import HTML, Reply, Request
from maskwatch.types import NO_TRACK, UNDECIDED, Event, FrameResult, MaskClass

if TYPE_CHECKING:
    from maskwatch.monitor.zones import ZoneSet
    from maskwatch.serve.web import WebView

DoorState = Literal["idle", "masked", "unmasked"]
KEEPALIVE_S = 15.0  # a comment line this often, so a client that left is noticed
TICK_S = 0.2  # how often a stream re-reads the state without a change (the idle timers)
FORGET_S = 60.0  # an alerted person out of view this long is forgotten (runs without `end` events)


@dataclass(frozen=True)
class DoorView:
    """What the page shows: the state, and how many changes the door has seen (``seq``)."""

    state: DoorState
    seq: int

    def to_json(self) -> dict:
        return {"state": self.state, "seq": self.seq}


class _Door:
    """The people at one door: who is in view with which decided label, who was alerted."""

    def __init__(self) -> None:
        self.labels: dict[int, int] = {}  # track id -> decided class id (or UNDECIDED), as of the latest frame
        self.alerted: dict[int, tuple[float, int]] = {}  # alerted track id -> (clock time last in view, its label)
        self.last_person = -1e18  # clock time someone was last in view
        self.last_frame = -1e18

    def frame(self, track_ids: np.ndarray, class_ids: np.ndarray, now: float) -> None:
        self.labels = {int(t): int(c) for t, c in zip(track_ids, class_ids, strict=True) if t != NO_TRACK}
        for tid, (seen, label) in list(self.alerted.items()):  # forgotten on `end`, or here without end events
            if tid in self.labels:
                self.alerted[tid] = (now, self.labels[tid] if self.labels[tid] != UNDECIDED else label)
            elif now - seen > FORGET_S:
                del self.alerted[tid]
        self.last_frame = now
        if self.labels:
            self.last_person = now

    def event(self, event: Event, now: float) -> None:
        label = MaskClass.from_key(event.label) if event.label in _KEYS else UNDECIDED
        if event.event == "alert":
            self.alerted[event.track_id] = (now, label)
            self.labels[event.track_id] = label
            self.last_person = now
        elif event.event == "update" and label != UNDECIDED:
            if event.track_id in self.labels:
                self.labels[event.track_id] = label
            if event.track_id in self.alerted:
                self.alerted[event.track_id] = (self.alerted[event.track_id][0], label)
        elif event.event == "end":
            self.labels.pop(event.track_id, None)
            self.alerted.pop(event.track_id, None)

    def state(self, now: float, idle_after_s: float, stale_after_s: float, previous: DoorState) -> DoorState:
        if now - self.last_frame > stale_after_s and now - self.last_person > stale_after_s:
            return "idle"
        # an alerted person not masked now, in view or missed for less than idle_after_s (a face the detector lost)
        for tid, (seen, label) in self.alerted.items():
            if self.labels.get(tid, label) != MaskClass.WITH_MASK and (tid in self.labels or now - seen < idle_after_s):
                return "unmasked"
        if any(c == MaskClass.WITH_MASK for c in self.labels.values()):
            return "masked"
        if not self.labels and previous != "idle" and now - self.last_person < idle_after_s:
            return previous  # nobody for a moment (a missed detection): keep what is shown a little longer
        return "idle"


_KEYS = {c.key for c in MaskClass}


class DoorDisplay:
    """Follows the view's frames and events (a :class:`~maskwatch.serve.web.Watcher`) and serves the page and
    its event stream. ``sources``: the view's source names (None: one source, names ignored); ``zones``: each
    source's zones (key ``""`` for one source), outside which a face is nobody at the door."""

    def __init__(
        self,
        sources: Sequence[str] | None = None,
        *,
        zones: Mapping[str, ZoneSet] | None = None,
        idle_after_s: float = 1.0,
        stale_after_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.names = list(sources) if sources else []
        self.idle_after_s, self.stale_after_s, self.clock = float(idle_after_s), float(stale_after_s), clock
        self._doors = {name: _Door() for name in self.names or [""]}
        self.zones = {name: z for name, z in (zones or {}).items() if z}
        self._shown: dict[str, DoorView] = {name: DoorView("idle", 0) for name in self._doors}
        self._cond = threading.Condition()
        self._closed = False

    def _door(self, name: str) -> str:
        return name if name in self._doors else next(iter(self._doors))

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        """A frame: who is in view now, with the label each was decided (the tracked faces)."""
        faces, now = result.faces, self.clock()
        name = self._door(result.frame.name)
        zones = self.zones.get(name)
        if zones is not None and len(faces):
            height, width = result.frame.image.shape[:2]
            faces = faces[zones.counted(faces.xyxy, (width, height))]
        with self._cond:
            self._doors[name].frame(faces.track_id, faces.class_id, now)
            self._update(name, now)

    def send(self, event: Event, image: np.ndarray) -> None:
        """An event: an ``alert`` turns the door red at once; ``update`` and ``end`` follow the person."""
        now = self.clock()
        with self._cond:
            name = self._door(event.source)
            self._doors[name].event(event, now)
            self._update(name, now)

    def _update(self, name: str, now: float) -> None:
        """Recompute door ``name`` (the lock held); wake the streams when what is shown changes."""
        shown = self._shown[name]
        state = self._doors[name].state(now, self.idle_after_s, self.stale_after_s, shown.state)
        if state != shown.state:
            self._shown[name] = DoorView(state, shown.seq + 1)
            self._cond.notify_all()

    def current(self, source: str | None = None) -> DoorView:
        """What door ``source`` (default the first) shows now, its timers applied."""
        with self._cond:
            name = self._door(source or "")
            self._update(name, self.clock())
            return self._shown[name]

    def close(self) -> None:
        """End every stream (idempotent)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def page(self, request: Request) -> Reply:
        """``GET /door``: the kiosk page."""
        return Reply(PAGE.encode(), ctype=HTML, headers={"Content-Security-Policy": CSP})

    def events(self, request: Request) -> Reply:
        """``GET /door/events``: server-sent events, one ``door`` event per change (the first at once)."""
        source = request.arg("source")
        headers = {"X-Accel-Buffering": "no"}
        return Reply(ctype="text/event-stream", headers=headers, stream=self._stream(source))

    def _stream(self, source: str | None) -> Iterator[bytes]:
        yield b"retry: 1000\n\n"
        last, quiet_since = -1, time.monotonic()
        while True:
            view = self.current(source)
            if view.seq != last:
                last, quiet_since = view.seq, time.monotonic()
                yield f"event: door\ndata: {json.dumps(view.to_json())}\n\n".encode()
            elif time.monotonic() - quiet_since >= KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield b": keep-alive\n\n"
            with self._cond:
                if self._closed:
                    return
                self._cond.wait(TICK_S)
                if self._closed:
                    return


def mount_door(
    view: WebView, sources: Sequence[str] | None = None, *, zones: Mapping[str, ZoneSet] | None = None
) -> DoorDisplay:
    """Serve the door display on ``view`` (``/door``, ``/door/events``), fed by the view's frames and events;
    ``zones`` per source (see :class:`DoorDisplay`)."""
    door = DoorDisplay(sources, zones=zones)
    view.watch(door)
    view.add_route("/door", door.page)
    view.add_route("/door/events", door.events)
    return door


CSP = "default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
CSP += "; frame-ancestors 'none'"
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>maskwatch door</title>
<style>
html,body{margin:0;height:100%;overflow:hidden;font-family:system-ui,sans-serif;cursor:none}
body{display:flex;flex-direction:column;align-items:center;justify-content:center;text-align:center;
transition:background-color .15s;background:#1f2937;color:#f3f4f6}
body.masked{background:#15803d;color:#fff} body.unmasked{background:#b91c1c;color:#fff}
#icon{font-size:22vmin;line-height:1} #message{font-size:9vmin;font-weight:700;margin:3vmin 4vw 0}
#detail{font-size:4vmin;opacity:.85;margin-top:2vmin} #conn{position:fixed;bottom:1vmin;right:2vmin;font-size:2vmin}
</style></head><body class="idle" data-state="idle">
<div id="icon" aria-hidden="true">&#9679;</div>
<div id="message" role="status" aria-live="assertive">Please look at the camera</div>
<div id="detail">Masks are required in this shop</div><div id="conn"></div>
<script>
"use strict";
const TEXT = {
  idle: ["\\u25CF", "Please look at the camera", "Masks are required in this shop"],
  masked: ["\\u2714", "Thank you!", "Come in"],
  unmasked: ["\\u2716", "Please wear a mask", "Put on your mask, covering nose and mouth"],
};
const $ = (id) => document.getElementById(id);
function show(state) {
  if (!(state in TEXT)) return;
  const [icon, message, detail] = TEXT[state];
  document.body.className = state; document.body.dataset.state = state;
  $("icon").textContent = icon; $("message").textContent = message; $("detail").textContent = detail;
}
const source = new URLSearchParams(location.search).get("source");
const events = new EventSource("door/events" + (source ? "?source=" + encodeURIComponent(source) : ""));
events.addEventListener("door", (e) => { show(JSON.parse(e.data).state); $("conn").textContent = ""; });
events.onerror = () => {  // the browser retries by itself; refused (logged out, expired): reload, to the login
  $("conn").textContent = "reconnecting\\u2026";
  if (events.readyState === EventSource.CLOSED) setTimeout(() => location.reload(), 5000);
};
</script></body></html>
"""
