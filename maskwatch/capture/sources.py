"""Sources: open a camera, stream, video file, image or folder of images as a capture `Source`."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from loguru import logger

from maskwatch.capture.base import Forwarded, RawFrame, Source
from maskwatch.capture.formats import IMAGE_FORMATS, OpenCVName, matroska_durations, quiet_opencv, sniff
from maskwatch.capture.images import read_image, to_bgr8
from maskwatch.capture.resolve import camera_index, find_path, folder_images, unreadable_reason
from maskwatch.errors import SourceError
from maskwatch.media import IMAGE_SUFFIXES, is_live_spec, scrub_url

MJPEG_SUFFIXES = (".mjpeg", ".mjpg", ".avi", ".mov", ".mkv", ".mp4")
"""Names of a video that may begin with a JPEG (a raw Motion-JPEG stream saved to a file)."""


class VideoFileSource(Source):
    """A video file (or a finite recording served over HTTP) decoded with OpenCV; fails at open if it has no
    decodable frame.

    A damaged stretch is skipped: OpenCV decodes again after a failed read, so a failed read before the frame count
    the header announces is retried (at most :attr:`MAX_RETRIES` times in a row) and the frames lost are counted
    (``frames_lost``, from the container's time of the frames on either side). A file that stops decoding for good
    before that count (truncated) is processed up to there, with a warning saying how many frames were read.
    """

    is_live = False
    finite = True
    MAX_RETRIES = 3000
    """Failed reads in a row before the video is taken to have ended (each costs microseconds at its end)."""

    def __init__(self, path: Path | str, start: int = 0, stop: int | None = None) -> None:
        """``start``/``stop``: read only frames ``[start, stop)`` (a chunk of a long video); indices stay absolute.
        ``path``: a file, or the URL of a recording."""
        self.path = path
        self.paths = (path,) if isinstance(path, Path) else ()
        self.name = str(path) if isinstance(path, Path) else scrub_url(path)
        self.first_index = start
        self.stop = stop
        self._alias = OpenCVName(path) if isinstance(path, Path) else None
        self._cap = self._open()
        first = self._first_frame(start)
        self._pending: np.ndarray | None = first
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else 25.0
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        self.frames_read = 0
        self.frames_lost = 0
        self.truncated = False
        self._ended = False
        self._last_ts: float | None = None
        self._say_pixel_aspect()

    def _say_pixel_aspect(self) -> None:
        """Non-square pixels (anamorphic DV, DVD, some cameras): frames are resampled to square pixels at the
        display aspect (the width scaled by the sample aspect ratio), so faces keep their shape for the models and
        the output shows the picture as a player would; said once."""
        self._square_wh: tuple[int, int] | None = None
        num, den = self._cap.get(cv2.CAP_PROP_SAR_NUM), self._cap.get(cv2.CAP_PROP_SAR_DEN)
        if not (num > 0 and den > 0) or abs(num / den - 1.0) < 0.01 or self._pending is None:
            return
        h, w = self._pending.shape[:2]
        width = max(2, int(round(w * num / den / 2)) * 2)
        self._square_wh = (width, h)
        ratio = Fraction(width, h).limit_denominator(100)
        logger.info(
            f"video {self.name} has non-square pixels (sample aspect ratio {num:.0f}:{den:.0f}): its {w}x{h} frames "
            f"are resampled to {width}x{h} square pixels ({ratio.numerator}:{ratio.denominator}), as players show it"
        )

    def _open(self) -> cv2.VideoCapture:
        with quiet_opencv():
            if isinstance(self.path, Path):
                cap = cv2.VideoCapture(self._alias.name if self._alias else str(self.path))
            else:  # a recording over HTTP: a server that stops answering ends the read instead of hanging it
                limits = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 10_000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 10_000]
                cap = cv2.VideoCapture(self.path, cv2.CAP_ANY, limits)
        if not cap.isOpened():
            self._close_alias()
            raise SourceError(f"video {self.name} has no readable frames (empty, truncated or not a video)")
        return cap

    def _first_frame(self, start: int) -> np.ndarray:
        if start > 0:
            self._seek(start)
        with quiet_opencv():
            ok, first = self._cap.read()
        if not ok or first is None:
            no_frames = f"video {self.name} has no readable frames (empty, truncated or not a video)"
            message = undecodable(self.name, self._cap) if start == 0 else no_frames
            self.close()
            raise SourceError(message)
        return first

    def _seek(self, start: int) -> None:
        """Position on frame ``start``; where the container cannot seek exactly, decode up to it instead."""
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        if int(self._cap.get(cv2.CAP_PROP_POS_FRAMES)) == start:
            return
        self._cap.release()
        self._cap = self._open()
        for _ in range(start):
            if not self._cap.grab():
                raise SourceError(f"video {self.name} ends before frame {start}")

    def read(self) -> RawFrame | None:
        if self.stop is not None and self.first_index + self.frames_read >= self.stop:
            return None
        frame: np.ndarray | None
        if self._pending is not None:
            frame, self._pending = self._pending, None
        else:
            frame = self._read_past_damage()
            if frame is None:
                self._end()
                return None
        self.frames_read += 1
        if self._square_wh is not None and frame.shape[1::-1] != self._square_wh:
            frame = cv2.resize(frame, self._square_wh, interpolation=cv2.INTER_LINEAR)
        return RawFrame(to_bgr8(frame), self.name, self._timestamp())

    def _read_past_damage(self) -> np.ndarray | None:
        """The next decodable frame; failed reads are retried while the header announces more frames."""
        failures = 0
        while True:
            with quiet_opencv():
                ok, frame = self._cap.read()
            if ok and frame is not None:
                if failures:
                    self._count_lost(failures)
                return frame
            failures += 1
            end = self._announced_end()
            remaining = (end or 0) - self.first_index - self.frames_read - self.frames_lost - failures
            if remaining < 0 or failures >= self.MAX_RETRIES:
                return None

    def _count_lost(self, failures: int) -> None:
        """Count the frames a damaged stretch cost (by the container's clock where it has one) and say so."""
        lost = failures
        ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        if self._last_ts is not None and ms and ms / 1e3 > self._last_ts:
            lost = max(1, round((ms / 1e3 - self._last_ts) * self.fps) - 1)
        self.frames_lost += lost
        at = self.first_index + self.frames_read
        logger.warning(f"video {self.name}: damaged after frame {at}; skipped {lost} unreadable frames and went on")

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

    def _announced_end(self) -> int | None:
        """The index after the last frame to read: the header's frame count, or ``stop`` for a chunk."""
        return self.frame_count if self.stop is None else min(self.stop, self.frame_count or self.stop)

    def _end(self) -> None:
        # Header counts can be estimates, so a shortfall of one frame is not reported.
        end = self._announced_end()
        seen = self.frames_read + self.frames_lost
        if not self._ended and end is not None and seen < end - self.first_index - 1 and not self._video_complete():
            self.truncated = True
            logger.warning(
                f"video {self.name} ended after {self.frames_read} of the {self.frame_count} frames its header "
                "announces (truncated or damaged?); the frames read were processed"
            )
        if not self._ended and self.frames_lost:
            logger.warning(f"video {self.name}: {self.frames_lost} frames lost to damage, {self.frames_read} processed")
        self._ended = True

    def _video_complete(self) -> bool:
        """Whether the video track ended where its own duration says (a Matroska file's header count follows the
        container, which a longer audio track stretches), although fewer frames came than the header announced."""
        if not isinstance(self.path, Path) or self._last_ts is None or self.stop is not None:
            return False
        end_s = self._last_ts + 1.0 / self.fps
        if not any(abs(end_s - d) <= 1.5 / self.fps for d in matroska_durations(self.path)):
            return False
        logger.info(
            f"video {self.name}: all {self.frames_read} frames of its video track read ({end_s:.2f} s); the "
            f"header's {self.frame_count} frames count the container's length (a longer audio track)"
        )
        return True

    def close(self) -> None:
        self._cap.release()
        self._close_alias()

    def _close_alias(self) -> None:
        if self._alias is not None:
            self._alias.close()


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
                logger.warning(f"skipping {path}: not a readable image ({unreadable_reason(path)})")
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
        self.recording = isinstance(spec, str) and _is_http(spec) and int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) > 0
        """A URL of a finite recording (the container announces a frame count), not a live stream."""

    def read(self) -> RawFrame | None:
        ok, frame = self._cap.read()
        return RawFrame(to_bgr8(frame), self.name) if ok and frame is not None else None

    def close(self) -> None:
        self._cap.release()


class RealtimeFileSource(Source):
    """A video file played at its own fps as if it were a camera: a slow consumer drops frames (``--realtime``)."""

    is_live = True
    finite = True
    truncated: Forwarded[bool] = Forwarded("video")
    frames_lost: Forwarded[int] = Forwarded("video")

    def __init__(self, video: VideoFileSource) -> None:
        self.video = video
        self.name = video.name
        self.fps = video.fps
        self.frame_count = video.frame_count
        self.first_index = video.first_index
        self.paths = video.paths
        self._start: float | None = None
        self._sent = 0

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
    A URL of a recording (an ``http://`` file with a frame count) is read once, as a file. An image is told by
    its content, whatever its name says.
    """
    raw = str(spec)
    spec = raw.strip()
    index = camera_index(spec)
    if index is not None or is_live_spec(spec):
        target: str | int = index if index is not None else spec
        live = LiveSource(target, open_timeout_s)
        if _is_http(spec) and live.recording:  # a file served over HTTP ends: read it once, as a file
            live.close()
            return _file_source(VideoFileSource(spec), realtime)
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
    path = find_path(raw)
    if path.is_dir():
        return _open_folder(path)
    if not path.is_file():
        raise SourceError(f"source {path} is not a file, folder, camera index or URL")
    fmt = sniff(path)
    if fmt == "GIF" and _frame_count(path) > 1:  # an animation is a video; one frame, an image
        return _file_source(VideoFileSource(path), realtime)
    if fmt == "JPEG" and path.suffix.lower() in MJPEG_SUFFIXES:  # JPEG frames one after another: a video
        return _file_source(VideoFileSource(path), realtime)
    if fmt in IMAGE_FORMATS or (fmt is None and path.suffix.lower() in IMAGE_SUFFIXES):
        if read_image(path) is None:
            raise SourceError(f"cannot read image {path}: {unreadable_reason(path)}")
        return ImageFilesSource([path], name=str(path))
    return _file_source(VideoFileSource(path), realtime)


def _is_http(spec: str) -> bool:
    return spec.lower().startswith(("http://", "https://"))


def _file_source(video: VideoFileSource, realtime: bool) -> Source:
    return RealtimeFileSource(video) if realtime else video


def _open_folder(path: Path) -> ImageFilesSource:
    """The images directly in ``path``; an error if it holds none that can be read (nothing would be written)."""
    images = folder_images(path)
    if not images:
        raise SourceError(f"folder {path} contains no images ({', '.join(IMAGE_SUFFIXES)})")
    if not any(read_image(p) is not None for p in images):  # stops at the first readable one
        raise SourceError(f"folder {path}: none of its {len(images)} images can be read (corrupt or not images)")
    return ImageFilesSource(images, name=str(path))


def _frame_count(path: Path) -> int:
    alias = OpenCVName(path)
    try:
        with quiet_opencv():
            video = cv2.VideoCapture(alias.name)
        try:
            return int(video.get(cv2.CAP_PROP_FRAME_COUNT)) if video.isOpened() else 0
        finally:
            video.release()
    finally:
        alias.close()


def _codec_of(cap: cv2.VideoCapture) -> str:
    """The FourCC of an opened video as text (``AV01``, ``avc1``), or "" when OpenCV does not say."""
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    text = code.to_bytes(4, "little").decode("latin-1") if code > 0 else ""
    return text if text.isprintable() and text.strip() else ""


_CODEC_NAMES = {"av01": "AV1", "av1": "AV1", "vp09": "VP9", "hev1": "HEVC", "hvc1": "HEVC", "hevc": "HEVC"}


def undecodable(path: Path | str, cap: cv2.VideoCapture) -> str:
    """The error for a video that opens but yields no frame: name the codec when it is known, else say why."""
    codec = _codec_of(cap)
    if not codec:
        return f"video {path} has no readable frames (empty, truncated or not a video)"
    name = _CODEC_NAMES.get(codec.strip().lower(), codec.strip())
    return (
        f"video {path} uses the {name} codec (FourCC {codec.strip()}), which this OpenCV build cannot decode: "
        f"re-encode it (e.g. ffmpeg -i {Path(path).name} -c:v libx264 out.mp4) or use an OpenCV build whose FFmpeg has "
        + ("dav1d" if name == "AV1" else f"a {name} decoder")
    )
