"""Shared names for inputs and outputs: file suffixes, live-source specs, credential scrubbing, exit codes.

A leaf module: it imports nothing from maskwatch, so every stage and command may use it.
"""

from __future__ import annotations

import re
import signal

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".jfif", ".jp2", ".avif")
"""Names taken for images without a look inside (files with other names are told by their content)."""
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def scrub_url(text: object) -> str:
    """Replace ``user:password@`` in any URL inside ``text`` with ``***@``."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", str(text))


def is_live_spec(spec: str) -> bool:
    """True for a camera index (``0``) or a stream URL (``rtsp://…``, ``http://…``): frames on their own clock."""
    spec = str(spec).strip()
    return (spec.isascii() and spec.isdigit()) or "://" in spec
