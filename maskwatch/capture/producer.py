"""The producer thread: reads a source into a bounded queue.

Live sources drop the oldest queued frame when the consumer is behind (what is shown stays fresh); files block
instead so no frame is ever lost.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

from maskwatch.capture.base import Source
from maskwatch.errors import SourceError
from maskwatch.types import Frame


@dataclass
class CaptureStats:
    """What the producer did: frames read, frames dropped because the consumer was behind, and whether the source
    said it had no more frames (``exhausted``: a file read to its end, not stopped early)."""

    read: int = 0
    dropped: int = 0
    exhausted: bool = False


END = object()
"""Queue sentinel: the source is exhausted (or failed; see ``Producer.error``)."""


class Producer(threading.Thread):
    """Reads ``source`` into ``frames`` until the source ends or ``stop`` is set.

    Each :class:`~maskwatch.capture.base.RawFrame` becomes a :class:`~maskwatch.types.Frame` numbered from
    ``source.first_index`` and timestamped (files: index / fps; live: the capture time).

    ``drop_oldest`` (live sources): a full queue loses its oldest frame, counted in ``stats.dropped``.
    Otherwise the put blocks (back-pressure), re-checking ``stop`` every ``poll_s`` so it never hangs.
    An exception is kept in ``error`` and the END sentinel is still delivered.
    """

    def __init__(
        self,
        source: Source,
        frames: queue.Queue,
        stop: threading.Event,
        drop_oldest: bool,
        read_timeout_s: float = 10.0,
        poll_s: float = 0.1,
    ) -> None:
        super().__init__(name="maskwatch-capture", daemon=True)
        self.source = source
        self.frames = frames
        self.stop = stop
        self.drop_oldest = drop_oldest
        self.read_timeout_s = read_timeout_s
        self.poll_s = poll_s
        self.stats = CaptureStats()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # handed to the main thread, which reports it
            self.error = exc
        finally:
            self._deliver_end()

    def _loop(self) -> None:
        index = self.source.first_index
        last_frame_at = time.monotonic()
        reconnects = self.source.reconnects  # it handles stalls itself
        while not self.stop.is_set():
            item = self.source.read()
            now = time.monotonic()
            if item is None:
                if self.source.finite:
                    self.stats.exhausted = True
                    return
                if reconnects or now - last_frame_at < self.read_timeout_s:
                    time.sleep(min(self.poll_s, 0.05))
                    continue
                raise SourceError(f"live source {self.source.name} sent no frame for {self.read_timeout_s:.0f} s")
            last_frame_at = now
            if item.timestamp_s is not None:
                ts = item.timestamp_s
            else:
                ts = index / self.source.fps if self.source.finite else now
            frame = Frame(image=item.image, index=index, timestamp_s=ts, captured_at=now, name=item.name)
            index += 1
            self.stats.read += 1
            if self.drop_oldest:
                self._put_dropping(frame)
            elif not self._put_blocking(frame):
                return

    def _put_dropping(self, frame: Frame) -> None:
        while True:
            try:
                self.frames.put_nowait(frame)
                return
            except queue.Full:
                try:
                    self.frames.get_nowait()
                    self.stats.dropped += 1
                except queue.Empty:
                    pass

    def _put_blocking(self, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self.frames.put(item, timeout=self.poll_s)
                return True
            except queue.Full:
                continue
        return False

    def _deliver_end(self) -> None:
        # Always reach the consumer: if the queue stays full and nobody reads, give up once stopped.
        while True:
            try:
                self.frames.put(END, timeout=self.poll_s)
                return
            except queue.Full:
                if self.stop.is_set():
                    return
