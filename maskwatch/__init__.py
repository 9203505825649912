"""maskwatch: live face-mask monitoring from cameras, streams and video files."""

__version__ = "0.1.0"
