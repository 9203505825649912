"""Capture: open a source (camera, stream, video file, image or folder) and feed frames to a queue.

A :class:`Producer` thread reads the source. Live sources drop the oldest queued frame when the
consumer is behind (what is shown stays fresh); files block instead so no frame is ever lost.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from loguru import logger

from maskwatch.errors import SourceError
from maskwatch.types import Frame

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def scrub_url(text: str) -> str:
    """Replace ``user:password@`` in any URL inside ``text`` with ``***@``."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", str(text))


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Convert grayscale, BGRA and 16-bit images to 3-channel uint8 BGR."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    return image


class Source(Protocol):
    """A frame source. ``read`` returns the next BGR uint8 frame with its name, or None.

    ``is_live``: frames arrive on their own clock, so a slow consumer drops the oldest instead of waiting.
    ``finite``: None from ``read`` means the end; otherwise it is a stall (waited out up to a timeout).
    """

    name: str
    is_live: bool
    finite: bool
    fps: float
    frame_count: int | None

    def read(self) -> tuple[np.ndarray, str] | None: ...

    def close(self) -> None: ...


class VideoFileSource:
    """A video file decoded with OpenCV; fails at open if it has no decodable frame."""

    is_live = False
    finite = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise SourceError(f"cannot open video {path}: not a readable video file")
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise SourceError(f"video {path} has no readable frames (empty, truncated or not a video)")
        self._pending: np.ndarray | None = first
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else 25.0
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None

    def read(self) -> tuple[np.ndarray, str] | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return to_bgr8(frame), self.name
        ok, frame = self._cap.read()
        return (to_bgr8(frame), self.name) if ok and frame is not None else None

    def close(self) -> None:
        self._cap.release()


class ImageFilesSource:
    """One image or a folder of images (sorted by name); an unreadable image is skipped with a warning."""

    is_live = False
    finite = True
    fps = 1.0

    def __init__(self, paths: list[Path], name: str) -> None:
        self.paths = paths
        self.name = name
        self.frame_count = len(paths)
        self._next = 0
        self.skipped: list[Path] = []

    def read(self) -> tuple[np.ndarray, str] | None:
        while self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is None or image.size == 0:
                logger.warning(f"skipping {path}: not a readable image")
                self.skipped.append(path)
                continue
            return to_bgr8(image), path.name
        return None

    def close(self) -> None:
        pass


class LiveSource:
    """A webcam (index) or network stream (rtsp://, http://) opened with OpenCV."""

    is_live = True
    finite = False
    frame_count = None

    def __init__(self, spec: str | int, open_timeout_s: float = 10.0) -> None:
        self.spec = spec
        self.name = scrub_url(str(spec))
        if isinstance(spec, int):
            self._cap = cv2.VideoCapture(spec)
        else:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                int(open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                int(open_timeout_s * 1000),
            ]
            self._cap = cv2.VideoCapture(spec, cv2.CAP_ANY, params)
        if not self._cap.isOpened():
            what = f"camera {spec}" if isinstance(spec, int) else f"stream {self.name}"
            raise SourceError(f"cannot open {what}: no such device or the stream is unreachable")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else 25.0

    def read(self) -> tuple[np.ndarray, str] | None:
        ok, frame = self._cap.read()
        return (to_bgr8(frame), self.name) if ok and frame is not None else None

    def close(self) -> None:
        self._cap.release()


