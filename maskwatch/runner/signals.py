"""Signals: SIGINT/SIGTERM stop a run cleanly (drain, finalize outputs); a second one aborts."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from loguru import logger

from maskwatch.media import EXIT_SIGNAL


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[dict]:
    """SIGINT/SIGTERM set ``stop`` (the run drains and finalizes); a second signal aborts at once."""
    received: dict = {}

    def handler(signum, _frame):
        if stop.is_set() and received:
            raise KeyboardInterrupt
        received["signal"] = signum
        stop.set()
        # loguru is not re-entrant: log from another thread, which waits if this one was inside a log call
        message = f"{signal.Signals(signum).name} received: stopping after the frames in flight"
        threading.Thread(target=logger.warning, args=(message,), name="maskwatch-signal", daemon=True).start()

    if threading.current_thread() is not threading.main_thread():  # e.g. inside a worker: signals are not ours
        yield received
        return
    previous = {s: signal.signal(s, handler) for s in EXIT_SIGNAL}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
