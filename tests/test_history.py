"""The SQLite history: people derived from events, the tally reports read, retention, scheduled reports, and the
faults of a real SQLite file (locked, not a database, another program's, full)."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from maskwatch.errors import OutputError
from maskwatch.history.db import connect
from maskwatch.history.query import history_report, tally_between
from maskwatch.history.schedule import ReportSchedule
from maskwatch.history.store import raw_tally, store_events
from maskwatch.history.writer import HistoryWriter
from maskwatch.runner.faults import fault_counts, reset_faults
from maskwatch.types import Event

IMAGE = np.zeros((4, 4, 3), np.uint8)
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC).timestamp()
BERLIN = ZoneInfo("Europe/Berlin")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ev(kind: str, ts: float, track: int, label: str | None, *, source: str = "door", **kw) -> Event:
    return Event(kind, iso(ts), source, 1, track, label, 0.9, [1, 2, 3, 4], **kw)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def writer(path: Path, clock: Clock, **kw) -> HistoryWriter:
    kw = {"report_at": None, "poll_s": 0.02, "tz": UTC} | kw
    return HistoryWriter(path, clock=clock, **kw)


def rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_people_are_derived_from_events_as_the_report_defines_them(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with writer(path, Clock(T0)) as w:
        w.send(ev("alert", T0 + 60, 1, "without_mask", duration_s=2.0), IMAGE)
        w.send(ev("end", T0 + 90, 1, "without_mask", duration_s=32.0), IMAGE)
        w.send(ev("end", T0 + 100, 2, "with_mask", duration_s=5.0), IMAGE)
        w.send(ev("update", T0 + 200, 3, "with_mask", duration_s=4.0), IMAGE)  # was unmasked before
        w.send(ev("end", T0 + 300, 3, "with_mask", duration_s=104.0), IMAGE)
        w.send(ev("end", T0 + 400, 4, None, duration_s=3.0), IMAGE)  # never decided
        w.send(ev("end", T0 + 400, 1, "with_mask", source="side"), IMAGE)  # same id, another source
    assert w.stored == 7
    people = rows(path, "SELECT source, track, first_seen, label, decided, unmasked, alerts, ended FROM people")
    assert sorted(people) == [
        ("door", 1, T0 + 58, "without_mask", 1, 1, 1, 1),
        ("door", 2, T0 + 95, "with_mask", 1, 0, 0, 1),
        ("door", 3, T0 + 196, "with_mask", 1, 1, 0, 1),
        ("door", 4, T0 + 397, None, 0, 0, 0, 1),
        ("side", 1, T0 + 400, "with_mask", 1, 0, 0, 1),
    ]
    conn = connect(path, readonly=True)
    report = history_report(conn, by="hour", tz=UTC, now=T0 + 3600)
    conn.close()
    total = report["total"]
    assert (total["people"], total["decided"], total["unmasked"], total["alerts"]) == (5, 4, 2, 1)
    assert total["compliance"] == 0.5 and total["entries"] == 5 and report["entries_are"] == "people first seen"
    assert [p["period"] for p in report["periods"]] == ["2026-12-07 09:00"]
    assert rows(path, "SELECT count(*) FROM runs WHERE ended IS NOT NULL") == [(1,)]


def test_tally_matches_the_rows_for_a_random_day(tmp_path: Path) -> None:
    """The incremental tally (what reports read) equals counting the rows themselves, slot by slot."""
    rng = random.Random(7)
    events, t = [], T0
    for track in range(400):
        t += rng.uniform(1, 400)
        label = rng.choice(["with_mask", "without_mask", "mask_weared_incorrect", None])
        source = rng.choice(["door", "side"])
        if rng.random() < 0.5:
            events.append(ev("cross", t, track, label, source=source, line="door", direction="in"))
        if label in ("without_mask", "mask_weared_incorrect") and rng.random() < 0.6:
            events.append(ev("alert", t + 1, track, label, source=source, duration_s=1.0))
        if rng.random() < 0.2:
            events.append(ev("update", t + 2, track, "with_mask", source=source, duration_s=2.0))
        events.append(ev("end", t + rng.uniform(3, 2000), track, label, source=source, duration_s=10.0))
    events.sort(key=lambda e: e.ts)
    conn = connect(tmp_path / "h.db")
    with conn:
        run = conn.execute("INSERT INTO runs (started) VALUES (?)", (T0,)).lastrowid
    for i in range(0, len(events), 37):  # batches, as the writer stores them
        with conn:
            store_events(conn, run, T0, events[i : i + 37])
    stored = {(s, src): list(c) for s, src, *c in conn.execute("SELECT * FROM tally")}
    counted = {k: v for k, v in raw_tally(conn, 0, T0 + 10 * 86400).items() if any(v)}
    assert stored == counted and len(stored) > 50
    # an odd span: whole slots from the tally, the cut ends from the rows, as one answer
    odd = tally_between(conn, T0 + 1234.5, T0 + 40000.25)
    rows_only = {}
    for (slot, _), c in raw_tally(conn, T0 + 1234.5, T0 + 40000.25).items():
        rows_only[slot] = [a + b for a, b in zip(rows_only.get(slot, [0] * 6), c, strict=True)]
    assert odd == {s: c for s, c in rows_only.items()}
    conn.close()


def test_retention_deletes_old_rows_at_start_and_daily(tmp_path: Path) -> None:
    path, clock = tmp_path / "h.db", Clock(T0)
    with writer(path, clock, retention_days=2) as w:
        w.send(ev("end", T0 - 3 * 86400, 1, "with_mask"), IMAGE)  # already too old, stored then deleted next day
        w.send(ev("end", T0 - 86400, 2, "with_mask"), IMAGE)
        w.send(ev("end", T0, 3, "without_mask"), IMAGE)
        wait_for(lambda: w.stored == 3)
    assert len(rows(path, "SELECT * FROM people")) == 3
    clock.now = T0 + 1  # a new run: the 3-day-old person goes at start
    with writer(path, clock, retention_days=2) as w:
        assert rows(path, "SELECT track FROM people ORDER BY track") == [(2,), (3,)]
        clock.now = T0 + 86400 + 10  # a day later, the run still going: the next one goes too
        wait_for(lambda: rows(path, "SELECT track FROM people") == [(3,)])
        assert rows(path, "SELECT count(*) FROM events") == [(1,)]
        assert sum(r[0] for r in rows(path, "SELECT people FROM tally")) == 1


def test_schedule_crosses_midnight_and_daylight_saving() -> None:
    start = datetime(2027, 3, 26, 12, 0, tzinfo=BERLIN).timestamp()  # a Friday; clocks go forward on Sunday 28th
    schedule = ReportSchedule("00:05", "sun", now=start, tz=BERLIN)
    assert schedule.due(start) == []
    midnight = datetime(2027, 3, 27, 0, 4, 59, tzinfo=BERLIN).timestamp()
    assert schedule.due(midnight) == []
    (daily,) = schedule.due(midnight + 1)
    assert daily.kind == "daily" and daily.stem == "daily-2027-03-27" and daily.end == midnight + 1
    assert daily.end - daily.start == 86400
    assert schedule.due(midnight + 2) == []  # once
    sunday = datetime(2027, 3, 28, 0, 5, tzinfo=BERLIN).timestamp()
    jobs = schedule.due(sunday + 30)
    assert [j.stem for j in jobs] == ["daily-2027-03-28", "weekly-2027-03-28"]
    assert jobs[1].end - jobs[1].start == 7 * 86400
    monday = datetime(2027, 3, 29, 0, 5, tzinfo=BERLIN).timestamp()
    (daily,) = schedule.due(monday)
    assert daily.end - daily.start == 23 * 3600  # the day the clocks went forward had 23 hours
    later = monday + 5 * 86400 + 7200  # the run was paused for days: only the latest report
    assert [j.stem for j in schedule.due(later)] == ["daily-2027-04-03"]


def test_a_live_run_writes_daily_and_weekly_reports_when_its_clock_passes_report_at(tmp_path: Path) -> None:
    saturday_night = datetime(2026, 12, 12, 23, 54, tzinfo=BERLIN).timestamp()
    clock = Clock(saturday_night)
    reports = tmp_path / "reports"
    with writer(tmp_path / "h.db", clock, report_at="23:55", report_weekday="sat", reports_dir=reports, tz=BERLIN) as w:
        w.send(ev("alert", saturday_night - 3600, 1, "without_mask", duration_s=2.0), IMAGE)
        w.send(ev("end", saturday_night - 3500, 1, "without_mask", duration_s=100.0), IMAGE)
        w.send(ev("end", saturday_night - 3 * 86400, 2, "with_mask", duration_s=10.0), IMAGE)
        wait_for(lambda: w.stored == 3)
        time.sleep(0.1)
        assert not reports.exists()
        clock.now = saturday_night + 61
        wait_for(lambda: len(w.reports) == 4)
    names = sorted(p.name for p in reports.iterdir())
    assert names == ["daily-2026-12-12.md", "daily-2026-12-12.png", "weekly-2026-12-12.md", "weekly-2026-12-12.png"]
    daily = (reports / "daily-2026-12-12.md").read_text()
    assert "- People first seen: 1 (decided 1)" in daily and "- Alerts: 1" in daily
    assert "| 2026-12-12 22:00 | 1 | 1 | 1 | 1 | 0.0 % |" in daily and "Europe/Berlin (CET, UTC+01:00)" in daily
    weekly = (reports / "weekly-2026-12-12.md").read_text()
    assert "- People first seen: 2 (decided 2)" in weekly and "| 2026-12-09 | 1 | 1 | 0 | 0 | 100.0 % |" in weekly
    import cv2

    chart = cv2.imread(str(reports / "weekly-2026-12-12.png"))
    assert chart is not None and chart.shape == (600, 1000, 3)
    assert np.count_nonzero((chart[..., 2] > 200) & (chart[..., 1] < 60)) > 100  # the red unmasked bar


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"just some text, not a database at all" * 100, "is not a SQLite file or is corrupt"),
        ("sqlite-other", "is not a maskwatch history"),
    ],
)
def test_a_file_that_is_not_a_history_is_one_line(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "h.db"
    if content == "sqlite-other":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE customers (name TEXT)")
        conn.commit()
        conn.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(OutputError, match=message):
        HistoryWriter(path)
    assert path.read_bytes() == before  # untouched


def test_a_locked_file_at_start_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    HistoryWriter(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(OutputError, match="is locked"):
            HistoryWriter(path, busy_timeout_s=0.2)
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_lock_during_the_run_is_a_fault_and_nothing_is_lost(tmp_path: Path) -> None:
    reset_faults()
    path, clock = tmp_path / "h.db", Clock(T0)
    with writer(path, clock, busy_timeout_s=0.1, poll_s=0.05) as w:
        w.send(ev("end", T0, 1, "with_mask"), IMAGE)
        wait_for(lambda: w.stored == 1)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another program holds the file
        w.send(ev("end", T0 + 1, 2, "without_mask"), IMAGE)
        wait_for(lambda: fault_counts().get("history", 0) >= 1)
        other.execute("ROLLBACK")
        other.close()
        wait_for(lambda: w.stored == 2)  # tried again once the lock is gone
    assert rows(path, "SELECT track FROM people ORDER BY track") == [(1,), (2,)]


def test_a_full_queue_drops_with_a_fault_and_close_is_bounded(tmp_path: Path) -> None:
    reset_faults()
    path = tmp_path / "h.db"
    w = writer(path, Clock(T0), busy_timeout_s=5.0, queue_size=2, close_timeout_s=0.5)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(10):
            w.send(ev("end", T0 + i, i, "with_mask"), IMAGE)
        assert fault_counts().get("history", 0) >= 5
        started = time.monotonic()
        w.close()
        w.close()
        assert time.monotonic() - started < 3.0
    finally:
        other.execute("ROLLBACK")
        other.close()


FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys, time
    from pathlib import Path
    import numpy as np
    from maskwatch.history.writer import HistoryWriter
    from maskwatch.runner.faults import fault_counts
    from maskwatch.types import Event

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
    path = Path(sys.argv[1])
    w = HistoryWriter(path, report_at=None, poll_s=0.02)
    w.send(Event("end", "2026-12-07T09:00:00Z", "door", 1, 1, "with_mask", 0.9, [0, 0, 1, 1]), np.zeros(1))
    while w.stored < 1:
        time.sleep(0.02)
    resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 8192, resource.RLIM_INFINITY))
    for i in range(2, 3000):
        w.send(Event("end", "2026-12-07T09:00:01Z", "door", 1, i, "with_mask", 0.9, [0, 0, 1, 1], snapshot="x" * 300),
               np.zeros(1))
        if i % 100 == 0:
            time.sleep(0.05)
    time.sleep(1.0)
    w.close()
    print("faults", fault_counts().get("history", 0), "stored", w.stored)
    """
)