class ReconnectingSource:
    """A live source reopened with backoff when it stops sending frames or disappears.

    ``read`` never blocks longer than one inner read or one ``opener()`` call: between reconnect attempts
    it returns None and the caller polls. ``first`` is the already-opened source (never retried here).
    """

    is_live = True
    finite = False
    frame_count = None
    reconnects = True

    def __init__(
        self,
        opener: Callable[[], Source],
        name: str,
        *,
        stall_s: float = 5.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        first: Source | None = None,
    ) -> None:
        self.opener, self.name, self.clock = opener, scrub_url(name), clock
        self.stall_s, self.backoff_s, self.max_backoff_s = stall_s, backoff_s, max_backoff_s
        self.outages = 0
        self._inner: Source | None = first
        self._fps = float(first.fps) if first is not None else 25.0
        self._lock = threading.Lock()
        self._closed = self._error_logged = False
        self._last_frame_at = self._next_try_at = clock()
        self._down_since: float | None = None if first is not None else self._last_frame_at
        self._downtime = 0.0
        self._backoff = backoff_s
        self._attempt = 0

    @property
    def connected(self) -> bool:
        return self._inner is not None

    @property
    def fps(self) -> float:
        inner = self._inner
        return float(inner.fps) if inner is not None else self._fps

    @property
    def downtime_s(self) -> float:
        """Seconds spent disconnected so far, including an ongoing outage."""
        since = self._down_since
        return self._downtime + (max(self.clock() - since, 0.0) if since is not None else 0.0)

    def read(self) -> tuple[np.ndarray, str] | None:
        inner = self._inner
        if self._closed:
            return None
        if inner is None:
            self._try_reconnect()
            return None
        try:
            item = inner.read()
        except Exception as exc:  # a vanished device may raise instead of returning nothing
            item = None
            if not self._error_logged:
                self._error_logged = True
                logger.warning(f"reading {self.name} failed: {scrub_url(exc)}")
        now = self.clock()
        if item is not None:
            self._last_frame_at, self._error_logged = now, False
            return item
        if now - self._last_frame_at >= self.stall_s:
            logger.warning(f"lost {self.name}: no frames for {now - self._last_frame_at:.1f} s; reconnecting")
            with self._lock:
                self._inner, self._fps = None, float(inner.fps)
                self.outages += 1
                self._down_since = self._next_try_at = now
                self._backoff, self._attempt = self.backoff_s, 0
            _close_quietly(inner, self.name)
        return None

    def _try_reconnect(self) -> None:
        if self.clock() < self._next_try_at:
            return
        self._attempt += 1
        try:
            source = self.opener()
        except Exception as exc:
            wait, self._backoff = self._backoff, min(self._backoff * 2, self.max_backoff_s)
            self._next_try_at = self.clock() + wait
            logger.warning(
                f"reconnecting to {self.name} failed (attempt {self._attempt}, next in {wait:.1f} s): {scrub_url(exc)}"
            )
            return
        now = self.clock()
        with self._lock:
            if not self._closed:
                outage = now - self._down_since if self._down_since is not None else 0.0
                self._downtime += max(outage, 0.0)
                self._inner, self._fps, self._down_since = source, float(source.fps), None
                self._last_frame_at, self._error_logged, self._backoff = now, False, self.backoff_s
        if self._inner is not source:  # closed while the opener ran
            _close_quietly(source, self.name)
            return
        logger.info(f"reconnected to {self.name} after {outage:.1f} s")

    def close(self) -> None:
        """Close the current inner source; idempotent, returns at once during an outage."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            inner, self._inner = self._inner, None
            if self._down_since is not None:
                self._downtime += max(self.clock() - self._down_since, 0.0)
                self._down_since = None
        if inner is not None:
            _close_quietly(inner, self.name)


def _close_quietly(source: Source, name: str) -> None:
    try:
        source.close()
    except Exception as exc:
        logger.debug(f"closing {name} failed: {scrub_url(exc)}")


class RealtimeFileSource:
    """A video file played at its own fps as if it were a camera: a slow consumer drops frames (``--realtime``)."""

    is_live = True
    finite = True

    def __init__(self, video: VideoFileSource) -> None:
        self.video = video
        self.name = video.name
        self.fps = video.fps
        self.frame_count = video.frame_count
        self._start: float | None = None
        self._sent = 0

    def read(self) -> tuple[np.ndarray, str] | None:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._sent / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._sent += 1
        return self.video.read()

    def close(self) -> None:
        self.video.close()


def open_source(
    spec: str,
    open_timeout_s: float = 10.0,
    realtime: bool = False,
    reconnect: bool = True,
    stall_s: float | None = None,
) -> Source:
    """Open ``spec``: a camera index (``0``), a URL, an image, a folder of images or a video file.

    ``realtime`` plays a video file at its own fps with live-source semantics (frames dropped when behind).
    ``reconnect`` wraps cameras and streams in a :class:`ReconnectingSource` that reopens them after
    ``stall_s`` seconds without frames (default ``open_timeout_s``); the first open is never retried.
    """
    spec = str(spec).strip()
    if spec.isdigit() or "://" in spec:
        target: str | int = int(spec) if spec.isdigit() else spec
        live = LiveSource(target, open_timeout_s)
        if not reconnect:
            return live
        return ReconnectingSource(
            lambda: LiveSource(target, open_timeout_s),
            name=live.name,
            stall_s=open_timeout_s if stall_s is None else stall_s,
            first=live,
        )
    path = Path(spec).expanduser()
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise SourceError(f"folder {path} contains no images ({', '.join(IMAGE_SUFFIXES)})")
        return ImageFilesSource(images, name=str(path))
    if not path.exists():
        raise SourceError(f"source not found: {path}")
    if not path.is_file():
        raise SourceError(f"source {path} is not a file, folder, camera index or URL")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        if cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is None:
            raise SourceError(f"cannot read image {path}: not a valid image file")
        return ImageFilesSource([path], name=str(path))
    video = VideoFileSource(path)
    return RealtimeFileSource(video) if realtime else video


@dataclass
class CaptureStats:
    """What the producer did: frames read and frames dropped because the consumer was behind."""

    read: int = 0
    dropped: int = 0


END = object()
"""Queue sentinel: the source is exhausted (or failed; see ``Producer.error``)."""


class Producer(threading.Thread):
    """Reads ``source`` into ``frames`` until the source ends or ``stop`` is set.

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
        index = 0
        last_frame_at = time.monotonic()
        reconnects = bool(getattr(self.source, "reconnects", False))  # it handles stalls itself
        while not self.stop.is_set():
            item = self.source.read()
            now = time.monotonic()
            if item is None:
                if self.source.finite:
                    return
                if reconnects or now - last_frame_at < self.read_timeout_s:
                    time.sleep(min(self.poll_s, 0.05))
                    continue
                raise SourceError(f"live source {self.source.name} sent no frame for {self.read_timeout_s:.0f} s")
            last_frame_at = now
            image, name = item
            ts = index / self.source.fps if self.source.finite else now
            frame = Frame(image=image, index=index, timestamp_s=ts, captured_at=now, name=name)
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
