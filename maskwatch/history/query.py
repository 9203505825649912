"""Reading the history by period: hours or days in a time zone (the machine's local one unless given), from the
tally, so a month's report reads a few thousand rows. The parts of ``[since, until)`` that cut a 15-minute slot
are counted from the rows themselves, so any start and end time is exact."""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Literal

from maskwatch.history.db import SLOT_S
from maskwatch.history.store import TALLY_FIELDS, raw_tally
from maskwatch.monitor.records import COMPLIANCE, compliance

By = Literal["hour", "day"]
ENTRIES_CROSSINGS = "line crossings in"
ENTRIES_PEOPLE = "people first seen"


@dataclass
class Period:
    """One hour or day: people first seen in it (of them decided, unmasked), alerts and line crossings in it."""

    period: str
    start: str | None = None
    people: int = 0
    decided: int = 0
    unmasked: int = 0
    alerts: int = 0
    cross_in: int = 0
    cross_out: int = 0
    entries: int = 0

    @property
    def compliance(self) -> float | None:
        return compliance(self.decided, self.unmasked)

    def add(self, counts: Sequence[int]) -> None:
        for name, n in zip(TALLY_FIELDS, counts, strict=True):
            setattr(self, name, getattr(self, name) + int(n))

    def to_json(self) -> dict:
        share = self.compliance
        return asdict(self) | {"compliance": None if share is None else round(share, 4)}


def local(ts: float, tz: tzinfo | None) -> datetime:
    """``ts`` (UTC seconds) as an aware datetime in ``tz`` (None: this machine's local time)."""
    return datetime.fromtimestamp(ts, tz) if tz is not None else datetime.fromtimestamp(ts).astimezone()


def period_start(ts: float, by: By, tz: tzinfo | None) -> datetime:
    when = local(ts, tz).replace(minute=0, second=0, microsecond=0)
    return when.replace(hour=0) if by == "day" else when


def period_label(start: datetime, by: By) -> str:
    return f"{start:%Y-%m-%d}" if by == "day" else f"{start:%Y-%m-%d %H:00}"


def tz_label(tz: tzinfo | None, at: float) -> str:
    """The time zone periods are counted in, as a reader wants it said: ``local time, Europe/Berlin (CET,
    UTC+01:00)``; ``tz`` None is this machine's local time."""
    when = local(at, tz)
    offset = when.strftime("%z")
    offset_text = f"UTC{offset[:3]}:{offset[3:]}"
    abbrev = when.tzname() or ""
    name = str(getattr(tz, "key", "") or "") if tz is not None else _local_zone_name()
    name = name or abbrev or offset_text
    details = [p for p in (abbrev, offset_text) if p != name and not (p is abbrev and p.startswith("UTC"))]
    text = f"{name} ({', '.join(details)})" if details else name
    return f"local time, {text}" if tz is None else text


def _local_zone_name() -> str:
    env = os.environ.get("TZ", "").lstrip(":")
    if env:
        return env
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return ""
    return target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else ""


def parse_when(text: str, *, end: bool = False, tz: tzinfo | None = None) -> float:
    """An ISO date (``2026-12-07``) or date and time (``2026-12-07T14:30``, ``2026-12-07 14:30``, with or without
    a zone) as UTC seconds; a time without a zone is in ``tz`` (None: local). A date alone is its midnight, or with
    ``end`` the midnight after it (``--until 2026-12-07`` includes that day). ValueError when unreadable."""
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        when = datetime.fromisoformat(text)
    else:
        when = datetime.combine(day + timedelta(days=1) if end else day, time())
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz) if tz is not None else when.astimezone()
    return when.timestamp()


def tally_between(conn: sqlite3.Connection, t0: float, t1: float, sources: Sequence[str] = ()) -> dict[int, list[int]]:
    """Counts per slot over ``[t0, t1)`` (all sources, or those named), whole slots from the tally."""
    first, last = math.ceil(t0 / SLOT_S), math.floor(t1 / SLOT_S)  # whole slots: [first, last)
    where = f" AND source IN ({', '.join('?' * len(sources))})" if sources else ""
    sums = ", ".join(f"sum({f})" for f in TALLY_FIELDS)
    out: dict[int, list[int]] = {}
    if first < last:
        query = f"SELECT slot, {sums} FROM tally WHERE slot >= ? AND slot < ?{where} GROUP BY slot"
        for slot, *counts in conn.execute(query, (first, last, *sources)):
            out[slot] = list(counts)
        edges = [(t0, first * SLOT_S), (last * SLOT_S, t1)]
    else:
        edges = [(t0, t1)]
    for a, b in edges:
        if a >= b:
            continue
        for (slot, source), counts in raw_tally(conn, a, b).items():
            if not sources or source in sources:
                row = out.setdefault(slot, [0] * len(TALLY_FIELDS))
                out[slot] = [x + y for x, y in zip(row, counts, strict=True)]
    return out


def has_crossings(conn: sqlite3.Connection, sources: Sequence[str] = ()) -> bool:
    """Whether the history holds line crossings (of the sources named): then entries are crossings in."""
    where = f" AND source IN ({', '.join('?' * len(sources))})" if sources else ""
    query = f"SELECT 1 FROM tally WHERE cross_in + cross_out > 0{where} LIMIT 1"
    return conn.execute(query, tuple(sources)).fetchone() is not None


def span(conn: sqlite3.Connection) -> tuple[float, float] | None:
    """The first and last slot's start times in the history, or None when it is empty."""
    low, high = conn.execute("SELECT min(slot), max(slot) FROM tally").fetchone()
    return None if low is None else (low * SLOT_S, (high + 1) * SLOT_S)


def periods(slots: dict[int, list[int]], by: By, tz: tzinfo | None, *, crossings: bool) -> list[Period]:
    """The periods (hours or days in ``tz``) that have any count, in time order."""
    found: dict[str, Period] = {}
    for slot in sorted(slots):
        start = period_start(slot * SLOT_S, by, tz)
        key = period_label(start, by)
        found.setdefault(key, Period(key, start.isoformat())).add(slots[slot])
    for period in found.values():
        period.entries = period.cross_in if crossings else period.people
    return list(found.values())


def history_report(
    conn: sqlite3.Connection,
    *,
    since: float | None = None,
    until: float | None = None,
    by: By = "day",
    tz: tzinfo | None = None,
    sources: Sequence[str] = (),
    path: Path | None = None,
    now: float | None = None,
) -> dict:
    """The report ``maskwatch report`` prints and the history page shows, as JSON-ready data."""
    now = datetime.now().timestamp() if now is None else now
    whole = span(conn)
    t0 = since if since is not None else (whole[0] if whole else now)
    t1 = until if until is not None else max(now, whole[1] if whole else now)
    crossings = has_crossings(conn, sources)
    rows = periods(tally_between(conn, t0, t1, sources), by, tz, crossings=crossings) if t1 > t0 else []
    total = Period("total")
    for row in rows:
        total.add([getattr(row, f) for f in TALLY_FIELDS])
    total.entries = total.cross_in if crossings else total.people
    return {
        "history": str(path) if path is not None else None,
        "since": local(t0, tz).isoformat(timespec="seconds"),
        "until": local(t1, tz).isoformat(timespec="seconds"),
        "by": by,
        "timezone": tz_label(tz, t1 - 1 if t1 > t0 else t0),
        "sources": list(sources) or None,
        "entries_are": ENTRIES_CROSSINGS if crossings else ENTRIES_PEOPLE,
        "compliance_is": COMPLIANCE,
        "periods": [p.to_json() for p in rows],
        "total": total.to_json(),
    }
