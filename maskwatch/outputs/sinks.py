"""Sinks: where annotated frames and detections go (window, video, images, JSON lines).

Every sink is a context manager whose ``close`` finalizes its output on any exit path.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from loguru import logger

from maskwatch.errors import OutputError
from maskwatch.outputs.partial import move_into_place, partial_name, remove_stale_partials, stat_or_none
from maskwatch.types import FrameResult


class Sink(Protocol):
    """Receives every processed frame in order.

    ``data_only``: the sink never looks at pixels (``annotated`` may then be the raw frame: nothing is drawn for it).
    ``takes_events``: it also receives the events that come after the last frame (tracks ended at the end of the
    input), as one extra result without faces. A class that subclasses ``Sink`` gets both False.
    """

    data_only: bool = False
    takes_events: bool = False

    def write(self, result: FrameResult, annotated: np.ndarray) -> None: ...

    def close(self) -> None: ...


class _ClosingSink:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Finalize the output (each sink says how)."""


def check_writable(path: Path, inputs: tuple[Path, ...] = ()) -> None:
    """Fail early if ``path`` cannot be written or would overwrite an input."""
    parent = path.parent if path.parent != Path("") else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder is not writable: {parent}")
    _probe_folder(parent)
    if path.is_dir() and path.suffix:
        raise OutputError(f"output {path} is a folder")
    for source in inputs:
        if path.exists() and source.exists() and path.resolve() == source.resolve():
            raise OutputError(f"output {path} would overwrite the input")


