"""Writing the history: each event is stored, the person it belongs to is derived from it, the tally follows.

A person is one track of one run and source that counts as a person in the run (``event.person``: it showed life,
in the zones if there are any), so the history counts the people the run's summary counts; the events of other
tracks (a label change of a face that never moved, a crossing outside the zones) are stored, without a person.
Their first sighting is the first event's time less the time the
track had been followed then (``duration_s``), never before the run started; ``decided``: they had a label;
``unmasked``: they were seen without a mask or wearing it incorrectly (a label of a class that alerts, or an
``update`` event: with three classes every change of label involves one of those two); ``alerts``: their alert
events. Compliance, as in the end-of-run report: the share of decided people never seen unmasked.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from maskwatch.history.db import SLOT_S
from maskwatch.types import Event, MaskClass

TALLY_FIELDS = ("people", "decided", "unmasked", "alerts", "cross_in", "cross_out")
_UNMASKED_LABELS = frozenset(c.key for c in MaskClass if c.alerts)


def slot_of(ts: float) -> int:
    """The 15-minute slot of a UTC time in seconds."""
    return int(ts // SLOT_S)


def event_time(event: Event) -> float:
    """The event's ``ts`` (ISO 8601, UTC when it names no zone) as UTC seconds."""
    when = datetime.fromisoformat(event.ts.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@dataclass
class _Person:
    id: int
    first_seen: float
    decided: bool
    unmasked: bool


class Tally:
    """Changes to the ``tally`` table, gathered over a batch and added in one statement per slot."""

    def __init__(self) -> None:
        self.delta: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0] * len(TALLY_FIELDS))

    def add(self, slot: int, source: str, field: str, n: int = 1) -> None:
        self.delta[(slot, source)][TALLY_FIELDS.index(field)] += n

    def flush(self, conn: sqlite3.Connection) -> None:
        sets = ", ".join(f"{f} = {f} + excluded.{f}" for f in TALLY_FIELDS)
        conn.executemany(
            f"INSERT INTO tally (slot, source, {', '.join(TALLY_FIELDS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT (slot, source) DO UPDATE SET {sets}",
            [(slot, source, *counts) for (slot, source), counts in self.delta.items() if any(counts)],
        )
        self.delta.clear()


def store_events(
    conn: sqlite3.Connection, run: int, run_started: float, events: Iterable[Event], *, now: float | None = None
) -> int:
    """Insert ``events`` of run ``run`` with their people and tally; the caller commits. Returns the count. An event
    whose ``ts`` cannot be read is stored at ``now``."""
    tally = Tally()
    n = 0
    for event in events:
        try:
            ts = event_time(event)
        except ValueError:
            ts = now if now is not None else run_started
        conn.execute(
            "INSERT INTO events (run, ts, kind, source, track, label, confidence, frame, t_s, duration_s, line, "
            "direction, snapshot) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run,
                ts,
                event.event,
                event.source,
                int(event.track_id),
                event.label,
                float(event.confidence),
                int(event.frame),
                float(event.t_s),
                float(event.duration_s),
                event.line,
                event.direction,
                event.snapshot,
            ),
        )
        if event.person:
            _person(conn, tally, run, run_started, event, ts)
        if event.event == "alert":
            tally.add(slot_of(ts), event.source, "alerts")
        elif event.event == "cross" and event.direction in ("in", "out"):
            tally.add(slot_of(ts), event.source, f"cross_{event.direction}")
        n += 1
    tally.flush(conn)
    return n