def test_a_full_disk_is_a_fault_and_what_was_committed_stays(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    words = done.stdout.split()
    faults, stored = int(words[words.index("faults") + 1]), int(words[words.index("stored") + 1])
    assert faults >= 1 and 1 <= stored < 2999
    conn = connect(path, readonly=True)  # still a sound history, holding every committed batch
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == stored
    conn.close()


def test_close_from_another_thread_while_sending(tmp_path: Path) -> None:
    w = writer(tmp_path / "h.db", Clock(T0))
    stop = threading.Event()

    def pump() -> None:
        i = 0
        while not stop.is_set():
            w.send(ev("end", T0 + i, i, "with_mask"), IMAGE)
            i += 1

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30  # a busy machine: wait for the first commit, however slow, then close mid-stream
    while w.stored == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    w.close()
    stop.set()
    thread.join(2)
    assert not thread.is_alive() and w.stored > 0


def test_report_periods_follow_the_local_day(tmp_path: Path) -> None:
    """A person first seen at 23:30 UTC is on the next day in Berlin and India (UTC+05:30, a half-hour zone)."""
    path = tmp_path / "h.db"
    late = datetime(2026, 12, 7, 23, 30, tzinfo=UTC).timestamp()
    with writer(path, Clock(late - 7200)) as w:
        w.send(ev("end", late, 1, "with_mask"), IMAGE)
        w.send(ev("end", late - 3600, 2, "without_mask"), IMAGE)  # 22:30 UTC
    conn = connect(path, readonly=True)
    by_zone = {}
    for zone in (UTC, BERLIN, ZoneInfo("Asia/Kolkata")):
        report = history_report(conn, by="hour", tz=zone, now=late + 60)
        by_zone[str(zone)] = [(p["period"], p["people"]) for p in report["periods"]]
    conn.close()
    assert by_zone["UTC"] == [("2026-12-07 22:00", 1), ("2026-12-07 23:00", 1)]
    assert by_zone["Europe/Berlin"] == [("2026-12-07 23:00", 1), ("2026-12-08 00:00", 1)]
    assert by_zone["Asia/Kolkata"] == [("2026-12-08 04:00", 1), ("2026-12-08 05:00", 1)]


def test_days_are_whole_local_days(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    first = datetime(2026, 12, 7, 0, 10, tzinfo=BERLIN).timestamp()
    with writer(path, Clock(first - 60)) as w:
        for i, hours in enumerate((0, 5, 23.5, 24.2, 48)):
            w.send(ev("end", first + hours * 3600, i, "with_mask"), IMAGE)
    conn = connect(path, readonly=True)
    report = history_report(conn, by="day", tz=BERLIN, now=first + 3 * 86400)
    assert [(p["period"], p["people"]) for p in report["periods"]] == [
        ("2026-12-07", 3),
        ("2026-12-08", 1),
        ("2026-12-09", 1),
    ]
    since = (datetime(2026, 12, 8, tzinfo=BERLIN)).timestamp()
    report = history_report(conn, since=since, until=since + 86400, by="day", tz=BERLIN)
    assert report["total"]["people"] == 1 and report["since"].startswith("2026-12-08T00:00:00+01:00")
    conn.close()


def test_history_is_an_event_output_of_tracked_runs_only(tmp_path: Path) -> None:
    from maskwatch.config import load_config
    from maskwatch.wiring.outputs import build_event_outputs

    cfg = load_config(None, {"history.path": str(tmp_path / "h.db"), "history.report_at": None})
    with pytest.raises(OutputError, match="--history needs a video, camera or stream with tracking on"):
        build_event_outputs(cfg, None, tracking=False)
    outputs = build_event_outputs(cfg, None, tracking=True, sources=["door"])
    assert outputs is not None and [type(o).__name__ for o in outputs.outputs] == ["HistoryWriter"]
    with outputs:
        outputs.outputs[0].send(ev("end", T0, 1, "with_mask"), IMAGE)
    assert rows(tmp_path / "h.db", "SELECT track FROM people") == [(1,)]
    assert rows(tmp_path / "h.db", "SELECT sources FROM runs") == [("door",)]
