"""The capture stage's door: what every frame source provides, and what its ``read`` returns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Generic, NamedTuple, Protocol, TypeVar, overload

import numpy as np

T = TypeVar("T")


class RawFrame(NamedTuple):
    """One image as a source reads it, with the name of what it came from (the video, stream or image file).

    The producer numbers and timestamps it into a :class:`~maskwatch.types.Frame`; numbering there, not in each
    source, keeps it continuous across a reconnect or a looped file.
    """

    image: np.ndarray
    """BGR uint8."""
    name: str
    timestamp_s: float | None = None
    """Presentation time in the file (the container's timestamp; variable frame rate videos need it), or None:
    then the producer uses frame index / fps for files and the wall clock for live sources."""


class Source(Protocol):
    """A frame source. ``read`` returns the next :class:`RawFrame`, or None.

    ``is_live``: frames arrive on their own clock, so a slow consumer drops the oldest instead of waiting.
    ``finite``: None from ``read`` means the end; otherwise it is a stall (waited out up to a timeout).

    The attributes with a value here are what a source has unless it says otherwise: a class that subclasses
    ``Source`` gets them, so the runner, the producer and the status views read them without probing.
    """

    name: str
    is_live: bool
    finite: bool
    fps: float
    frame_count: int | None
    first_index: int = 0
    """Index of the first frame read (a chunk of a long video starts past 0)."""
    reconnects: bool = False
    """The source waits out stalls itself (reopening the device), so a silence is not the end of the run."""
    outages: int = 0
    """Times the source was lost (and reopened)."""
    truncated: bool = False
    """The input ended before the frame count its header announces (a truncated or damaged file); known at its end."""
    frames_lost: int = 0
    """Frames skipped because they could not be decoded (a damaged stretch of a file)."""
    skipped: Sequence[Path] = ()
    """Inputs that could not be read and were left out (unreadable images)."""
    paths: Sequence[Path] = ()
    """The files this source reads (none for cameras and streams)."""

    @property
    def connected(self) -> bool:
        """Whether frames can arrive now (a reconnecting source is not, while it is down)."""
        return True

    @property
    def downtime_s(self) -> float:
        """Seconds spent disconnected so far."""
        return 0.0

    def read(self) -> RawFrame | None: ...

    def close(self) -> None: ...


class Forwarded(Generic[T]):
    """A :class:`Source` attribute of a source that wraps another: read from, and written to, the wrapped
    source (the attribute named ``via``), so the wrapper never holds a stale copy."""

    def __init__(self, via: str = "inner") -> None:
        self.via = via
        self.attr = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Forwarded[T]: ...

    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> T: ...

    def __get__(self, obj: object | None, objtype: type | None = None) -> Forwarded[T] | T:
        if obj is None:
            return self
        return getattr(getattr(obj, self.via), self.attr)

    def __set__(self, obj: object, value: T) -> None:
        setattr(getattr(obj, self.via), self.attr, value)
