"""When a live run writes its daily and weekly reports: every day at ``report_at`` (local time), the weekly one too
on ``report_weekday``. A daily report covers the 24 hours up to its time, a weekly one the 7 days; so consecutive
reports neither overlap nor leave a gap. Times the run was not running are not caught up: after a pause, only the
latest due report is written. The clock is a parameter, so a test crosses midnight without waiting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class ReportJob:
    """One report to write: ``kind`` daily or weekly, over ``[start, end)`` (UTC seconds), named by ``day``."""

    kind: str
    start: float
    end: float
    day: date

    @property
    def stem(self) -> str:
        return f"{self.kind}-{self.day.isoformat()}"


class ReportSchedule:
    """The due times of the daily and weekly reports in ``tz`` (None: this machine's local time)."""

    def __init__(self, at: str, weekday: str, *, now: float, tz: tzinfo | None = None) -> None:
        self.at = time.fromisoformat(at)
        self.weekday = WEEKDAYS.index(weekday)
        self.tz = tz
        today = self._day(now)
        first = self._at_on(today)
        self.next = first if first > now else self._at_on(today + timedelta(days=1))

    def _day(self, ts: float) -> date:
        return (datetime.fromtimestamp(ts, self.tz) if self.tz is not None else datetime.fromtimestamp(ts)).date()

    def _at_on(self, day: date) -> float:
        """``report_at`` on ``day`` in the zone, as UTC seconds (a naive local time follows daylight saving)."""
        return datetime.combine(day, self.at, tzinfo=self.tz).timestamp()

    def due(self, now: float) -> list[ReportJob]:
        """The reports due at ``now`` (none, the daily one, or daily and weekly), once each."""
        if now < self.next:
            return []
        fire = self.next
        while (later := self._at_on(self._day(fire) + timedelta(days=1))) <= now:
            fire = later  # the run was paused or the clock jumped: only the latest one
        day = self._day(fire)
        self.next = self._at_on(day + timedelta(days=1))
        jobs = [ReportJob("daily", self._at_on(day - timedelta(days=1)), fire, day)]
        if day.weekday() == self.weekday:
            jobs.append(ReportJob("weekly", self._at_on(day - timedelta(days=7)), fire, day))
        return jobs