def _person(conn: sqlite3.Connection, tally: Tally, run: int, run_started: float, event: Event, ts: float) -> None:
    decided = event.label is not None
    unmasked = event.label in _UNMASKED_LABELS or event.event == "update"
    alert, ended = int(event.event == "alert"), int(event.event == "end")
    key = (run, event.source, int(event.track_id))
    row = conn.execute(
        "SELECT id, first_seen, decided, unmasked FROM people WHERE run = ? AND source = ? AND track = ?", key
    ).fetchone()
    if row is None:
        first = min(ts, max(run_started, ts - float(event.duration_s)))
        conn.execute(
            "INSERT INTO people (run, source, track, first_seen, last_seen, label, decided, unmasked, alerts, ended) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, first, ts, event.label, int(decided), int(unmasked), alert, ended),
        )
        slot = slot_of(first)
        tally.add(slot, event.source, "people")
        tally.add(slot, event.source, "decided", int(decided))
        tally.add(slot, event.source, "unmasked", int(unmasked))
        return
    person = _Person(row[0], row[1], bool(row[2]), bool(row[3]))
    conn.execute(
        "UPDATE people SET last_seen = max(last_seen, ?), label = coalesce(?, label), decided = ?, unmasked = ?, "
        "alerts = alerts + ?, ended = max(ended, ?) WHERE id = ?",
        (ts, event.label, int(person.decided or decided), int(person.unmasked or unmasked), alert, ended, person.id),
    )
    slot = slot_of(person.first_seen)
    tally.add(slot, event.source, "decided", int(decided and not person.decided))
    tally.add(slot, event.source, "unmasked", int(unmasked and not person.unmasked))


def raw_tally(conn: sqlite3.Connection, t0: float, t1: float) -> dict[tuple[int, str], list[int]]:
    """The tally of ``[t0, t1)`` counted from the rows themselves (slow over long spans: for partial slots, and to
    rebuild slots after a deletion)."""
    rows: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0] * len(TALLY_FIELDS))
    for slot, source, people, decided, unmasked in conn.execute(
        f"SELECT CAST(first_seen / {SLOT_S} AS INTEGER) AS s, source, count(*), sum(decided), "
        "sum(unmasked) FROM people WHERE first_seen >= ? AND first_seen < ? GROUP BY s, source",
        (t0, t1),
    ):
        rows[(slot, source)][0:3] = [people, decided, unmasked]
    for slot, source, alerts, cross_in, cross_out in conn.execute(
        f"SELECT CAST(ts / {SLOT_S} AS INTEGER) AS s, source, sum(kind = 'alert'), "
        "sum(kind = 'cross' AND direction = 'in'), sum(kind = 'cross' AND direction = 'out') FROM events "
        "WHERE kind IN ('alert', 'cross') AND ts >= ? AND ts < ? GROUP BY s, source",
        (t0, t1),
    ):
        rows[(slot, source)][3:6] = [alerts, cross_in, cross_out]
    return dict(rows)


def rebuild_slot(conn: sqlite3.Connection, slot: int) -> None:
    """Count one slot's tally again from its rows (after rows of it were deleted)."""
    conn.execute("DELETE FROM tally WHERE slot = ?", (slot,))
    rows = raw_tally(conn, slot * SLOT_S, (slot + 1) * SLOT_S)
    conn.executemany(
        f"INSERT INTO tally (slot, source, {', '.join(TALLY_FIELDS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(s, source, *counts) for (s, source), counts in rows.items() if any(counts)],
    )


@dataclass(frozen=True)
class Deleted:
    """What :func:`delete_before` removed."""

    events: int
    people: int
    runs: int


def delete_before(conn: sqlite3.Connection, cutoff: float) -> Deleted:
    """Delete the events, people (first seen) and ended runs before ``cutoff`` (UTC seconds) and their tally, in
    one transaction."""
    with conn:
        events = conn.execute("DELETE FROM events WHERE ts < ?", (cutoff,)).rowcount
        people = conn.execute("DELETE FROM people WHERE first_seen < ?", (cutoff,)).rowcount
        runs = conn.execute(
            "DELETE FROM runs WHERE ended IS NOT NULL AND ended < ? "
            "AND NOT EXISTS (SELECT 1 FROM people WHERE people.run = runs.id)",
            (cutoff,),
        ).rowcount
        conn.execute("DELETE FROM tally WHERE slot < ?", (slot_of(cutoff),))
        rebuild_slot(conn, slot_of(cutoff))
    return Deleted(events, people, runs)
