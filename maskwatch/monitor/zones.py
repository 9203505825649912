"""Zones: which faces count. With a ``watch`` zone, only a face whose centre lies in a watch zone and in no ``ignore``
zone is counted and may alert; with only ignore zones, every face outside them counts; without zones, every face.

Polygons are in fractions of the frame (0..1, x to the right, y down), so one config fits any resolution. Faces
outside are still tracked (a person walking in keeps one id); the renderer draws them dimmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

ZoneMode = Literal["watch", "ignore"]


@dataclass(frozen=True)
class Zone:
    """One polygon: ``points`` (K, 2) corners in fractions of the frame; ``mode`` watch (count here) or ignore."""

    name: str
    points: np.ndarray
    mode: ZoneMode = "watch"

    def __post_init__(self) -> None:
        points = np.asarray(self.points, np.float64).reshape(-1, 2)
        if len(points) < 3:
            raise ValueError(f"zone '{self.name}' needs at least 3 points, got {len(points)}")
        object.__setattr__(self, "points", points)

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """Which of the points ``xy`` (N, 2, fractions of the frame) lie inside (even-odd rule), as (N,) bool."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        x, y = xy[:, 0:1], xy[:, 1:2]
        a, b = self.points, np.roll(self.points, -1, axis=0)  # every edge a -> b
        straddles = (a[:, 1] > y) != (b[:, 1] > y)  # (N, K): the edge spans the point's height
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
        return (np.count_nonzero(straddles & (x < x_cross), axis=1) % 2) == 1


def face_centres(xyxy: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """The centres of boxes (N, 4, pixels) as fractions of a ``size_wh`` frame, (N, 2)."""
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    w, h = size_wh
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / (2 * w), (boxes[:, 1] + boxes[:, 3]) / (2 * h)], axis=1)


class ZoneSet:
    """A source's zones and the counting rule over them (see the module's docstring)."""

    def __init__(self, zones: Sequence[Zone] = ()) -> None:
        self.zones = tuple(zones)
        self.watch = tuple(z for z in self.zones if z.mode == "watch")
        self.ignore = tuple(z for z in self.zones if z.mode == "ignore")

    def __bool__(self) -> bool:
        return bool(self.zones)

    def counted(self, xyxy: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
        """Which faces (boxes (N, 4) in pixels of a ``size_wh`` frame) count, by their centre, as (N,) bool."""
        centres = face_centres(xyxy, size_wh)
        inside = np.ones(len(centres), bool)
        if self.watch:
            inside = np.logical_or.reduce([z.contains(centres) for z in self.watch])
        for zone in self.ignore:
            inside &= ~zone.contains(centres)
        return inside
