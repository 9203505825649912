"""Event clips (``--clips DIR``): an mp4 of the annotated video around each alert, per source.

:class:`ClipSink` is a lazy frame sink of one source (:class:`~maskwatch.outputs.picture.PictureSink`). On the
inference thread it only queues the frame's picture, undrawn. Its own thread, at a lower CPU priority than the
inference, keeps the last ``pre_s`` seconds (:class:`~maskwatch.outputs.clip_buffer.FrameRing`: in memory within a
budget, JPEG beyond), and on an ``alert`` draws and writes them, then the frames that follow, until ``post_s`` after
the last alert: an alert while a clip is being written extends that clip. Frames that no clip takes are never drawn.
A live source never waits for the clip thread (a frame that finds its queue full is left out of the clips and
counted); a file waits for it, up to ``wait_s``, so that its clips miss no frame.

Each clip is written under a hidden partial name and renamed when complete (:mod:`maskwatch.outputs.partial`).
Retention (age, then total size, oldest first) runs at start and after each clip. A fault (a full disk, an
unwritable folder) is counted with :func:`~maskwatch.runner.faults.record_fault`; the partial file is removed and the
run goes on.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from loguru import logger

from maskwatch.config.sources import default_source_name
from maskwatch.errors import OutputError
from maskwatch.media import scrub_url
from maskwatch.outputs.clip_buffer import FrameRing
from maskwatch.outputs.picture import Picture
from maskwatch.outputs.render import blur_boxes
from maskwatch.outputs.sinks import VideoSink, check_writable
from maskwatch.runner.faults import record_fault
from maskwatch.types import FaceDetections, Frame, FrameResult

CLIP_NAME = re.compile(r"[A-Za-z0-9._-]+_-?\d+_\d{8}T\d{6}Z(?: \(\d+\))?\.mp4")
"""What a clip's file is called (``<source>_<track>_<UTC time>.mp4``); retention deletes only such files."""
_PARTIAL = re.compile(r"\..*\.partial-(?P<pid>\d+)-[0-9a-f]+\.mp4")
_STOP = object()
_PLACEHOLDER = np.zeros((1, 1, 3), np.uint8)


def short_source_name(source: str) -> str:
    """A source as people read it: a file's stem, a stream's host and path (no credentials), a camera's
    ``cameraN``; a configured name as it is."""
    if "/" in source or "\\" in source or source.strip().isdigit():
        return default_source_name(scrub_url(source).replace("***@", ""))
    return source


