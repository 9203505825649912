"""Sources: open a camera, stream, video file, image or folder of images as a capture `Source`."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import cv2
import numpy as np
from loguru import logger

from maskwatch.capture.base import RawFrame, Source
from maskwatch.capture.images import read_image, to_bgr8
from maskwatch.errors import SourceError
from maskwatch.media import IMAGE_SUFFIXES, is_live_spec, scrub_url


@contextlib.contextmanager
def quiet_opencv():
    """Silence OpenCV's own log lines (e.g. ``[ERROR] Camera index out of range``) while a source opens.

    maskwatch reports a failed open itself, as one line; OpenCV's extra lines would only add noise.
    """
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None:
        yield
        return
    previous = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        log.setLogLevel(previous)


class VideoFileSource(Source):
    """A video file decoded with OpenCV; fails at open if it has no decodable frame.

    A file that stops decoding before the frame count its header announces (truncated, damaged) is processed up
    to there, with a warning saying how many frames were read.
    """

    is_live = False
    finite = True

    def __init__(self, path: Path, start: int = 0, stop: int | None = None) -> None:
        """``start``/``stop``: read only frames ``[start, stop)`` (a chunk of a long video); indices stay absolute."""
        self.path = path
        self.paths = (path,)
        self.name = str(path)
        self.first_index = start
        self.stop = stop
        no_frames = f"video {path} has no readable frames (empty, truncated or not a video)"
        with quiet_opencv():
            self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise SourceError(no_frames)
        if start > 0:
            self._seek(start)
        with quiet_opencv():
            ok, first = self._cap.read()
        if not ok or first is None:
            message = undecodable(path, self._cap) if start == 0 else no_frames
            self._cap.release()
            raise SourceError(message)
        self._pending: np.ndarray | None = first
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else 25.0
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        self.frames_read = 0
        self.truncated = False
        self._ended = False
        self._last_ts: float | None = None

    def _seek(self, start: int) -> None:
        """Position on frame ``start``; where the container cannot seek exactly, decode up to it instead."""
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        if int(self._cap.get(cv2.CAP_PROP_POS_FRAMES)) == start:
            return
        self._cap.release()
        self._cap = cv2.VideoCapture(str(self.path))
        for _ in range(start):
            if not self._cap.grab():
                raise SourceError(f"video {self.path} ends before frame {start}")

    def read(self) -> RawFrame | None:
        if self.stop is not None and self.first_index + self.frames_read >= self.stop:
            return None
        if self._pending is not None:
            frame, self._pending = self._pending, None
        else:
            ok, frame = self._cap.read()
            if not ok or frame is None:
                self._end()
                return None
        self.frames_read += 1
        return RawFrame(to_bgr8(frame), self.name, self._timestamp())

    def _timestamp(self) -> float:
        """The container's time of the frame just read; frame index / fps where it has none (or goes backwards)."""
        index = self.first_index + self.frames_read - 1
        ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        fallback = index / self.fps
        if self._last_ts is None:
            ts = ms / 1e3 if ms and ms > 0 else fallback
        else:
            ts = ms / 1e3 if ms and ms / 1e3 > self._last_ts else max(fallback, self._last_ts + 1e-3)
        self._last_ts = ts
        return ts

    def _end(self) -> None:
        # Header counts can be estimates, so a shortfall of one frame is not reported.
        end = self.frame_count if self.stop is None else min(self.stop, self.frame_count or self.stop)
        if not self._ended and end is not None and self.frames_read < end - self.first_index - 1:
            self.truncated = True
            logger.warning(
                f"video {self.name} ended after {self.frames_read} of the {self.frame_count} frames its header "
                "announces (truncated or damaged?); the frames read were processed"
            )
        self._ended = True

    def close(self) -> None:
        self._cap.release()


class ImageFilesSource(Source):
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

    def read(self) -> RawFrame | None:
        while self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            image = read_image(path)
            if image is None or image.size == 0:
                logger.warning(f"skipping {path}: not a readable image")
                self.skipped.append(path)
                continue
            return RawFrame(to_bgr8(image), path.name)
        return None

    def close(self) -> None:
        pass


class LiveSource(Source):
    """A webcam (index) or network stream (rtsp://, http://) opened with OpenCV."""

    is_live = True
    finite = False
    frame_count = None

    def __init__(self, spec: str | int, open_timeout_s: float = 10.0) -> None:
        self.spec = spec
        self.name = scrub_url(str(spec))
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(open_timeout_s * 1000),
        ]
        with quiet_opencv():
            self._cap = cv2.VideoCapture(spec) if isinstance(spec, int) else cv2.VideoCapture(spec, cv2.CAP_ANY, params)
        if not self._cap.isOpened():
            what = f"camera {spec}" if isinstance(spec, int) else f"stream {self.name}"
            raise SourceError(f"cannot open {what}: no such device or the stream is unreachable")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else 25.0

    def read(self) -> RawFrame | None:
        ok, frame = self._cap.read()
        return RawFrame(to_bgr8(frame), self.name) if ok and frame is not None else None

    def close(self) -> None:
        self._cap.release()


