"""maskwatch: live face-mask monitoring from cameras, streams and video files."""

import os as _os

# OpenCV's and FFmpeg's own log lines can carry a stream URL with its credentials, and they bypass maskwatch's
# scrubbing: keep them quiet unless the user asks for them (set these variables to override).
_os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
_os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

__version__ = "0.1.0"
