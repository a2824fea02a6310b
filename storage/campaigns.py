"""Queries on campaigns, their movements, phases, milestones and deadlines."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    Campaign,
    Deadline,
    DeadlineKind,
    Milestone,
    Movement,
    Phase,
    Unit,
)


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    """Return the calendar day `moment` falls on where the campaign runs."""
    return moment.astimezone(zone).date()


def is_past(due_on: date, now: datetime, zone: ZoneInfo) -> bool:
    """Tell whether a deadline is over: due on a day means until 23:59:59 of it, local time."""
    return local_day(now, zone) > due_on


async def for_unit(session: AsyncSession, unit: Unit, today: date) -> Campaign | None:
    """Return the campaign a unit takes part in: the running one, else the latest started."""
    root_ids = [int(part) for part in unit.path.strip("/").split("/")]
    candidates = (
        await session.scalars(
            select(Campaign)
            .where(Campaign.root_unit_id.in_(root_ids))
            .order_by(Campaign.starts_on.desc())
        )
    ).all()
    running = [c for c in candidates if c.starts_on <= today <= c.ends_on]
    if running:
        return running[0]
    started = [c for c in candidates if c.starts_on <= today]
    return started[0] if started else (candidates[-1] if candidates else None)


async def by_code(session: AsyncSession, code: str) -> Campaign | None:
    return await session.scalar(select(Campaign).where(Campaign.code == code))


async def movements(session: AsyncSession, campaign_id: int) -> Sequence[Movement]:
    """Return the campaign's active movements in the file's order."""
    statement = (
        select(Movement)
        .where(Movement.campaign_id == campaign_id, Movement.active.is_(True))
        .order_by(Movement.position, Movement.id)
    )
    return (await session.scalars(statement)).all()


async def phases(session: AsyncSession, campaign_id: int) -> Sequence[Phase]:
    statement = (
        select(Phase)
        .where(Phase.campaign_id == campaign_id, Phase.active.is_(True))
        .order_by(Phase.starts_on)
    )
    return (await session.scalars(statement)).all()


def phase_on(all_phases: Sequence[Phase], today: date) -> Phase | None:
    """Return the phase running on `today`, if any."""
    return next((p for p in all_phases if p.starts_on <= today <= p.ends_on), None)


async def milestones_from(
    session: AsyncSession, campaign_id: int, today: date, limit: int = 5
) -> Sequence[Milestone]:
    """Return the next active milestones from `today` on."""
    statement = (
        select(Milestone)
        .where(
            Milestone.campaign_id == campaign_id,
            Milestone.active.is_(True),
            Milestone.falls_on >= today,
        )
        .order_by(Milestone.falls_on, Milestone.id)
        .limit(limit)
    )
    return (await session.scalars(statement)).all()


async def deadlines_from(
    session: AsyncSession, campaign_id: int, today: date, limit: int = 5
) -> Sequence[Deadline]:
    statement = (
        select(Deadline)
        .where(
            Deadline.campaign_id == campaign_id,
            Deadline.active.is_(True),
            Deadline.due_on >= today,
        )
        .order_by(Deadline.due_on, Deadline.id)
        .limit(limit)
    )
    return (await session.scalars(statement)).all()


async def deadline_of(
    session: AsyncSession, campaign_id: int, kind: DeadlineKind
) -> Deadline | None:
    """Return the earliest active deadline of a kind (registration has one per campaign)."""
    statement = (
        select(Deadline)
        .where(
            Deadline.campaign_id == campaign_id,
            Deadline.kind == kind,
            Deadline.active.is_(True),
        )
        .order_by(Deadline.due_on)
        .limit(1)
    )
    return await session.scalar(statement)