class RealtimeFileSource(Source):
    """A video file played at its own fps as if it were a camera: a slow consumer drops frames (``--realtime``)."""

    is_live = True
    finite = True

    def __init__(self, video: VideoFileSource) -> None:
        self.video = video
        self.name = video.name
        self.fps = video.fps
        self.frame_count = video.frame_count
        self.first_index = video.first_index
        self.paths = video.paths
        self._start: float | None = None
        self._sent = 0

    @property
    def truncated(self) -> bool:
        return self.video.truncated

    def read(self) -> RawFrame | None:
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
    max_backoff_s: float = 30.0,
) -> Source:
    """Open ``spec``: a camera index (``0``), a URL, an image, a folder of images or a video file.

    ``realtime`` plays a video file at its own fps with live-source semantics (frames dropped when behind).
    ``reconnect`` wraps cameras and streams in a :class:`~maskwatch.capture.reconnect.ReconnectingSource` that reopens
    them after ``stall_s`` seconds without frames (default ``open_timeout_s``); the first open is never retried.
    """
    spec = str(spec).strip()
    if is_live_spec(spec):
        target: str | int = int(spec) if spec.isdigit() else spec
        live = LiveSource(target, open_timeout_s)
        if not reconnect:
            return live
        from maskwatch.capture.reconnect import ReconnectingSource

        return ReconnectingSource(
            lambda: LiveSource(target, open_timeout_s),
            name=live.name,
            stall_s=open_timeout_s if stall_s is None else stall_s,
            max_backoff_s=max_backoff_s,
            first=live,
        )
    path = Path(spec).expanduser()
    if path.is_dir():
        return _open_folder(path)
    if not path.exists():
        raise SourceError(f"source not found: {path}")
    if not path.is_file():
        raise SourceError(f"source {path} is not a file, folder, camera index or URL")
    if path.suffix.lower() == ".gif" and _frame_count(path) > 1:  # an animation is a video; one frame, an image
        video = VideoFileSource(path)
        return RealtimeFileSource(video) if realtime else video
    if path.suffix.lower() in IMAGE_SUFFIXES:
        if read_image(path) is None:
            raise SourceError(f"cannot read image {path}: not a valid image file")
        return ImageFilesSource([path], name=str(path))
    video = VideoFileSource(path)
    return RealtimeFileSource(video) if realtime else video


def _open_folder(path: Path) -> ImageFilesSource:
    """The images directly in ``path``; an error if it holds none that can be read (nothing would be written)."""
    images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    nested = next((p for p in path.rglob("*") if p.parent != path and p.suffix.lower() in IMAGE_SUFFIXES), None)
    if nested is not None:
        logger.warning(f"images in subfolders of {path} are not read (e.g. {nested.relative_to(path)}): "
                       "run maskwatch on each folder")  # fmt: skip
    if not images:
        raise SourceError(f"folder {path} contains no images ({', '.join(IMAGE_SUFFIXES)})")
    if not any(read_image(p) is not None for p in images):  # stops at the first readable one
        raise SourceError(f"folder {path}: none of its {len(images)} images can be read (corrupt or not images)")
    return ImageFilesSource(images, name=str(path))


def _frame_count(path: Path) -> int:
    with quiet_opencv():
        video = cv2.VideoCapture(str(path))
    try:
        return int(video.get(cv2.CAP_PROP_FRAME_COUNT)) if video.isOpened() else 0
    finally:
        video.release()


def _codec_of(cap: cv2.VideoCapture) -> str:
    """The FourCC of an opened video as text (``AV01``, ``avc1``), or "" when OpenCV does not say."""
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    text = code.to_bytes(4, "little").decode("latin-1") if code > 0 else ""
    return text if text.isprintable() and text.strip() else ""


_CODEC_NAMES = {"av01": "AV1", "av1": "AV1", "vp09": "VP9", "hev1": "HEVC", "hvc1": "HEVC", "hevc": "HEVC"}


def undecodable(path: Path, cap: cv2.VideoCapture) -> str:
    """The error for a video that opens but yields no frame: name the codec when it is known, else say why."""
    codec = _codec_of(cap)
    if not codec:
        return f"video {path} has no readable frames (empty, truncated or not a video)"
    name = _CODEC_NAMES.get(codec.strip().lower(), codec.strip())
    return (
        f"video {path} uses the {name} codec (FourCC {codec.strip()}), which this OpenCV build cannot decode: "
        f"re-encode it (e.g. ffmpeg -i {path.name} -c:v libx264 out.mp4) or use an OpenCV build whose FFmpeg has "
        + ("dav1d" if name == "AV1" else f"a {name} decoder")
    )
