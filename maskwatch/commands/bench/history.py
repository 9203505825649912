"""``maskwatch bench history --days N``: how fast the history answers reports when it holds N days at one event a
second (a busy shop door: every person crosses in and out, some alert, some change label), and how fast it is
written. Each kind of query is timed ``repeats`` times on a fresh read-only connection, as the commands open it."""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from maskwatch.types import Event

LIMIT_MS = 200.0


def add_flags(bench: argparse.ArgumentParser) -> None:
    """``bench history`` (and ``--days``) and ``bench door`` on the ``bench`` parser."""
    bench.add_argument(
        "what",
        nargs="?",
        choices=["history", "door"],
        help="history: time reports on a synthetic history; door: end-to-end fps and CPU time of each shop-door "
        "feature and of all of them, each run paired with a run of its base (--video, --repeats)",
    )
    bench.add_argument("--days", type=int, default=30, help="history: days of events at one a second (default 30)")


def synthetic_events(days: int, end: float, seed: int = 0) -> Iterator[Event]:
    """One event a second over ``days`` days up to ``end``, person by person: cross in, maybe an update, maybe an
    alert, end, cross out (about 3.4 events a person), on two sources."""
    from maskwatch.types import Event, EventKind

    rng = random.Random(seed)
    t, track = end - days * 86400.0, 0
    box = [0.0, 0.0, 1.0, 1.0]
    while t < end:
        track += 1
        source = "door" if track % 3 else "side"
        label = rng.choice(("with_mask", "with_mask", "with_mask", "without_mask", "mask_weared_incorrect", None))
        steps: list[tuple[EventKind, Literal["in", "out"] | None]] = [("cross", "in")]
        if rng.random() < 0.1:
            steps.append(("update", None))
        if label in ("without_mask", "mask_weared_incorrect") and rng.random() < 0.7:
            steps.append(("alert", None))
        steps += [("end", None), ("cross", "out")]
        for kind, direction in steps:
            ts = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            line = "door" if direction else None
            yield Event(kind, ts, source, 0, track, label, 0.9, box, 2.0, line=line, direction=direction)
            t += 1.0


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def history_bench(days: int, *, repeats: int = 7, folder: Path | None = None) -> dict:
    """Write ``days`` days of :func:`synthetic_events` through the writer's own code, then time each query kind."""
    from maskwatch.history.db import connect
    from maskwatch.history.store import store_events

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp) / "bench.db"
        end = float(int(time.time() // 3600) * 3600)
        conn = connect(path)
        with conn:
            run = int(conn.execute("INSERT INTO runs (started) VALUES (?)", (end - days * 86400,)).lastrowid or 0)
        started, events, batch = time.perf_counter(), 0, []
        for event in synthetic_events(days, end):
            batch.append(event)
            if len(batch) == 500:  # the writer's batch
                with conn:
                    events += store_events(conn, run, end - days * 86400, batch)
                batch = []
        with conn:
            events += store_events(conn, run, end - days * 86400, batch)
        write_s = time.perf_counter() - started
        people = conn.execute("SELECT count(*) FROM people").fetchone()[0]
        conn.close()
        result = {
            "days": days,
            "events": events,
            "people": people,
            "file_mb": round(sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6, 1),
            "write_events_per_s": round(events / write_s),
            "limit_ms": LIMIT_MS,
            "repeats": repeats,
            "median_ms": {name: round(_median_ms(query, repeats), 2) for name, query in _queries(path, days, end)},
        }
    return result


def _queries(path: Path, days: int, end: float) -> list[tuple[str, Callable[[], object]]]:
    from maskwatch.history.db import connect
    from maskwatch.history.query import history_report
    from maskwatch.serve.history_page import HistoryPages
    from maskwatch.serve.routes import Request

    def report(**kw) -> Callable[[], object]:
        def run() -> object:
            conn = connect(path, readonly=True)
            try:
                return history_report(conn, now=end, **kw)
            finally:
                conn.close()

        return run

    pages = HistoryPages(path, clock=lambda: end - 1)
    start = end - days * 86400
    return [
        (f"report by day, {days} days", report(by="day")),
        (f"report by hour, {days} days", report(by="hour")),
        ("report by hour, last day", report(since=end - 86400, until=end, by="hour")),
        ("report by hour, 3 days at odd minutes", report(since=start + 7 * 86400 + 437, until=start + 10 * 86400 - 97)),
        ("one source by day", report(by="day", sources=("side",))),
        ("/history page", lambda: pages.page(Request("/history", {}, {}, "127.0.0.1"))),
        ("/history.json (30 days by day)", lambda: pages.json(Request("/history.json", {}, {}, "127.0.0.1"))),
    ]


def history_lines(result: dict) -> list[str]:
    """The bench as a few lines: what was stored, then each query's median against the limit."""
    lines = [
        f"history of {result['days']} days: {result['events']:,} events, {result['people']:,} people, "
        f"{result['file_mb']} MB; written at {result['write_events_per_s']:,} events/s",
        f"median of {result['repeats']} runs per query (each on a fresh read-only connection), limit "
        f"{result['limit_ms']:g} ms:",
    ]
    for name, ms in result["median_ms"].items():
        verdict = "ok" if ms < result["limit_ms"] else "OVER"
        lines.append(f"  {name:<40} {ms:8.1f} ms  {verdict}")
    return lines


def history_command(args: argparse.Namespace) -> int:
    from maskwatch.commands.options import emit
    from maskwatch.errors import UsageError

    if args.days < 1:
        raise UsageError(f"--days must be at least 1, got {args.days}")
    result = history_bench(args.days)
    return emit(history_lines(result), result, args.json)
