"""``maskwatch erase --before DATE``: delete what was recorded before DATE from the history (VACUUM), the clips,
snapshots and the scheduled reports, and print what was deleted."""

from __future__ import annotations

import argparse
from pathlib import Path

from maskwatch.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``erase`` on the ``maskwatch`` command line."""
    er = sub.add_parser("erase", help="delete history rows, clips and snapshots recorded before a date")
    er.add_argument("--before", required=True, metavar="DATE", help="local date or time (2026-12-07, 2026-12-07T14:00)")
    er.add_argument("--history", type=Path, metavar="PATH", help="SQLite history (default: the config's history.path)")
    er.add_argument("--clips", type=Path, metavar="DIR", help="alert clips folder (default: the config's clips.dir)")
    er.add_argument("--snapshots", type=Path, metavar="DIR", help="alert snapshots folder (e.g. alerts_snapshots/)")
    er.add_argument("--config", type=Path, help="YAML config naming the history and clips")
    er.set_defaults(func=erase_command)


def erase_command(args: argparse.Namespace) -> int:
    from datetime import datetime

    from maskwatch.config import load_config
    from maskwatch.history.erase import erase_files, erase_history, erase_reports
    from maskwatch.history.query import parse_when, tz_label
    from maskwatch.history.writer import default_reports_dir

    try:
        before = parse_when(args.before)
    except ValueError:
        raise UsageError(
            f"--before {args.before!r} is not an ISO date or time (2026-12-07, 2026-12-07T14:30)"
        ) from None
    cfg = load_config(args.config, {}) if args.config is not None else None
    history = args.history or (Path(cfg.history.path) if cfg and cfg.history.path else None)
    clips = args.clips or (Path(cfg.clips.dir) if cfg and cfg.clips.dir else None)
    if history is None and clips is None and args.snapshots is None:
        raise UsageError("nothing to erase: give --history, --clips or --snapshots (or a --config naming them)")
    print(
        f"erasing what was recorded before {datetime.fromtimestamp(before):%Y-%m-%d %H:%M} ({tz_label(None, before)})"
    )
    if history is not None:
        done = erase_history(history, before)
        d = done.deleted
        print(
            f"history {history}: deleted {d.events} events, {d.people} people, {d.runs} runs; "
            f"file {done.bytes_before / 1e6:.2f} MB -> {done.bytes_after / 1e6:.2f} MB"
        )
        reports = cfg.history.reports_dir if cfg and cfg.history.reports_dir else None
        where = Path(reports) if reports else default_reports_dir(history)
        gone = erase_reports(where, datetime.fromtimestamp(before).date())
        if gone:
            print(f"reports {where}: deleted {len(gone)} files")
    for what, folder in (("clips", clips), ("snapshots", args.snapshots)):
        if folder is not None:
            files = erase_files(folder, before)
            print(f"{what} {folder}: deleted {len(files)} files ({sum(n for _, n in files) / 1e6:.2f} MB)")
    return 0
