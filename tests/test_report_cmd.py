"""``maskwatch report`` and ``maskwatch erase`` as a user runs them: a real history file, the command in a
subprocess with its own time zone, exit status and output checked."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from maskwatch.history.writer import HistoryWriter
from maskwatch.types import Event

IMAGE = np.zeros((4, 4, 3), np.uint8)
REPO = Path(__file__).resolve().parents[1]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def at(text: str) -> float:
    """A UTC time given as ``2026-12-07 22:10``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def ev(kind: str, ts: float, track: int, label: str | None, **kw) -> Event:
    return Event(kind, iso(ts), "door", 1, track, label, 0.9, [1, 2, 3, 4], **kw)


def history(path: Path, events: list[Event]) -> Path:
    first = min(datetime.fromisoformat(e.ts).timestamp() for e in events)
    with HistoryWriter(path, report_at=None, clock=lambda: first - 60, poll_s=0.02, retention_days=3650) as w:
        for e in events:
            w.send(e, IMAGE)
    return path


def maskwatch(*args: str, tz: str = "Asia/Kolkata") -> subprocess.CompletedProcess:
    env = os.environ | {"TZ": tz}
    return subprocess.run(
        [sys.executable, "-m", "maskwatch", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


# India is UTC+05:30: 22:10 UTC on the 7th is 03:40 on the 8th, 18:40 UTC is 00:10 on the 8th
DAY = [
    ev("alert", at("2026-12-07 18:40"), 1, "without_mask", duration_s=1.0),
    ev("end", at("2026-12-07 18:45"), 1, "without_mask", duration_s=300.0),
    ev("end", at("2026-12-07 18:50"), 2, "with_mask", duration_s=10.0),
    ev("end", at("2026-12-07 22:10"), 3, "with_mask", duration_s=10.0),
    ev("end", at("2026-12-07 22:15"), 4, None, duration_s=10.0),
    ev("end", at("2026-12-07 18:00"), 5, "with_mask", duration_s=10.0),  # 23:30 on the 7th, India
]


def test_report_by_hour_and_day_in_local_time(tmp_path: Path) -> None:
    path = history(tmp_path / "h.db", DAY)
    done = maskwatch("report", "--history", str(path), "--by", "hour")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"history {path}: 2026-12-07 23:15 to ") and "Asia/Kolkata (IST, UTC+05:30)" in lines[0]
    assert lines[1].startswith("entries: people first seen; compliance: people never seen without a mask")
    table = [line.split() for line in lines[3:]]
    assert table == [
        ["2026-12-07", "23:00", "1", "1", "0", "0", "100.0", "%"],
        ["2026-12-08", "00:00", "2", "2", "1", "1", "50.0", "%"],
        ["2026-12-08", "03:00", "2", "2", "0", "0", "100.0", "%"],
        ["total", "5", "5", "1", "1", "75.0", "%"],
    ]
    by_day = maskwatch("report", "--history", str(path), "--json", "-")
    assert by_day.returncode == 0, by_day.stderr
    report = json.loads(by_day.stdout)  # nothing but the JSON on stdout
    assert [(p["period"], p["people"], p["decided"], p["unmasked"]) for p in report["periods"]] == [
        ("2026-12-07", 1, 1, 0),
        ("2026-12-08", 4, 3, 1),
    ]
    assert report["total"]["compliance"] == 0.75 and report["timezone"].endswith("Asia/Kolkata (IST, UTC+05:30)")
    in_utc = json.loads(maskwatch("report", "--history", str(path), "--json", "-", tz="UTC").stdout)
    assert [(p["period"], p["people"]) for p in in_utc["periods"]] == [("2026-12-07", 5)]


def test_since_and_until_and_a_json_file(tmp_path: Path) -> None:
    path = history(tmp_path / "h.db", DAY)
    out = tmp_path / "r.json"
    done = maskwatch("report", "--history", str(path), "--since", "2026-12-08", "--until", "2026-12-08T03:00",
                     "--by", "hour", "--json", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert [p["period"] for p in report["periods"]] == ["2026-12-08 00:00"]
    assert report["since"] == "2026-12-08T00:00:00+05:30" and report["until"] == "2026-12-08T03:00:00+05:30"
    assert "2026-12-08 00:00" in done.stdout  # the table is printed too
    whole_day = json.loads(maskwatch("report", "--history", str(path), "--until", "2026-12-08", "--json", "-").stdout)
    assert whole_day["total"]["people"] == 5  # a date alone includes that whole day


def test_entries_are_crossings_in_when_lines_are_counted(tmp_path: Path) -> None:
    events = [
        ev("cross", at("2026-12-07 10:00"), 1, "with_mask", line="door", direction="in"),
        ev("cross", at("2026-12-07 10:01"), 2, "without_mask", line="door", direction="in"),
        ev("cross", at("2026-12-07 10:02"), 3, None, line="door", direction="out"),
        ev("end", at("2026-12-07 10:05"), 1, "with_mask"),
    ]
    path = history(tmp_path / "h.db", events)
    report = json.loads(maskwatch("report", "--history", str(path), "--json", "-", tz="UTC").stdout)
    assert report["entries_are"] == "line crossings in"
    total = report["total"]
    assert (total["entries"], total["cross_in"], total["cross_out"], total["people"]) == (2, 2, 1, 3)


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--since", "yesterday"], 2, "--since 'yesterday' is not an ISO date or time"),
        (["--since", "2026-12-08", "--until", "2026-12-07T12:00"], 2, "is not after --since"),
        (["--history", "{missing}"], 1, "does not exist"),
        (["--history", "{text}"], 1, "is not a SQLite file or is corrupt"),
    ],
)
def test_user_errors_are_one_line(tmp_path: Path, args: list[str], status: int, message: str) -> None:
    path = history(tmp_path / "h.db", DAY)
    (tmp_path / "notes.txt").write_text("not a database\n" * 200)
    given = [a.format(missing=tmp_path / "none.db", text=tmp_path / "notes.txt") for a in args]
    if "--history" not in given:
        given = ["--history", str(path), *given]
    done = maskwatch("report", *given)
    assert done.returncode == status
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len([line for line in done.stderr.splitlines() if line.strip()]) == 1


