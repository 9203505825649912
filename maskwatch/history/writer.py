"""``--history``: the event output that stores every event and person in the SQLite history from one thread.

``send`` (on the inference thread) only puts the event in a bounded queue; a full queue drops the event and
counts a fault. The thread writes batches in one transaction each (WAL, a busy timeout), deletes rows older than
the retention at start and daily, and writes the scheduled reports. A batch that cannot be written (a full disk,
a file locked by another program) is counted with :func:`~maskwatch.runner.faults.record_fault`, rolled back and
tried again a few times; what was committed before stays. ``close`` finishes the queue, bounded in time.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import tzinfo
from pathlib import Path

import numpy as np
from loguru import logger

from maskwatch.errors import OutputError
from maskwatch.history.db import BUSY_TIMEOUT_S, connect
from maskwatch.history.digest import write_digest
from maskwatch.history.schedule import ReportSchedule
from maskwatch.history.store import delete_before, store_events
from maskwatch.runner.faults import record_fault
from maskwatch.types import Event

DAY_S = 86400.0
MAX_BATCH = 500
MAX_ATTEMPTS = 3


class HistoryWriter:
    """An :class:`~maskwatch.outputs.events.EventSink` writing to the history at ``path``.

    ``report_at`` / ``report_weekday`` / ``reports_dir``: the scheduled reports (``report_at`` None: none);
    ``clock`` gives UTC seconds and ``tz`` the zone of ``report_at`` (None: local), both replaceable in tests.
    Opening fails with one line (:class:`~maskwatch.errors.OutputError`) on a locked, corrupt or foreign file.
    """

    def __init__(
        self,
        path: Path,
        *,
        retention_days: float = 30,
        report_at: str | None = None,
        report_weekday: str = "sun",
        reports_dir: Path | None = None,
        sources: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
        tz: tzinfo | None = None,
        queue_size: int = 10_000,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        poll_s: float = 0.5,
        close_timeout_s: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self.retention_s = float(retention_days) * DAY_S
        self.reports_dir = Path(reports_dir) if reports_dir is not None else default_reports_dir(self.path)
        self.clock, self.tz, self.poll_s, self.close_timeout_s = clock, tz, poll_s, close_timeout_s
        self.stored = 0
        self._next_purge = 0.0
        self.reports: list[Path] = []
        now = clock()
        self.schedule = ReportSchedule(report_at, report_weekday, now=now, tz=tz) if report_at else None
        self._conn = connect(self.path, busy_timeout_s=busy_timeout_s)
        try:
            self._purge(now)
            with self._conn:
                cur = self._conn.execute("INSERT INTO runs (started, sources) VALUES (?, ?)", (now, ",".join(sources)))
            self.run, self.started = int(cur.lastrowid or 0), now
        except sqlite3.Error as exc:
            self._conn.close()
            raise OutputError(f"cannot write history {self.path}: {exc}") from None
        self._queue: queue.Queue[Event] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="maskwatch-history", daemon=True)
        self._thread.start()

    # the inference thread ---------------------------------------------------------------------------------------
    def send(self, event: Event, image: np.ndarray) -> None:
        if self._closed:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            record_fault("history", f"the writer is behind: {event.event} event of track {event.track_id} not stored")

    def close(self) -> None:
        """Store what is queued (waiting at most ``close_timeout_s``), mark the run ended, close the file."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(self.close_timeout_s)
        if self._thread.is_alive():
            logger.warning(f"history: {self._queue.qsize()} events not stored: {self.path} did not answer in time")

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # the writer thread ------------------------------------------------------------------------------------------
    def _work(self) -> None:
        pending: list[Event] = []
        attempts = 0
        try:
            while True:
                stopping = self._stop.is_set()
                if not pending:
                    pending = self._take(block=not stopping)
                if pending:
                    if self._store(pending):
                        pending, attempts = [], 0
                    else:
                        attempts += 1
                        if attempts >= MAX_ATTEMPTS:
                            record_fault("history", f"{len(pending)} events not stored after {attempts} tries")
                            pending, attempts = [], 0
                        else:
                            self._stop.wait(self.poll_s)
                elif stopping:
                    break
                self._housekeeping()
        finally:
            self._finish()

    def _take(self, *, block: bool) -> list[Event]:
        try:
            batch = [self._queue.get(timeout=self.poll_s) if block else self._queue.get_nowait()]
        except queue.Empty:
            return []
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _store(self, batch: list[Event]) -> bool:
        try:
            with self._conn:
                store_events(self._conn, self.run, self.started, batch, now=self.clock())
        except sqlite3.Error as exc:
            record_fault("history", f"{len(batch)} events not stored yet ({self.path}: {exc})")
            return False
        self.stored += len(batch)
        return True

    def _housekeeping(self) -> None:
        now = self.clock()
        if now >= self._next_purge:
            try:
                self._purge(now)
            except sqlite3.Error as exc:
                record_fault("history", f"old rows not deleted ({self.path}: {exc})")
                self._next_purge = now + 60.0
        for job in self.schedule.due(now) if self.schedule is not None else ():
            try:
                paths = write_digest(self._conn, job, self.reports_dir, self.tz)
            except (sqlite3.Error, OSError) as exc:
                record_fault("history", f"{job.kind} report not written ({exc})")
                continue
            self.reports += paths
            logger.info(f"history: {job.kind} report {paths[0]}")

    def _purge(self, now: float) -> None:
        deleted = delete_before(self._conn, now - self.retention_s)
        self._next_purge = now + DAY_S
        if deleted.events or deleted.people:
            days = self.retention_s / DAY_S
            logger.info(f"history: deleted {deleted.events} events, {deleted.people} people older than {days:g} days")

    def _finish(self) -> None:
        with contextlib.suppress(sqlite3.Error), self._conn:
            self._conn.execute("UPDATE runs SET ended = ? WHERE id = ?", (self.clock(), self.run))
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA optimize")
        self._conn.close()


def default_reports_dir(path: Path) -> Path:
    """Where a history's scheduled reports go unless configured: ``<history file>.reports/`` beside it."""
    return path.with_name(path.name + ".reports")
