"""Clocks: the one source of the current time for handlers, storage and jobs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    """Tell the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class MovableClock(Clock, Protocol):
    """A clock that can be moved forward: the tests' and the demo's."""

    def advance(self, delta: timedelta) -> None: ...


class SystemClock:
    """Read the machine's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """Stand still at a set time until moved; for tests."""

    def __init__(self, start: datetime) -> None:
        self._now = _require_aware(start)

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = _require_aware(moment)

    def advance(self, delta: timedelta) -> None:
        self._now += delta


class ShiftedClock:
    """Run at real speed from a chosen starting moment; for the demo."""

    def __init__(self, start: datetime) -> None:
        self._start = _require_aware(start)
        self._origin = time.monotonic()
        self._offset = timedelta()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._origin) + self._offset

    def advance(self, delta: timedelta) -> None:
        self._offset += delta


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A nightly window, in local time, in which the bot pushes nothing."""

    start: time_of_day
    end: time_of_day
    zone: ZoneInfo

    @classmethod
    def parse(cls, text: str, zone: ZoneInfo) -> QuietHours | None:
        """Read "21:00-07:00"; an empty text means no quiet hours."""
        text = text.strip()
        if not text:
            return None
        start, sep, end = text.partition("-")
        if not sep:
            raise ValueError("expected HH:MM-HH:MM")
        return cls(
            time_of_day.fromisoformat(start.strip()), time_of_day.fromisoformat(end.strip()), zone
        )

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(self.zone).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # the window spans midnight

    def resumes_at(self, moment: datetime) -> datetime:
        """Return when pushing may resume: `moment` itself when it is outside the window."""
        if not self.contains(moment):
            return moment
        local = moment.astimezone(self.zone)
        resume = datetime.combine(local.date(), self.end, tzinfo=self.zone)
        if resume <= local:
            resume = datetime.combine(local.date() + timedelta(days=1), self.end, tzinfo=self.zone)
        return resume.astimezone(UTC)


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("clock times must be timezone-aware")
    return moment.astimezone(UTC)
