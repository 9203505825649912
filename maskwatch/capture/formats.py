"""What a file is by its content, not its name, and names OpenCV can be given.

A photo saved as ``.jfif``, ``.jpeg.download`` or without an extension is still a JPEG: the first bytes say so.
OpenCV takes file names as UTF-8 and crashes on one that is not (a Latin-1 ``caf\\xe9.jpg`` from an old zip, which
Python holds with surrogate escapes), so such a file is handed to it under an ASCII alias.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import cv2

IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WebP", "JPEG 2000", "PNM", "AVIF", "HEIC")
"""Still-image formats recognised by their first bytes (HEIC is recognised to be named, not decoded)."""

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}


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


def sniff(path: str | Path) -> str | None:
    """The still-image format of the file at ``path`` from its first bytes (one of :data:`IMAGE_FORMATS`), or None
    (a video, something else, or unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    return image_format(head)


def image_format(head: bytes) -> str | None:
    """The image format that a file starting with ``head`` is in, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM") and len(head) >= 26:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xffO\xffQ"):
        return "JPEG 2000"
    if len(head) > 2 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return "PNM"
    if head[4:8] == b"ftyp":
        size = max(16, min(int.from_bytes(head[:4], "big"), len(head)))
        brands = {head[i : i + 4] for i in range(8, size - 3, 4)}
        if brands & {b"avif", b"avis"}:
            return "AVIF"
        if brands & _HEIF_BRANDS:
            return "HEIC"
    return None


def opencv_can_take(path: str | Path) -> bool:
    """Whether OpenCV can be given this file name (it must be valid UTF-8; others crash it)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class OpenCVName:
    """A name under which OpenCV can open ``path``: the path itself, or an ASCII symbolic link to it in a private
    temporary folder (removed by :meth:`close`) when the name is not valid UTF-8."""

    def __init__(self, path: str | Path) -> None:
        self._dir: str | None = None
        if opencv_can_take(path):
            self.name = str(path)
            return
        self._dir = tempfile.mkdtemp(prefix="maskwatch-")
        suffix = "".join(c for c in Path(path).suffix if c.isascii() and (c.isalnum() or c == "."))
        link = os.path.join(self._dir, "input" + suffix)
        os.symlink(os.path.abspath(path), link)
        self.name = link

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


_DURATION_TAG = re.compile(rb"DURATION.{1,12}?(\d{1,3}):(\d\d):(\d\d(?:\.\d+)?)", re.DOTALL)


def matroska_durations(path: str | Path, window: int = 1 << 16) -> list[float]:
    """The per-track ``DURATION`` tags (seconds) of a Matroska/WebM file, from its first and last ``window`` bytes
    (where ffmpeg and mkvmerge write them); empty for other files or where none is found.

    OpenCV counts a Matroska file's frames from the container's duration, which a longer audio track stretches;
    these tags tell the video's own length."""
    try:
        with open(path, "rb") as f:
            head = f.read(window)
            if not head.startswith(b"\x1a\x45\xdf\xa3"):
                return []
            f.seek(max(0, os.fstat(f.fileno()).st_size - window))
            tail = f.read(window)
    except OSError:
        return []
    found = _DURATION_TAG.findall(head) + _DURATION_TAG.findall(tail)
    return sorted({int(h) * 3600 + int(m) * 60 + float(sec) for h, m, sec in found})
