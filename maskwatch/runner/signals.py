"""Signals: SIGINT, SIGTERM and SIGHUP stop a run cleanly (drain, finalize outputs, write the report).

A repeated SIGTERM or SIGHUP within ``grace_s`` of the first (``timeout`` signals the process and then its group; a
closing terminal may send several hang-ups) is ignored, so it cannot throw away what the first is finishing. A
second Ctrl-C, or a repeat after ``grace_s``, aborts at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator

from loguru import logger

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_status(signum: int) -> int:
    """The exit status of a file run stopped by ``signum``: 128 + its number (130 SIGINT, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + int(signum)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, *, grace_s: float = 10.0) -> Iterator[dict]:
    """Install the handlers of :data:`STOP_SIGNALS` until the ``with`` ends: the first sets ``stop`` and is kept in
    the yielded dict under ``"signal"``; a repeat aborts (``KeyboardInterrupt``) unless it is a SIGTERM or SIGHUP
    within ``grace_s`` of the first."""
    received: dict = {}
    first_at: list[float] = []

    def handler(signum, _frame):
        if received:
            if signum != signal.SIGINT and time.monotonic() - first_at[0] < grace_s:
                _log_later(f"{signal.Signals(signum).name} received again: still finishing, ignored")
                return
            raise KeyboardInterrupt
        received["signal"] = signum
        first_at.append(time.monotonic())
        stop.set()
        _log_later(f"{signal.Signals(signum).name} received: stopping after the frames in flight")

    if threading.current_thread() is not threading.main_thread():  # e.g. inside a worker: signals are not ours
        yield received
        return
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _log_later(message: str) -> None:
    """Log from another thread: loguru is not re-entrant, and the signal may have interrupted a log call."""
    threading.Thread(target=logger.warning, args=(message,), name="maskwatch-signal", daemon=True).start()