def _probe_folder(folder: Path) -> None:
    """Create and remove a scratch file in ``folder``: ``os.access`` says yes to root even where nothing can be made
    (``/proc``, a read-only mount), and the run should fail here, before any model loads, not at the first frame."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".maskwatch-probe-", dir=folder)
    except OSError as exc:
        why = "files cannot be created there" if exc.errno == errno.ENOENT else exc.strerror
        raise OutputError(f"output folder is not writable: {folder} ({why})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


class VideoSink(_ClosingSink):
    """Writes annotated frames to a video with the source's size and fps; opened at the first frame.

    The video is written under a temporary name beside ``path`` (see :func:`partial_name`) and renamed when it is
    finalized, so a file under the final name always plays: a run killed with SIGKILL or by a power cut leaves only
    the partial file, never an ``out.mp4`` without its index.

    ``follow_timestamps``: the output is a constant-rate video at ``fps`` that plays in the source's time: a frame
    whose successor comes later than one output frame (variable frame rate, dropped live frames) is repeated to
    fill the gap (gaps over ``max_gap_s`` are not filled); every input frame appears at least once, so stretches
    faster than ``fps`` play slightly fast and the clock catches up at the next slower stretch.

    OpenCV's writer fails silently when the disk fills, leaving a file that does not play. So every
    ``check_every`` frames the free space is checked, and writing stops with an error while there is still
    room (``min_free_bytes`` or 50 frames' worth) to finalize a playable video.
    """

    data_only = False
    takes_events = False

    def __init__(
        self,
        path: Path,
        fps: float,
        fourcc: str = "mp4v",
        *,
        min_free_bytes: int = 1 << 20,
        check_every: int = 10,
        follow_timestamps: bool = False,
        max_gap_s: float = 2.0,
    ) -> None:
        self.path = path
        self.partial_path = partial_name(path)
        self.final_path = path
        """Where the video ended up (``NAME (2).SUFFIX`` when another run finished ``path`` meanwhile)."""
        self._before = stat_or_none(path)
        self.fps = fps
        self.fourcc = fourcc
        self.min_free_bytes = min_free_bytes
        self.check_every = check_every
        self.follow_timestamps = follow_timestamps
        self.max_gap_s = max_gap_s
        self.frames_written = 0
        """Input frames written (each once, whatever was repeated)."""
        self.frames_encoded = 0
        """Frames in the file, repeats included."""
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._pad = (0, 0)
        self._last: np.ndarray | None = None
        self._clock: tuple[float, int] | None = None  # (source time, output frame) the output time is counted from

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        h, w = annotated.shape[:2]
        if self._writer is None:
            self._open((w, h))
        if (w, h) != self._size:  # a stream changed resolution: keep the file consistent
            annotated = cv2.resize(annotated, self._size, interpolation=cv2.INTER_AREA)
        if self._pad != (0, 0):
            annotated = cv2.copyMakeBorder(annotated, 0, self._pad[1], 0, self._pad[0], cv2.BORDER_REPLICATE)
        if self.follow_timestamps:
            self._fill_until(result.frame.timestamp_s)
        self._encode(annotated)
        self.frames_written += 1
        self._last = annotated

    def _open(self, size_wh: tuple[int, int]) -> None:
        """Open the writer for frames of ``size_wh``. The encoders need even sizes and OpenCV would crop an odd
        one (641x479 came out 640x478), so an odd side gets one replicated column or row instead: no pixel lost."""
        self._size = size_wh
        w, h = size_wh
        self._pad = (w % 2, h % 2)
        if self._pad != (0, 0):
            logger.info(f"{self.path}: written {w + w % 2}x{h + h % 2} (the {w}x{h} frames with one edge "
                        "column/row repeated: video encoders need even sizes)")  # fmt: skip
        remove_stale_partials(self.path)
        fourcc = cv2.VideoWriter.fourcc(*self.fourcc)
        self._writer = cv2.VideoWriter(str(self.partial_path), fourcc, self.fps, (w + w % 2, h + h % 2))
        if not self._writer.isOpened():
            self._writer = None
            raise OutputError(f"cannot write video {self.path} (codec {self.fourcc})")

    def _fill_until(self, t: float) -> None:
        """Repeat the previous frame until the output clock reaches source time ``t``."""
        if self._clock is None or self._last is None:
            self._clock = (t, self.frames_encoded)
            return
        t0, n0 = self._clock
        due = n0 + round((t - t0) * self.fps)
        if (due - self.frames_encoded) / self.fps > self.max_gap_s:  # a long outage: restart the clock here
            self._clock = (t, self.frames_encoded)
            return
        while self.frames_encoded < due:
            self._encode(self._last)

    def _encode(self, image: np.ndarray) -> None:
        if self._writer is None:
            raise OutputError(f"video {self.path} is closed")
        if self.frames_encoded % self.check_every == 0:
            self._check_space()
        self._writer.write(image)
        self.frames_encoded += 1

    def _check_space(self) -> None:
        try:
            free = shutil.disk_usage(self.path.parent if str(self.path.parent) else ".").free
            size = self.partial_path.stat().st_size
        except OSError:
            return
        reserve = max(self.min_free_bytes, 50 * size // max(self.frames_encoded, 1))
        if free < reserve:
            raise OutputError(
                f"disk almost full while writing {self.path} ({free / 1e6:.1f} MB left): stopped after "
                f"{self.frames_written} frames so the video stays playable"
            )

    def close(self) -> None:
        """Finalize the video (its index is written) and move it to its final name."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            try:
                self.final_path = move_into_place(self.partial_path, self.path, self._before)
            except OSError as exc:
                raise OutputError(f"cannot finish video {self.path}: {exc.strerror}") from None


class ImageSink(_ClosingSink):
    """Writes annotated images: into a folder (named as the inputs) or to one file for a single image."""

    data_only = False
    takes_events = False

    def __init__(self, path: Path, single_file: bool, jpeg_quality: int = 92) -> None:
        self.path = path
        self.single_file = single_file
        self.jpeg_quality = jpeg_quality
        self.frames_written = 0
        if not single_file:
            try:
                path.mkdir(parents=False, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create output folder {path}: {exc.strerror}") from None

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        target = self.path if self.single_file else self.path / Path(result.frame.name).name
        data = encode_image(target, annotated, self.jpeg_quality)
        tmp = partial_name(target)
        try:
            tmp.write_bytes(data)
            os.replace(tmp, target)  # never leave a half-written image under the final name
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise OutputError(f"cannot write image {target}: {exc.strerror}") from None
        self.frames_written += 1

    def close(self) -> None:
        pass


def encode_image(target: Path, image: np.ndarray, jpeg_quality: int) -> bytes:
    """``image`` encoded as ``target``'s suffix says, or as JPEG where OpenCV has no encoder for it (``.jfif``,
    ``.download``, no suffix): the bytes are written by Python, so any file name works."""
    suffix = target.suffix.lower()
    ext = suffix if suffix.isascii() and len(suffix) > 1 and cv2.haveImageWriter("x" + suffix) else ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if ext in (".jpg", ".jpeg", ".jpe") else []
    ok, data = cv2.imencode(ext, image, params)
    if not ok:
        raise OutputError(f"cannot encode image {target}")
    return data.tobytes()


class JsonLinesSink(_ClosingSink):
    """``--detections``: one JSON object per frame, flushed as it is written."""

    data_only = True
    takes_events = False

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise OutputError(f"cannot write detections file {path}: {exc.strerror}") from None

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        try:
            self._file.write(json.dumps(result.to_json(), separators=(",", ":")) + "\n")
            self._file.flush()
        except OSError as exc:
            raise OutputError(f"cannot write detections file {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        if not self._file.closed:
            with contextlib.suppress(OSError):  # a full disk already raised its error at the write
                self._file.close()


class WindowSink(_ClosingSink):
    """Shows frames in an OpenCV window; pressing ``q`` or Esc (or closing the window) asks to stop."""

    data_only = False
    takes_events = False

    def __init__(self, title: str = "maskwatch", max_size: tuple[int, int] | None = None) -> None:
        """``max_size``: the largest window (w, h); default 90 % of the screen where X11 tells its size, else
        1920x1080. The window opens at the video's size, scaled down to fit."""
        self.title = title
        self.quit_requested = False
        self.max_size = max_size
        self._sized = False
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise OutputError("--show needs a display (DISPLAY is not set); use --output to write a video instead")
        display = os.environ.get("DISPLAY")
        if sys.platform.startswith("linux") and display and not os.environ.get("WAYLAND_DISPLAY"):
            if not _x11_reachable(display):  # else the GUI toolkit may end the whole process
                raise OutputError(f"--show cannot open the display {display!r}; use --output to write a video instead")
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_GUI_NORMAL)  # no toolbar: the image is the window
        except cv2.error:
            raise OutputError("--show needs a display and an OpenCV build with GUI support (opencv-python)") from None

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        if not self._sized:  # open at the video's size, fitted to the screen when larger
            h, w = annotated.shape[:2]
            screen = _screen_size()
            max_w, max_h = self.max_size or (screen and (int(0.9 * screen[0]), int(0.9 * screen[1]))) or (1920, 1080)
            scale = min(1.0, max_w / w, max_h / h)
            cv2.resizeWindow(self.title, max(1, round(w * scale)), max(1, round(h * scale)))
            self._sized = True
        cv2.imshow(self.title, annotated)
        key = cv2.waitKey(1) & 0xFF
        closed = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        if key in (ord("q"), 27) or closed:
            self.quit_requested = True

    def close(self) -> None:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.title)


def _x11_reachable(display: str, timeout_s: float = 2.0) -> bool:
    """Whether an X server answers at ``display`` (``[host]:N[.S]``): its Unix socket, or TCP port 6000+N."""
    import re
    import socket

    found = re.fullmatch(r"(?:([^:/]*)/)?([^:]*):(\d+)(?:\.\d+)?", display)
    if not found:
        return False
    host, number = found.group(2), int(found.group(3))
    addresses: list[tuple[socket.AddressFamily, str | tuple[str, int]]]
    if host in ("", "unix"):
        addresses = [(socket.AF_UNIX, f"\0/tmp/.X11-unix/X{number}"), (socket.AF_UNIX, f"/tmp/.X11-unix/X{number}")]
    else:
        addresses = [(socket.AF_INET, (host, 6000 + number))]
    for family, address in addresses:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout_s)
                sock.connect(address)
            return True
        except OSError:
            continue
    return False


def _screen_size() -> tuple[int, int] | None:
    """The X11 screen's size in pixels (``xdpyinfo``), or None where it cannot be told."""
    import re
    import subprocess

    try:
        out = subprocess.run(["xdpyinfo"], capture_output=True, text=True, timeout=2).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"dimensions:\s+(\d+)x(\d+) pixels", out)
    return (int(found.group(1)), int(found.group(2))) if found else None


class NullVideoSink:
    """Stands in for ``--output`` (``maskwatch soak``): needs rendered frames and JPEG-encodes each one, then keeps
    only the count and the bytes."""

    data_only = False
    takes_events = False

    def __init__(self, jpeg_quality: int = 92) -> None:
        self.params, self.frames, self.bytes = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality], 0, 0

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        ok, buf = cv2.imencode(".jpg", annotated, self.params)
        if not ok:
            raise OutputError("JPEG encoding failed")
        self.frames, self.bytes = self.frames + 1, self.bytes + len(buf)

    def close(self) -> None:
        pass
