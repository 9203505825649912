"""Config sections for a shop door: zones, counting lines, the alarm, history, event clips.

Coordinates are normalised to the frame (0..1, x to the right, y down), so one config fits any resolution.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from maskwatch.config.base import Section, checked_name

Point = tuple[float, float]


def _in_unit_square(points: list[Point], what: str) -> None:
    for x, y in points:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"{what} point ({x:g}, {y:g}) is outside the frame: coordinates are fractions 0..1")


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def segments_cross(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """True when segment p1-p2 properly crosses q1-q2 (touching at an end point does not count)."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    return d1 * d2 < 0 and d3 * d4 < 0


def polygon_problem(points: list[Point]) -> str | None:
    """Why ``points`` is not a usable polygon (fewer than 3 points, no area, edges crossing), or None."""
    if len(points) < 3:
        return f"a polygon needs at least 3 points, got {len(points)}"
    area = sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(points, points[1:] + points[:1], strict=True)) / 2
    if abs(area) < 1e-6:
        return "the polygon has no area (its points are on one line)"
    edges = list(zip(points, points[1:] + points[:1], strict=True))
    for i, (a, b) in enumerate(edges):
        for j in range(i + 2, len(edges)):
            if i == 0 and j == len(edges) - 1:
                continue  # the first and last edges share a point
            if segments_cross(a, b, *edges[j]):
                return f"the polygon crosses itself (edge {i + 1} crosses edge {j + 1})"
    return None


def parse_points(text: str) -> list[Point]:
    """``"x1,y1 x2,y2 ..."`` (the ``--zone`` syntax) as points; ValueError naming the bad part."""
    points = []
    for part in text.split():
        xy = part.split(",")
        try:
            if len(xy) != 2:
                raise ValueError
            points.append((float(xy[0]), float(xy[1])))
        except ValueError:
            raise ValueError(f"zone point {part!r} is not x,y (two numbers 0..1 separated by a comma)") from None
    return points


class ZoneConfig(Section):
    """One zone: faces whose centre lies in a ``watch`` zone and in no ``ignore`` zone are counted and alerted."""

    name: str = Field("zone", max_length=64, description="Zone name, shown on the overlay and in events.")
    polygon: list[Point] = Field(..., description="Corners [[x, y], ...] as fractions of the frame (0..1), 3 or more.")
    mode: Literal["watch", "ignore"] = Field("watch", description="watch: count and alert here; ignore: never.")

    @field_validator("name")
    @classmethod
    def _zone_name(cls, value: str) -> str:
        return checked_name(value, "zone")

    @model_validator(mode="after")
    def _valid_polygon(self) -> ZoneConfig:
        _in_unit_square(self.polygon, f"zone '{self.name}'")
        problem = polygon_problem(self.polygon)
        if problem is not None:
            raise ValueError(f"zone '{self.name}': {problem}")
        return self


class LineConfig(Section):
    """A counting line: a person whose face centre crosses it is counted in or out, with the label they had."""

    name: str = Field("line", max_length=64, description="Line name, shown on the overlay and in events.")
    points: tuple[Point, Point] = Field(..., description="Its two ends [[x, y], [x, y]] as fractions of the frame.")
    in_side: Literal["left", "right"] = Field(
        "left",
        alias="in",
        description="Which side is inside, looking from the first point to the second: crossing to it counts in.",
    )
    band: float = Field(
        0.3,
        ge=0.0,
        le=5.0,
        description="Dead band each side of the line, in face heights: a face centre must get this far past the line "
        "to change side (jitter on the line counts once).",
    )

    @field_validator("name")
    @classmethod
    def _line_name(cls, value: str) -> str:
        return checked_name(value, "line")

    @model_validator(mode="after")
    def _valid_line(self) -> LineConfig:
        _in_unit_square(list(self.points), f"line '{self.name}'")
        (x1, y1), (x2, y2) = self.points
        if abs(x1 - x2) + abs(y1 - y2) < 1e-3:
            raise ValueError(f"line '{self.name}': its two points are the same")
        return self


class AlarmConfig(Section):
    """What happens at the door on an alert: a sound, a switched output (a relay, a light), a command."""

    sound: str | None = Field(None, description="WAV file played on each alert by the system's player; null: none.")
    player: str | None = Field(
        None, description="Command that plays the sound (the file is appended); null: aplay, paplay or ffplay."
    )
    gpio_pin: str | None = Field(
        None, description="Output switched on while an alert is fresh (gpiozero pin name: 17, GPIO17, BOARD11); null."
    )
    gpio_active_high: bool = Field(True, description="The output is on when the pin is high (false: low).")
    hold_s: float = Field(5.0, ge=0.0, le=3600.0, description="Seconds the output stays on after the last alert.")
    command: str | None = Field(
        None, description="Command run on each alert (shell words, no shell), the event as JSON on stdin; null: none."
    )
    command_timeout_s: float = Field(10.0, gt=0.0, le=3600.0, description="The command is killed after this long.")


_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class HistoryConfig(Section):
    """Stored history (SQLite): every person record and event, kept ``retention_days``; daily and weekly reports."""

    path: str | None = Field(None, description="SQLite history file (also `--history PATH`); null: no history.")
    retention_days: int = Field(30, ge=1, le=3650, description="Records older than this are deleted.")
    report_at: str | None = Field(
        "23:55", description="Local time (HH:MM) a live run writes the daily report (weekly on `report_weekday`); null."
    )
    report_weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = Field(
        "sun", description="Day the weekly report is written (at `report_at`)."
    )
    reports_dir: str | None = Field(None, description="Folder of the daily / weekly reports; null: next to the file.")

    @field_validator("report_at")
    @classmethod
    def _hh_mm(cls, value: str | None) -> str | None:
        if value is not None and not _TIME.match(value):
            raise ValueError(f"report_at must be HH:MM (24 h), got {value!r}")
        return value


class ClipsConfig(Section):
    """``--clips DIR``: an mp4 around each alert, from ``pre_s`` before to ``post_s`` after."""

    dir: str | None = Field(None, description="Folder of the alert clips (also `--clips DIR`); null: no clips.")
    pre_s: float = Field(5.0, ge=0.0, le=120.0, description="Seconds of video kept before each alert.")
    post_s: float = Field(10.0, ge=0.0, le=600.0, description="Seconds of video written after each alert.")
    max_age_days: float = Field(30.0, gt=0.0, le=3650.0, description="Clips older than this are deleted.")
    max_total_mb: float = Field(2000.0, gt=0.0, le=10**7, description="Oldest clips are deleted beyond this total.")
    raw_buffer_mb: float = Field(
        80.0,
        ge=0.0,
        le=10**5,
        description="Memory (per source) for the frames kept before an alert uncompressed; frames beyond it are "
        "kept as JPEG (costs about 1 ms a 480x360 frame). 5 s of 480x360 at 25 fps take 65 MB; 0: all JPEG.",
    )
