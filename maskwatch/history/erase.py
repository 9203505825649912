"""Erasing everything recorded before a time: the history's rows (then VACUUM, so the file keeps no trace of them),
alert clips, snapshots and scheduled reports, by their time."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from maskwatch.errors import OutputError
from maskwatch.history.db import connect
from maskwatch.history.store import Deleted, delete_before

MEDIA_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".jpg", ".jpeg", ".png"})
_STAMP = re.compile(r"(\d{8}T\d{6})Z")
_REPORT = re.compile(r"(?:daily|weekly)-(\d{4}-\d{2}-\d{2})\.(?:md|png)")


@dataclass(frozen=True)
class Erased:
    """What :func:`erase_history` deleted, and the file's size before and after."""

    deleted: Deleted
    bytes_before: int
    bytes_after: int


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def erase_history(path: Path, before: float) -> Erased:
    """Delete the rows of the history at ``path`` before ``before`` (UTC seconds), overwrite them (secure delete,
    VACUUM) and empty the write-ahead log. One line (:class:`OutputError`) when the file cannot be changed."""
    if not Path(path).is_file():
        raise OutputError(f"history {path} does not exist")
    size = _size(path)
    conn = connect(path)
    try:
        conn.execute("PRAGMA secure_delete = ON")
        deleted = delete_before(conn, before)
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise OutputError(f"cannot erase history {path}: {exc}") from None
    finally:
        conn.close()
    return Erased(deleted, size, _size(path))


def file_time(path: Path) -> float:
    """When a clip or snapshot was made: the UTC time in its name (``..._20261207T101500Z.mp4``), else its mtime."""
    found = _STAMP.search(path.name)
    if found:
        return datetime.strptime(found.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp()
    return path.stat().st_mtime


def erase_files(folder: Path, before: float) -> list[tuple[Path, int]]:
    """Delete the pictures and videos under ``folder`` made before ``before``; (path, bytes) of each deleted.
    Hidden files (a clip being written) are left alone."""
    if not folder.is_dir():
        raise OutputError(f"{folder} is not a folder")
    gone = []
    for path in sorted(folder.rglob("*")):
        if path.name.startswith(".") or path.suffix.lower() not in MEDIA_SUFFIXES or not path.is_file():
            continue
        if file_time(path) < before:
            size = path.stat().st_size
            path.unlink()
            gone.append((path, size))
    return gone


def erase_reports(folder: Path, before_day: date) -> list[Path]:
    """Delete the scheduled reports in ``folder`` dated before ``before_day``."""
    gone = []
    for path in sorted(folder.glob("*")) if folder.is_dir() else ():
        found = _REPORT.fullmatch(path.name)
        if found and date.fromisoformat(found.group(1)) < before_day:
            path.unlink()
            gone.append(path)
    return gone