def test_erase_before_a_date(tmp_path: Path) -> None:
    events = [ev("end", at(f"2026-12-0{d} 12:00"), d, "without_mask", snapshot=f"s/{d}.jpg") for d in (1, 2, 5, 6)]
    events.append(ev("alert", at("2026-12-02 11:59"), 2, "without_mask"))
    path = history(tmp_path / "h.db", events)
    clips, snaps = tmp_path / "clips", tmp_path / "snaps"
    clips.mkdir()
    snaps.mkdir()
    for name in ("door_1_20261201T120000Z.mp4", "door_6_20261206T120000Z.mp4", ".door_7.partial-1-ab.mp4", "x.txt"):
        (clips / name).write_bytes(b"\0" * 1000)
    old, new = snaps / "1_40.jpg", snaps / "6_90.jpg"
    for file, day in ((old, 1), (new, 6)):
        file.write_bytes(b"\xff" * 500)
        os.utime(file, (at(f"2026-12-0{day} 12:00"),) * 2)
    reports = Path(f"{path}.reports")
    reports.mkdir()
    for name in ("daily-2026-12-01.md", "daily-2026-12-01.png", "weekly-2026-12-06.md"):
        (reports / name).write_text("r")
    done = maskwatch("erase", "--before", "2026-12-03", "--history", str(path), "--clips", str(clips),
                     "--snapshots", str(snaps), tz="UTC")  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "erasing what was recorded before 2026-12-03 00:00" in out
    assert f"history {path}: deleted 3 events, 2 people" in out
    assert f"clips {clips}: deleted 1 files (0.00 MB)" in out and f"snapshots {snaps}: deleted 1 files" in out
    assert f"reports {reports}: deleted 2 files" in out
    assert sorted(p.name for p in clips.iterdir()) == [
        ".door_7.partial-1-ab.mp4",
        "door_6_20261206T120000Z.mp4",
        "x.txt",
    ]
    assert not old.exists() and new.exists() and [p.name for p in reports.iterdir()] == ["weekly-2026-12-06.md"]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT track FROM people ORDER BY track").fetchall() == [(5,), (6,)]
    assert conn.execute("SELECT count(*) FROM events WHERE ts < ?", (at("2026-12-03 00:00"),)).fetchone() == (0,)
    assert conn.execute("SELECT sum(people) FROM tally").fetchone() == (2,)
    conn.close()
    assert b"s/1.jpg" not in path.read_bytes()  # overwritten, not only unlinked from the tables
    report = json.loads(maskwatch("report", "--history", str(path), "--json", "-", tz="UTC").stdout)
    assert report["total"]["people"] == 2


def test_erase_needs_something_to_erase(tmp_path: Path) -> None:
    done = maskwatch("erase", "--before", "2026-12-03")
    assert done.returncode == 2 and "nothing to erase" in done.stderr and "Traceback" not in done.stderr
    done = maskwatch("erase", "--before", "2026-12-03", "--history", str(tmp_path / "none.db"))
    assert done.returncode == 1 and "does not exist" in done.stderr


@pytest.mark.slow
def test_two_demo_runs_then_report_agrees_with_the_events_log(tmp_path: Path) -> None:
    db, log = tmp_path / "h.db", tmp_path / "h.jsonl"
    for _ in range(2):
        run = maskwatch("run", "--source", "demo", "--history", str(db), "--events", str(log), "--no-progress")
        assert run.returncode == 0, run.stderr[-2000:]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    ends = [e for e in events if e["event"] == "end"]
    report = json.loads(maskwatch("report", "--history", str(db), "--by", "hour", "--json", "-").stdout)
    total = report["total"]
    unmasked = {e["track_id"] for e in events if e["label"] in ("without_mask", "mask_weared_incorrect")}
    assert total["people"] == len(ends) and total["alerts"] == sum(e["event"] == "alert" for e in events)
    assert total["decided"] == sum(e["label"] is not None for e in ends)
    assert total["unmasked"] == 2 * len(unmasked)  # the same clip twice: each run's people once
    table = maskwatch("report", "--history", str(db), "--by", "hour")
    assert table.returncode == 0
    last = table.stdout.splitlines()[-1].split()
    assert last[:5] == [
        "total",
        str(total["entries"]),
        str(total["people"]),
        str(total["unmasked"]),
        str(total["alerts"]),
    ]


@pytest.mark.slow
def test_bench_history_on_one_day(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = maskwatch("bench", "history", "--days", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["events"] >= 86400 and result["people"] > 20000
    assert set(result["median_ms"]) >= {"report by day, 1 days", "/history page"}
    assert "median of 7 runs per query" in done.stdout
    bad = maskwatch("bench", "history", "--days", "0")
    assert bad.returncode == 2 and "--days must be at least 1" in bad.stderr
