"""Queries on commitments, pacts and congress works."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import Exists

from storage.members import nearest_officers
from storage.models import (
    Commitment,
    CommitmentKind,
    CommitmentStatus,
    CongressWork,
    Member,
    MemberStatus,
    Pact,
    PactStatus,
    Unit,
    UnitKind,
)
from storage.units import in_subtree


async def of_author(
    session: AsyncSession, campaign_id: int, member_id: int
) -> Sequence[Commitment]:
    """Return a member's commitments in a campaign, newest first, withdrawn ones included."""
    statement = (
        select(Commitment)
        .where(Commitment.campaign_id == campaign_id, Commitment.author_id == member_id)
        .order_by(Commitment.id.desc())
    )
    return (await session.scalars(statement)).all()


async def pacts_of_commitments(
    session: AsyncSession, commitment_ids: Sequence[int]
) -> dict[int, Pact]:
    """Return the latest pact of each commitment that has one."""
    if not commitment_ids:
        return {}
    rows = await session.scalars(
        select(Pact).where(Pact.commitment_id.in_(commitment_ids)).order_by(Pact.id)
    )
    return {pact.commitment_id: pact for pact in rows}


async def pacts_awaiting(
    session: AsyncSession, member_id: int, officer_unit: Unit | None, now: datetime
) -> Sequence[tuple[Pact, Commitment]]:
    """Return proposals waiting for this member's answer, personally or as an officer.

    An officer answers for the units whose prompts reach them: those under their own unit
    whose nearest officers they are.
    """
    conditions = [Pact.counterpart_member_id == member_id]
    if officer_unit is not None:
        under = select(Unit.id).where(in_subtree(officer_unit.path))
        conditions.append(Pact.counterpart_unit_id.in_(under))
    statement = (
        select(Pact, Commitment)
        .join(Commitment, Commitment.id == Pact.commitment_id)
        .where(Pact.status == PactStatus.PROPOSED, Pact.expires_at > now, or_(*conditions))
        .order_by(Pact.id)
    )
    awaiting = []
    for pact, commitment in (await session.execute(statement)).all():
        if pact.counterpart_unit_id is not None and pact.counterpart_member_id is None:
            unit = await session.get(Unit, pact.counterpart_unit_id)
            answerers = await nearest_officers(session, unit) if unit is not None else []
            if member_id not in {m.id for m in answerers}:
                continue
        awaiting.append((pact, commitment))
    return awaiting


async def pacts_answered(
    session: AsyncSession, member_id: int, unit_id: int | None, campaign_id: int
) -> Sequence[tuple[Pact, Commitment, Member]]:
    """Return pacts this member (or, for an officer, their unit) was asked and has answered."""
    conditions = [Pact.counterpart_member_id == member_id]
    if unit_id is not None:
        conditions.append(Pact.counterpart_unit_id == unit_id)
    statement = (
        select(Pact, Commitment, Member)
        .join(Commitment, Commitment.id == Pact.commitment_id)
        .join(Member, Member.id == Pact.proposer_id)
        .where(
            Commitment.campaign_id == campaign_id,
            Pact.status != PactStatus.PROPOSED,
            or_(*conditions),
        )
        .order_by(Pact.id.desc())
    )
    return [(row[0], row[1], row[2]) for row in (await session.execute(statement)).all()]


async def congress_work(
    session: AsyncSession, campaign_id: int, unit_id: int
) -> CongressWork | None:
    return await session.scalar(
        select(CongressWork).where(
            CongressWork.campaign_id == campaign_id, CongressWork.unit_id == unit_id
        )
    )


def _registered_individually(campaign_id: int) -> Exists:
    return exists().where(
        Commitment.author_id == Member.id,
        Commitment.campaign_id == campaign_id,
        Commitment.kind == CommitmentKind.INDIVIDUAL,
        Commitment.status == CommitmentStatus.REGISTERED,
    )


async def registered_among(
    session: AsyncSession, campaign_id: int, member_ids: Sequence[int]
) -> set[int]:
    """Return which of `member_ids` hold a registered individual commitment."""
    if not member_ids:
        return set()
    rows = await session.scalars(
        select(Commitment.author_id).where(
            Commitment.author_id.in_(list(member_ids)),
            Commitment.campaign_id == campaign_id,
            Commitment.kind == CommitmentKind.INDIVIDUAL,
            Commitment.status == CommitmentStatus.REGISTERED,
        )
    )
    return set(rows.all())


async def member_counts(session: AsyncSession, root: Unit, campaign_id: int) -> tuple[int, int]:
    """Return (active members, members with a registered commitment) at or under `root`."""
    base = (
        select(func.count(Member.id))
        .join(Unit, Unit.id == Member.unit_id)
        .where(in_subtree(root.path), Member.status == MemberStatus.ACTIVE)
    )
    total = await session.scalar(base)
    registered = await session.scalar(base.where(_registered_individually(campaign_id)))
    return int(total or 0), int(registered or 0)


async def grassroots_without_work(
    session: AsyncSession, root: Unit, campaign_id: int
) -> Sequence[Unit]:
    """Return the CĐCS at or under `root` that have registered no congress work."""
    has_work = exists().where(
        CongressWork.unit_id == Unit.id, CongressWork.campaign_id == campaign_id
    )
    statement = (
        select(Unit)
        .where(in_subtree(root.path), Unit.kind == UnitKind.GRASSROOTS, ~has_work)
        .order_by(Unit.name)
    )
    return (await session.scalars(statement)).all()


async def members_not_registered(
    session: AsyncSession, root: Unit, campaign_id: int, *, offset: int, limit: int
) -> tuple[Sequence[tuple[Member, Unit]], int]:
    """Return one page of active members under `root` without a commitment, and the total."""
    condition = and_(
        in_subtree(root.path),
        Member.status == MemberStatus.ACTIVE,
        ~_registered_individually(campaign_id),
    )
    total = await session.scalar(
        select(func.count(Member.id)).join(Unit, Unit.id == Member.unit_id).where(condition)
    )
    rows = await session.execute(
        select(Member, Unit)
        .join(Unit, Unit.id == Member.unit_id)
        .where(condition)
        .order_by(Member.name_folded, Member.id)
        .offset(offset)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in rows.all()], int(total or 0)


async def find_members(
    session: AsyncSession, within: Unit, query_folded: str, *, exclude_id: int, limit: int = 8
) -> Sequence[tuple[Member, Unit]]:
    """Find active members under `within` whose name contains every word of the query."""
    words = query_folded.split()
    if not words:
        return []
    statement = (
        select(Member, Unit)
        .join(Unit, Unit.id == Member.unit_id)
        .where(
            in_subtree(within.path),
            Member.status == MemberStatus.ACTIVE,
            Member.id != exclude_id,
            *(Member.name_folded.contains(word, autoescape=True) for word in words),
        )
        .order_by(Member.name_folded)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in (await session.execute(statement)).all()]
