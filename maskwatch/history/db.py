"""The history file: its schema, and opening it with one clear line when it is locked, corrupt or not a history.

Times are UTC seconds since the epoch (``REAL``). ``tally`` holds, per source and 15-minute slot (``slot`` =
``floor(ts / 900)``; every time zone's offset is a whole number of quarter hours, so a slot falls in one local hour),
the numbers reports read: people first seen, of them decided and unmasked, alerts, line crossings in and out. It is
kept by the writer in the same transaction as the rows it counts, so a report over months reads a few thousand rows.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from maskwatch.errors import OutputError

APP = "maskwatch-history"
SCHEMA_VERSION = 1
SLOT_S = 900
BUSY_TIMEOUT_S = 5.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started REAL NOT NULL, ended REAL, sources TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, run INTEGER NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL,
    track INTEGER NOT NULL, label TEXT, confidence REAL, frame INTEGER, t_s REAL, duration_s REAL,
    line TEXT, direction TEXT, snapshot TEXT
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_kind_ts ON events (kind, ts);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY, run INTEGER NOT NULL, source TEXT NOT NULL, track INTEGER NOT NULL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL, label TEXT, decided INTEGER NOT NULL DEFAULT 0,
    unmasked INTEGER NOT NULL DEFAULT 0, alerts INTEGER NOT NULL DEFAULT 0, ended INTEGER NOT NULL DEFAULT 0,
    UNIQUE (run, source, track)
);
CREATE INDEX IF NOT EXISTS people_first_seen ON people (first_seen);
CREATE TABLE IF NOT EXISTS tally (
    slot INTEGER NOT NULL, source TEXT NOT NULL, people INTEGER NOT NULL DEFAULT 0,
    decided INTEGER NOT NULL DEFAULT 0, unmasked INTEGER NOT NULL DEFAULT 0, alerts INTEGER NOT NULL DEFAULT 0,
    cross_in INTEGER NOT NULL DEFAULT 0, cross_out INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (slot, source)
) WITHOUT ROWID;
"""


def _fail(path: Path, exc: sqlite3.Error) -> OutputError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return OutputError(f"history {path} is locked by another program: {text}")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return OutputError(f"history {path} is not a SQLite file or is corrupt ({text})")
    return OutputError(f"cannot open history {path}: {text}")


def connect(path: Path, *, readonly: bool = False, busy_timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A connection to the history at ``path``, checked to be a maskwatch history; created when missing and not
    ``readonly``. Raises :class:`OutputError` (one line) on a locked, corrupt or foreign file."""
    path = Path(path)
    if readonly and not path.is_file():
        raise OutputError(f"history {path} does not exist")
    if path.exists() and not path.is_file():
        raise OutputError(f"history {path} is not a file")
    try:
        if readonly:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=busy_timeout_s)
        else:
            conn = sqlite3.connect(path, timeout=busy_timeout_s, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _fail(path, exc) from None
    try:
        _check(conn, path, create=not readonly)
    except BaseException:
        conn.close()
        raise
    return conn


def _check(conn: sqlite3.Connection, path: Path, *, create: bool) -> None:
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables and create:
            conn.execute("PRAGMA journal_mode = WAL")
            with conn:
                conn.executescript(f"BEGIN; {SCHEMA}")
                conn.execute("INSERT INTO meta VALUES ('app', ?), ('schema', ?)", (APP, str(SCHEMA_VERSION)))
            return
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall()) if "meta" in tables else {}
        if meta.get("app") != APP:
            raise OutputError(f"{path} is not a maskwatch history (a SQLite file of another program)")
        if int(meta.get("schema", "0")) > SCHEMA_VERSION:
            raise OutputError(f"history {path} was written by a newer maskwatch (schema {meta['schema']})")
        if create:
            conn.execute("PRAGMA journal_mode = WAL")
    except sqlite3.Error as exc:
        raise _fail(path, exc) from None
