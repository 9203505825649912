"""``maskwatch report``: the stored history per hour or day (local time): entries, people, unmasked, alerts,
compliance; a table on stdout, or JSON (``--json FILE``, ``--json -`` for stdout)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from maskwatch.errors import OutputError, UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``report`` on the ``maskwatch`` command line."""
    rp = sub.add_parser("report", help="people, entries, alerts and compliance per hour or day from a --history file")
    rp.add_argument("--history", type=Path, required=True, metavar="PATH", help="the SQLite history of `run --history`")
    rp.add_argument("--since", metavar="DATE", help="from this local date or time (2026-12-07, 2026-12-07T14:00)")
    rp.add_argument("--until", metavar="DATE", help="up to this local time, or to the end of this date")
    rp.add_argument("--by", choices=["hour", "day"], default="day", help="one row per hour or per day (default day)")
    rp.add_argument("--source", action="append", metavar="NAME", help="only this source (repeatable; default all)")
    rp.add_argument("--json", metavar="FILE", help="write the report as JSON to FILE ('-': to stdout, no table)")
    rp.set_defaults(func=report_command)


def when(text: str | None, flag: str, *, end: bool = False) -> float | None:
    """``--since`` / ``--until`` as UTC seconds (local time unless the text names a zone); one line when unreadable."""
    from maskwatch.history.query import parse_when

    if text is None:
        return None
    try:
        return parse_when(text, end=end)
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not an ISO date or time (2026-12-07, 2026-12-07T14:30)") from None


def report_command(args: argparse.Namespace) -> int:
    from maskwatch.history.db import connect
    from maskwatch.history.query import history_report

    since, until = when(args.since, "--since"), when(args.until, "--until", end=True)
    if since is not None and until is not None and until <= since:
        raise UsageError(f"--until {args.until} is not after --since {args.since}")
    conn = connect(args.history, readonly=True)
    try:
        report = history_report(
            conn, since=since, until=until, by=args.by, sources=tuple(args.source or ()), path=args.history
        )
    finally:
        conn.close()
    text = json.dumps(report, indent=2) + "\n"
    if args.json == "-":
        sys.stdout.write(text)
        return 0
    for line in table_lines(report):
        print(line)
    if args.json is not None:
        from maskwatch.history.digest import atomic_write

        try:
            atomic_write(Path(args.json), text.encode())
        except OSError as exc:
            raise OutputError(f"cannot write --json {args.json}: {exc.strerror}") from None
    return 0


def table_lines(report: dict) -> list[str]:
    """The report as a plain table: a heading naming the file, the time span and zone, then one row per period."""
    from maskwatch.history.digest import percent

    since, until = report["since"][:16].replace("T", " "), report["until"][:16].replace("T", " ")
    lines = [
        f"history {report['history']}: {since} to {until} by {report['by']}, {report['timezone']}",
        f"entries: {report['entries_are']}; compliance: {report['compliance_is']}",
    ]
    width = 16 if report["by"] == "hour" else 10
    head = f"{report['by']:<{width}}  {'entries':>7}  {'people':>6}  {'unmasked':>8}  {'alerts':>6}  {'compliance':>10}"
    lines.append(head)
    for p in [*report["periods"], report["total"]]:
        cells = (p["entries"], p["people"], p["unmasked"], p["alerts"], percent(p["compliance"]))
        lines.append(
            f"{p['period']:<{width}}  {cells[0]:>7}  {cells[1]:>6}  {cells[2]:>8}  {cells[3]:>6}  {cells[4]:>10}"
        )
    if not report["periods"]:
        lines.insert(3, "(nobody seen in this span)")
    return lines
