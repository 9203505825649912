"""Counting lines: a tracked person whose face centre crosses a line is counted in or out, once per crossing.

A line runs from its first point to its second, in fractions of the frame (x to the right, y down, as the image is
shown). Its *left* side is the one on your left hand when you walk along it from the first point to the second,
looking at the picture: for a line from (0, 0.5) to (1, 0.5) (left to right across the middle), left is the top
half; for one from (0.5, 0) to (0.5, 1) (top to bottom), left is the right half. ``in_side`` names the inside:
crossing to it counts ``in``, crossing away from it ``out``.

Jitter on the line counts once: a face centre is on a side only when it is more than ``band`` face heights away
from the line; in between, the person keeps the side they were on. A crossing counts when the person's side
changes and their path (from the last place they were on the old side to the first on the new) passes through the
line between its two ends; passing beside an end changes the side without counting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from maskwatch.monitor.alerts import TrackLike, track_event, utc_now
from maskwatch.monitor.base import LineTally
from maskwatch.types import CLASS_NAMES, UNDECIDED, UNDECIDED_KEY, Event

Side = Literal["left", "right"]
Point = tuple[float, float]


@dataclass(frozen=True)
class CountingLine:
    """One counting line: ``start`` -> ``end`` in fractions of the frame, its inside, and its dead band in face
    heights."""

    name: str
    start: Point
    end: Point
    in_side: Side = "left"
    band: float = 0.3

    def signed_distance(self, xy: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
        """Pixel distance of points ``xy`` (N, 2, pixels) from the line: negative on its left, positive on its right."""
        a, d = self._pixels(size_wh)
        rel = np.asarray(xy, np.float64).reshape(-1, 2) - a
        return (d[0] * rel[:, 1] - d[1] * rel[:, 0]) / np.hypot(*d)

    def crossed_between(self, p: np.ndarray, q: np.ndarray, size_wh: tuple[int, int], slack_px: float = 0.0) -> bool:
        """Whether the straight path ``p`` -> ``q`` (pixels, on opposite sides) meets the line between its ends
        (``slack_px`` beyond either end still counts)."""
        a, d = self._pixels(size_wh)
        dp, dq = self.signed_distance(np.stack([p, q]), size_wh)
        if dp * dq >= 0:
            return False
        meet = p + (q - p) * (dp / (dp - dq))
        length = float(np.hypot(*d))
        along = float(np.dot(meet - a, d)) / length
        return -slack_px <= along <= length + slack_px

    def _pixels(self, size_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        scale = np.array(size_wh, np.float64)
        a = np.array(self.start, np.float64) * scale
        return a, np.array(self.end, np.float64) * scale - a


class LineCounter:
    """Counts crossings of a source's lines by its tracked people and makes their ``cross`` events."""

    def __init__(self, lines: Sequence[CountingLine], *, source: str, clock: Callable[[], str] = utc_now) -> None:
        self.lines = tuple(lines)
        self.source = source
        self.clock = clock
        self._sides: dict[tuple[int, int], tuple[Side, np.ndarray]] = {}  # (line, track) -> side, last place there
        self._counts: Counter[tuple[str, str, str]] = Counter()  # (line, direction, label) -> crossings

    def __bool__(self) -> bool:
        return bool(self.lines)

    def step(self, frame_index: int, ts: float, tracks: Sequence[TrackLike], size_wh: tuple[int, int]) -> list[Event]:
        """The ``cross`` events of one frame: ``tracks`` are the people visible on it (at their boxes)."""
        if not tracks or not self.lines:
            return []
        boxes = np.array([t.xyxy for t in tracks], np.float64).reshape(-1, 4)
        centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
        heights = boxes[:, 3] - boxes[:, 1]
        events = []
        for li, line in enumerate(self.lines):
            distances = line.signed_distance(centres, size_wh)
            for track, centre, dist, height in zip(tracks, centres, distances, heights, strict=True):
                band = max(line.band * float(height), 1.0)
                if abs(dist) <= band:
                    continue  # on the line: keeps the side it was on
                side: Side = "left" if dist < 0 else "right"
                key = (li, int(track.track_id))
                before = self._sides.get(key)
                self._sides[key] = (side, centre)
                if before is None or before[0] == side or not line.crossed_between(before[1], centre, size_wh, band):
                    continue
                direction: Literal["in", "out"] = "in" if side == line.in_side else "out"
                label = UNDECIDED_KEY if track.label == UNDECIDED else CLASS_NAMES[int(track.label)]
                self._counts[(line.name, direction, label)] += 1
                event = track_event(
                    "cross", self.source, self.clock(), frame_index, ts, track, line=line.name, direction=direction
                )
                events.append(event)
        return events

    def forget(self, track_ids: Iterable[int]) -> None:
        """Drop what is kept about people who left for good."""
        gone = set(track_ids)
        if not gone:
            return
        self._sides = {key: value for key, value in self._sides.items() if key[1] not in gone}

    def tallies(self) -> tuple[LineTally, ...]:
        """Crossings in and out of each line, in the lines' order."""
        return tuple(
            LineTally(
                name=line.name,
                entered=sum(n for (name, way, _), n in self._counts.items() if name == line.name and way == "in"),
                exited=sum(n for (name, way, _), n in self._counts.items() if name == line.name and way == "out"),
            )
            for line in self.lines
        )

    def by_label(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{line: {"in": {label: n}, "out": {label: n}}}`` with every line and direction present."""
        table: dict[str, dict[str, dict[str, int]]] = {line.name: {"in": {}, "out": {}} for line in self.lines}
        for (name, way, label), n in sorted(self._counts.items()):
            table.setdefault(name, {"in": {}, "out": {}})[way][label] = n
        return table
