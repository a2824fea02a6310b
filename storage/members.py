"""Queries on members."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import accounts
from storage.models import Member, MemberStatus, Role, Unit
from storage.text import clean_line, fold
from storage.units import in_subtree


def new_member(
    *,
    full_name: str,
    unit: Unit,
    role: Role,
    status: MemberStatus,
    now: datetime,
    consent_version: str | None,
) -> Member:
    """Build a member with a normalised name; the caller adds it to the session."""
    name = clean_line(full_name)
    return Member(
        full_name=name,
        name_folded=fold(name),
        unit_id=unit.id,
        role=role,
        status=status,
        consent_at=now if consent_version else None,
        consent_version=consent_version,
        created_at=now,
    )


async def get(session: AsyncSession, member_id: int) -> Member | None:
    return await session.get(Member, member_id)


async def get_locked(session: AsyncSession, member_id: int) -> Member | None:
    """Return a member with their row locked until the transaction ends (read afresh)."""
    return await session.get(Member, member_id, with_for_update=True, populate_existing=True)


async def officers_of(session: AsyncSession, unit_id: int) -> Sequence[Member]:
    """Return the active officers of exactly this unit."""
    statement = select(Member).where(
        Member.unit_id == unit_id,
        Member.role.in_((Role.OFFICER, Role.ADMIN)),
        Member.status == MemberStatus.ACTIVE,
    )
    return (await session.scalars(statement.order_by(Member.id))).all()


async def nearest_officers(session: AsyncSession, unit: Unit) -> Sequence[Member]:
    """Return the officers of the unit, or of the closest unit above it that has some."""
    levels = await officers_by_nearness(session, unit)
    return levels[0] if levels else []


async def officers_by_nearness(session: AsyncSession, unit: Unit) -> list[list[Member]]:
    """Return the active officers of the unit and of each unit above it, the nearest first."""
    ids = [int(part) for part in unit.path.strip("/").split("/")]
    statement = (
        select(Member, Unit.depth)
        .join(Unit, Unit.id == Member.unit_id)
        .where(
            Member.unit_id.in_(ids),
            Member.role.in_((Role.OFFICER, Role.ADMIN)),
            Member.status == MemberStatus.ACTIVE,
        )
        .order_by(Unit.depth.desc(), Member.id)
    )
    levels: dict[int, list[Member]] = {}
    for member, depth in (await session.execute(statement)).all():
        levels.setdefault(depth, []).append(member)
    return list(levels.values())


async def nearest_reachable_officers(
    session: AsyncSession, unit: Unit, now: datetime
) -> list[Member]:
    """Return the nearest officers a message can reach now, going up past unreachable ones.

    An officer who blocked the bot, or is outside Zalo's push window, would never see it.
    """
    for level in await officers_by_nearness(session, unit):
        reachable = await accounts.pushable(session, [o.id for o in level], now)
        if reachable:
            return [officer for officer in level if officer.id in reachable]
    return []


async def pending_under(
    session: AsyncSession, root: Unit, *, limit: int
) -> Sequence[tuple[Member, Unit]]:
    """Return up to `limit` join requests waiting in `root` or below, the oldest first."""
    statement = (
        select(Member, Unit)
        .join(Unit, Unit.id == Member.unit_id)
        .where(in_subtree(root.path), Member.status == MemberStatus.PENDING)
        .order_by(Member.created_at, Member.id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in (await session.execute(statement)).all()]


async def officers_under(session: AsyncSession, root: Unit) -> Sequence[tuple[Member, Unit]]:
    """Return the active officers at or under `root`, with their units."""
    statement = (
        select(Member, Unit)
        .join(Unit, Unit.id == Member.unit_id)
        .where(
            in_subtree(root.path),
            Member.role.in_((Role.OFFICER, Role.ADMIN)),
            Member.status == MemberStatus.ACTIVE,
        )
        .order_by(Unit.path, Member.id)
    )
    return [(row[0], row[1]) for row in (await session.execute(statement)).all()]
