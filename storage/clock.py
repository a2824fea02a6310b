"""Clocks: the one source of the current time for handlers, storage and jobs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


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


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("clock times must be timezone-aware")
    return moment.astimezone(UTC)
