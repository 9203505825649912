"""A sink on its own thread: another sink's writes (a video's encoding) overlap the next frame's detection."""

from __future__ import annotations

import queue
import threading
import time

import numpy as np

from maskwatch.errors import OutputError
from maskwatch.outputs.sinks import Sink
from maskwatch.types import FrameResult


class BackgroundSink:
    """Runs another sink's ``write`` on its own thread (e.g. a :class:`VideoSink`'s encoding), so that it overlaps
    the next frame's detection on a second core.

    Frames reach the inner sink in order, each once; at most ``depth`` wait for it (back-pressure, nothing is
    dropped). An error in the inner sink is raised by the next ``write`` (or by ``close``); ``close`` writes what
    is still queued, then closes the inner sink, so the output holds every frame handed over before it.

    Nothing waits for ever: a writer that takes no frame for ``timeout_s`` (a hung disk or network share) fails
    ``write`` with an :class:`OutputError` naming ``name``, and ``close`` gives up after ``timeout_s`` with one too,
    leaving the inner sink unclosed (its writer is still inside it).
    """

    def __init__(
        self, inner: Sink, depth: int = 4, poll_s: float = 0.1, *, timeout_s: float = 60.0, name: str = "output"
    ):
        self.inner = inner
        self.data_only = inner.data_only
        self.takes_events = inner.takes_events
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.name = name
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._raised = False
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="maskwatch-writer", daemon=True)
        self._thread.start()

    def __enter__(self) -> BackgroundSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getattr__(self, name: str):  # the inner sink's counters (frames_written, path, ...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP_WRITER:
                return
            if self._error is not None:  # failed: keep taking frames so the caller never blocks, write none
                continue
            try:
                self.inner.write(*item)
            except BaseException as exc:  # handed to the caller's thread at its next write or close
                self._error = exc

    def _raise_error(self) -> None:
        if self._error is not None and not self._raised:
            self._raised = True
            raise self._error

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        self._raise_error()
        if not self._put((result, annotated), time.monotonic() + self.timeout_s):
            raise OutputError(f"{self.name}: the writer took no frame for {self.timeout_s:g} s (a hung disk?)")

    def _put(self, item: object, deadline: float) -> bool:
        """Queue ``item``; False when the queue stayed full until ``deadline``. A dead writer takes nothing more:
        the item is dropped (its error is raised by the caller)."""
        while True:
            try:
                self._queue.put(item, timeout=self.poll_s)
                return True
            except queue.Full:
                if not self._thread.is_alive():
                    return True
                if time.monotonic() >= deadline:
                    return False

    def close(self) -> None:
        """Write what is queued, stop the thread, close the inner sink; raise an error not raised yet. Gives up
        after ``timeout_s`` when the writer does not finish."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + self.timeout_s
        if self._put(_STOP_WRITER, deadline):
            self._thread.join(timeout=max(deadline - time.monotonic(), 0.0))
        if self._thread.is_alive():
            raise OutputError(f"{self.name}: the writer did not finish within {self.timeout_s:g} s; output incomplete")
        try:
            self.inner.close()
        finally:
            self._raise_error()


_STOP_WRITER = object()