def safe_part(source: str) -> str:
    """:func:`short_source_name` for a file name: every character outside ``A-Z a-z 0-9 . _ -`` as ``_``, no
    leading dot, never empty."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", short_source_name(source)).lstrip(".")
    return safe[:80] or "source"


def clip_file_name(source: str, track_id: int, ts: str | None) -> str:
    """``<source>_<track>_<YYYYMMDDTHHMMSSZ>.mp4`` for an alert at ``ts`` (ISO 8601; None or unreadable: now)."""
    try:
        when = datetime.fromisoformat(ts) if ts else datetime.now(UTC)
    except ValueError:
        when = datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return f"{safe_part(source)}_{int(track_id)}_{when.astimezone(UTC):%Y%m%dT%H%M%SZ}.mp4"


def prune_clips(folder: Path, *, max_age_s: float, max_total_bytes: float, now: float | None = None) -> list[Path]:
    """Delete the clips in ``folder`` older than ``max_age_s``, then the oldest while all of them together exceed
    ``max_total_bytes``. Only files named like clips (:data:`CLIP_NAME`) are touched. Returns what was deleted."""
    now = time.time() if now is None else now
    clips: list[tuple[float, int, Path]] = []
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            if CLIP_NAME.fullmatch(path.name):
                with contextlib.suppress(OSError):
                    st = path.stat()
                    clips.append((st.st_mtime, st.st_size, path))
    clips.sort()
    total = sum(size for _, size, _ in clips)
    removed = []
    for mtime, size, path in clips:
        if now - mtime <= max_age_s and total <= max_total_bytes:
            break
        with contextlib.suppress(FileNotFoundError):  # another source's sink may have taken it first
            path.unlink()
            removed.append(path)
        total -= size
    if removed:
        logger.info(f"clips: deleted {len(removed)} old clip(s) in {folder} (retention)")
    return removed


def remove_dead_partials(folder: Path) -> list[Path]:
    """Delete unfinished clips left in ``folder`` by runs that were killed (their process is gone)."""
    removed = []
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            found = _PARTIAL.fullmatch(path.name)
            if found and not _alive(int(found["pid"])):
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


@dataclass
class _Item:
    """One frame handed to the clip thread: its time in the source, its picture, the alerts decided on it."""

    t: float
    picture: Picture
    alerts: list[tuple[int, str]] = field(default_factory=list)  # (track id, ISO time)


class _ClipVideo(VideoSink):
    """A clip being written: a :class:`VideoSink` (partial name, rename when complete, free-space check, frames
    timed by their timestamps) that can also be abandoned."""

    def __init__(self, path: Path, fps: float, fourcc: str, until_t: float) -> None:
        super().__init__(path, fps, fourcc, follow_timestamps=True, min_free_bytes=4 << 20)
        self.until_t = until_t

    def add(self, t: float, image: np.ndarray) -> None:
        self.write(FrameResult(Frame(_PLACEHOLDER, 0, t), FaceDetections.empty()), image)

    def abort(self) -> None:
        """Stop writing and delete the partial file."""
        if self._writer is not None:
            with contextlib.suppress(cv2.error):
                self._writer.release()
            self._writer = None
        with contextlib.suppress(OSError):
            self.partial_path.unlink()


class ClipRecorder:
    """The clip thread's state: the pre-alert buffer and the clip being written (if any).

    ``raw_buffer_mb``: memory for the pre-alert frames kept uncompressed; the frames beyond it are kept as JPEG.

    Not thread-safe: :class:`ClipSink` calls it from its one thread (tests may call it directly).
    """

    def __init__(
        self,
        folder: Path,
        source: str,
        *,
        fps: float,
        live: bool,
        pre_s: float = 5.0,
        post_s: float = 10.0,
        max_age_days: float = 30.0,
        max_total_mb: float = 2000.0,
        fourcc: str = "mp4v",
        jpeg_quality: int = 85,
        raw_buffer_mb: float = 80.0,
    ) -> None:
        self.folder, self.source = folder, source
        self.fps, self.live = fps, live
        self.pre_s, self.post_s = pre_s, post_s
        self.max_age_s, self.max_total_bytes = max_age_days * 86400.0, max_total_mb * 1e6
        self.fourcc, self.jpeg_quality = fourcc, jpeg_quality
        max_frames = max(2, math.ceil(pre_s * max(fps, 30.0) * 2) + 2)
        self.buffer = FrameRing(
            seconds=pre_s, max_frames=max_frames, budget_bytes=raw_buffer_mb * 1e6, jpeg_quality=jpeg_quality
        )
        self.clip: _ClipVideo | None = None
        self.backlog: deque[tuple[float, Picture]] = deque()
        """Frames for the clip not written yet (as the buffer kept them): the pre-alert frames of a new clip, and
        those that came while they were being written (see :meth:`pump`)."""
        self.written: list[Path] = []
        self.failed = 0

    def frame(self, item: _Item) -> None:
        """Take one frame: start or extend a clip on its alerts, keep it for the next clip, and write it into the
        clip being recorded (behind the frames still waiting in :attr:`backlog`, if any)."""
        if item.alerts:
            self._alert(item.t, item.alerts)
        kept = self._keep(item.t, item.picture)
        if self.clip is None:
            return
        if self.backlog and kept is not None:
            if item.t <= self.clip.until_t + 1e-6:
                self.backlog.append((item.t, kept))
            return
        self._write(item.t, item.picture)
        if self.clip is not None and item.t >= self.clip.until_t - 1e-6:
            self.finish()

    def pump(self) -> bool:
        """Write the oldest frame waiting in :attr:`backlog` into the clip; whether more are waiting.

        A new clip starts with the pre-alert frames waiting: written one at a time between the frames that keep
        arriving, so that the writer never falls behind by seconds (decoding and encoding 5 s of 720p takes about
        as long again) and no frame after the alert is left out."""
        if not self.backlog:
            return False
        t, picture = self.backlog.popleft()
        if self.clip is not None:
            self._write(t, picture)
        if self.clip is None:
            self.backlog.clear()
        elif not self.backlog and t >= self.clip.until_t - 1e-6:
            self.finish()
        return bool(self.backlog)

    def _write(self, t: float, picture: Picture) -> None:
        """Draw the frame (if no one did) and add it to the clip; a frame that cannot be decoded is left out."""
        image = picture.annotated()
        if image is not None:
            self._guard(lambda clip: clip.add(t, image))

    def _alert(self, t: float, alerts: list[tuple[int, str]]) -> None:
        if self.clip is not None:
            self.clip.until_t = max(self.clip.until_t, t + self.post_s)
            return
        track, ts = alerts[0]
        path = self.folder / clip_file_name(self.source, track, ts)
        self.clip = _ClipVideo(path, self._clip_fps(), self.fourcc, until_t=t + self.post_s)
        logger.info(f"clips: recording {path.name} (alert of track {track} on {self.source})")
        self.backlog = deque((bt, kept) for bt, kept in self.buffer if bt >= t - self.pre_s - 1e-6)

    def _clip_fps(self) -> float:
        """The source's fps for a file; for a live source, the rate frames actually arrived at (a camera's nominal
        rate is often not what is delivered, and frames dropped while inference was behind never arrive)."""
        if self.live and len(self.buffer) >= 10:
            span = self.buffer.span_s()
            if span >= 1.0:
                return round((len(self.buffer) - 1) / span, 2)
        return self.fps if self.fps > 0 else 25.0

    def _keep(self, t: float, picture: Picture) -> Picture | None:
        """Add the frame to the pre-alert buffer (dropping what is older than ``pre_s``); what it kept.

        While a clip is written straight from the arriving frames, a frame more than ``pre_s`` before the clip's end
        is not kept: no later clip starts before this one ends, so none reaches back that far (this saves a JPEG
        encoding per frame for most of a clip, where frames are encoded)."""
        if self.pre_s <= 0:
            return None
        if self.clip is not None and not self.backlog and t < self.clip.until_t - self.pre_s:
            self.buffer.clear()  # all older still: never needed again
            return None
        return self.buffer.add(t, picture)

    def _guard(self, step) -> None:
        """Run ``step(clip)``; a failure abandons the clip (its partial removed), counted as a fault."""
        clip = self.clip
        assert clip is not None
        try:
            step(clip)
        except (OutputError, OSError, cv2.error) as exc:
            self.clip = None
            clip.abort()
            self.failed += 1
            record_fault("clips", f"clip {clip.path.name} abandoned: {exc}")

    def finish(self) -> None:
        """Write the frames still waiting, complete the clip (renamed to its final name), then apply retention."""
        while self.backlog and self.clip is not None and self.backlog[0][0] <= self.clip.until_t + 1e-6:
            t, picture = self.backlog.popleft()
            self._write(t, picture)
        self.backlog.clear()
        clip, self.clip = self.clip, None
        if clip is None:
            return
        try:
            clip.close()
        except (OutputError, OSError, cv2.error) as exc:
            clip.abort()
            self.failed += 1
            record_fault("clips", f"clip {clip.path.name} not finished: {exc}")
            return
        self.written.append(clip.final_path)
        logger.info(f"clips: wrote {clip.final_path} ({clip.frames_encoded} frames at {clip.fps:g} fps)")
        self.prune()

    def prune(self) -> None:
        prune_clips(self.folder, max_age_s=self.max_age_s, max_total_bytes=self.max_total_bytes)


class ClipSink:
    """``--clips``: the lazy frame sink of one source that hands frames to a :class:`ClipRecorder` on its own thread.

    ``write_picture`` never raises. For a live source (``recorder.live``) it never blocks either: a frame that finds
    the queue (``queue_size`` frames) full is left out of the clips (counted in ``frames_dropped``), but its alerts
    are kept. For a file it waits for room up to ``wait_s`` first (a run over a file is not in a hurry; its clips
    should miss nothing). The thread runs at the lowest CPU priority (nice + ``nice``, where the system allows it):
    on a busy machine the inference comes first, and the clips take the time it leaves. ``blur``: faces are blurred
    when the frame reaches the sink with nothing to draw (the renderer already blurs what it draws). ``close``
    completes the clip being written and waits for it at most ``close_timeout_s``.
    """

    data_only = False
    takes_events = False
    lazy = True

    def __init__(
        self,
        recorder: ClipRecorder,
        *,
        blur: bool = False,
        queue_size: int = 8,
        wait_s: float = 10.0,
        nice: int = 19,
        close_timeout_s: float = 30.0,
    ) -> None:
        self.recorder = recorder
        self.blur = blur
        self.wait_s = wait_s if not recorder.live else 0.0
        self.nice = nice
        self.close_timeout_s = close_timeout_s
        self.frames_dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._late: deque[tuple[int, str]] = deque(maxlen=64)
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=f"maskwatch-clips-{recorder.source}", daemon=True)
        self._thread.start()

    def __enter__(self) -> ClipSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        """A frame already drawn (or with nothing to draw): see :meth:`write_picture`."""
        self.write_picture(result, Picture.of(annotated))

    def write_picture(self, result: FrameResult, picture: Picture) -> None:
        if self._closed:
            return
        alerts = [(e.track_id, e.ts) for e in result.events if e.event == "alert"]
        if self.blur and picture.overlay is None and len(result.faces):
            image = picture.annotated()
            if image is result.frame.image:  # the raw frame: nothing drew it, so nothing blurred it
                picture = Picture.of(blur_boxes(image, result.faces.xyxy))
        try:
            item = _Item(result.frame.timestamp_s, picture, alerts)
            if self.wait_s > 0 and self._thread.is_alive():
                self._queue.put(item, timeout=self.wait_s)
            else:
                self._queue.put_nowait(item)
        except queue.Full:
            self.frames_dropped += 1
            self._late.extend(alerts)  # picked up with the next frame that gets through

    def _work(self) -> None:
        lower_priority(self.nice)
        recorder = self.recorder
        while True:
            try:  # with frames waiting for the clip, write one of them whenever no new frame is there
                item = self._queue.get_nowait() if recorder.backlog else self._queue.get()
            except queue.Empty:
                self._guarded(recorder.pump)
                continue
            if item is _STOP:
                break
            while self._late:
                item.alerts.append(self._late.popleft())
            self._guarded(lambda item=item: recorder.frame(item))
        self._guarded(recorder.finish)

    @staticmethod
    def _guarded(step) -> None:
        try:
            step()
        except Exception as exc:  # a fault of the clips never stops the monitor
            record_fault("clips", f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Complete the clip being written (a shorter ``post_s`` at the end of a run); bounded in time."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + self.close_timeout_s
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:
                self._queue.put(_STOP, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join(timeout=max(deadline - time.monotonic(), 0.0))
        if self._thread.is_alive():
            source = self.recorder.source
            logger.warning(f"clips: {source}: the clip writer did not finish in {self.close_timeout_s:g} s")
        if self.frames_dropped:
            logger.info(f"clips: {self.recorder.source}: {self.frames_dropped} frames left out (the writer was behind)")


def lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value by ``nice`` (Linux: the nice value is per thread); nothing where the
    system does not allow it."""
    with contextlib.suppress(AttributeError, OSError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + nice, 19))


def open_clip_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) and check it can be written, before any model loads; remove the partial
    files of killed runs. One line (:class:`OutputError`) when it cannot be used."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create clips folder {folder}: {exc.strerror}") from None
    if not folder.is_dir():
        raise OutputError(f"--clips {folder} is not a folder")
    check_writable(folder / "probe.mp4")
    remove_dead_partials(folder)
