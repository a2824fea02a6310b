"""The record of scheduled runs: which happened, which were skipped."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import RunStatus, ScheduleRun


async def recorded(session: AsyncSession, keys: Iterable[str]) -> set[str]:
    """Return which of `keys` have a record already."""
    wanted = list(keys)
    found: set[str] = set()
    # In slices: a campaign year has a few hundred runs, and IN lists have limits.
    for start in range(0, len(wanted), 500):
        rows = await session.scalars(
            select(ScheduleRun.key).where(ScheduleRun.key.in_(wanted[start : start + 500]))
        )
        found.update(rows.all())
    return found


async def claim(
    session: AsyncSession,
    *,
    key: str,
    kind: str,
    status: RunStatus,
    due_at: datetime,
    now: datetime,
    note: str = "",
) -> ScheduleRun | None:
    """Record a run in the caller's transaction; None when it is recorded already.

    The unique key decides: a second process inserting the same key waits for the first to
    commit and then fails here, so whatever the run queues is queued once.
    """
    run = ScheduleRun(
        key=key, kind=kind, status=status, due_at=due_at, ran_at=now, messages=0, note=note
    )
    try:
        async with session.begin_nested():
            session.add(run)
    except IntegrityError:
        return None
    return run


async def latest(session: AsyncSession, limit: int = 20) -> Sequence[ScheduleRun]:
    rows = await session.scalars(
        select(ScheduleRun).order_by(ScheduleRun.due_at.desc(), ScheduleRun.id.desc()).limit(limit)
    )
    return rows.all()
