"""Recognition: commendations (khen thưởng) and exemplar stories (gương người tốt việc tốt).

Queries only; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    ChannelAccount,
    Commendation,
    Member,
    Phase,
    Story,
    StoryStatus,
    Unit,
)
from storage.units import ancestors, in_subtree

PUBLISH_CHANNEL = "telegram"
# The external id of the account standing for a publish chat: never a person's Telegram id.
_PUBLISH_PREFIX = "publish:"


async def commendations_of_member(
    session: AsyncSession, campaign_id: int, member_id: int
) -> Sequence[tuple[Commendation, Phase | None]]:
    """Return a member's commendations in a campaign, newest first, with their phase."""
    rows = await session.execute(
        select(Commendation, Phase)
        .outerjoin(Phase, Phase.id == Commendation.phase_id)
        .where(Commendation.campaign_id == campaign_id, Commendation.member_id == member_id)
        .order_by(Commendation.created_at.desc(), Commendation.id.desc())
    )
    return [(row[0], row[1]) for row in rows.all()]


async def review_queue(
    session: AsyncSession, scope: Unit, campaign_id: int, *, reviewer_id: int
) -> Sequence[tuple[Story, Member, Unit]]:
    """Return the submitted stories of the subtree, oldest first; never the reviewer's own."""
    rows = await session.execute(
        select(Story, Member, Unit)
        .join(Member, Member.id == Story.author_id)
        .join(Unit, Unit.id == Story.unit_id)
        .where(
            in_subtree(scope.path),
            Story.campaign_id == campaign_id,
            Story.status == StoryStatus.SUBMITTED,
            Story.author_id != reviewer_id,
        )
        .order_by(Story.created_at, Story.id)
    )
    return [(row[0], row[1], row[2]) for row in rows.all()]


def _on_the_line_of(unit: Unit) -> ColumnElement[bool]:
    """Filter units in `unit`'s subtree or above it: the member's branch of the tree."""
    above = [int(part) for part in unit.path.strip("/").split("/")[:-1]]
    return or_(in_subtree(unit.path), Unit.id.in_(above)) if above else in_subtree(unit.path)


async def approved_in_branch(
    session: AsyncSession, unit: Unit, campaign_id: int, *, offset: int, limit: int
) -> tuple[Sequence[tuple[Story, Unit]], int]:
    """Return a page of approved stories of `unit`'s branch, newest first, and their count.

    The branch is the unit's subtree and the units above it, whose stories concern it too.
    """
    where = (
        _on_the_line_of(unit),
        Story.campaign_id == campaign_id,
        Story.status == StoryStatus.APPROVED,
    )
    total = await session.scalar(
        select(func.count(Story.id)).join(Unit, Unit.id == Story.unit_id).where(*where)
    )
    rows = await session.execute(
        select(Story, Unit)
        .join(Unit, Unit.id == Story.unit_id)
        .where(*where)
        .order_by(Story.reviewed_at.desc(), Story.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in rows.all()], int(total or 0)


def in_branch(story_unit: Unit, unit: Unit) -> bool:
    """Tell whether a story of `story_unit` belongs to `unit`'s branch (see approved_in_branch)."""
    return story_unit.path.startswith(unit.path) or unit.path.startswith(story_unit.path)


async def approved_between(
    session: AsyncSession, campaign_id: int, start: datetime, end: datetime
) -> Sequence[tuple[Story, Unit]]:
    """Return the stories of a campaign approved in [start, end), oldest first."""
    rows = await session.execute(
        select(Story, Unit)
        .join(Unit, Unit.id == Story.unit_id)
        .where(
            Story.campaign_id == campaign_id,
            Story.status == StoryStatus.APPROVED,
            Story.reviewed_at >= start,
            Story.reviewed_at < end,
        )
        .order_by(Story.reviewed_at, Story.id)
    )
    return [(row[0], row[1]) for row in rows.all()]


async def approval_times(
    session: AsyncSession, campaign_id: int, start: datetime, end: datetime
) -> Sequence[datetime]:
    """Return when the campaign's stories approved in [start, end) were approved."""
    rows = await session.scalars(
        select(Story.reviewed_at).where(
            Story.campaign_id == campaign_id,
            Story.status == StoryStatus.APPROVED,
            Story.reviewed_at >= start,
            Story.reviewed_at < end,
        )
    )
    return [moment for moment in rows.all() if moment is not None]


async def publish_chat_for(session: AsyncSession, unit: Unit) -> str | None:
    """Return the chat where `unit`'s stories are published: its own, else the nearest above."""
    if unit.publish_chat:
        return unit.publish_chat
    for above in await ancestors(session, unit):
        if above.publish_chat:
            return above.publish_chat
    return None


async def publish_account(session: AsyncSession, chat_id: str, now: datetime) -> ChannelAccount:
    """Return the account standing for a publish chat, created on first use.

    It belongs to no member, so no broadcast or reminder ever reaches it; the delivery engine
    sends what is queued to it like any other Telegram message.
    """
    external_id = f"{_PUBLISH_PREFIX}{chat_id}"
    statement = select(ChannelAccount).where(
        ChannelAccount.channel == PUBLISH_CHANNEL, ChannelAccount.external_id == external_id
    )
    found = await session.scalar(statement)
    if found is not None:
        return found
    account = ChannelAccount(
        channel=PUBLISH_CHANNEL,
        external_id=external_id,
        chat_id=chat_id,
        member_id=None,
        display_name=None,
        reachable=True,
        last_seen_at=now,
        created_at=now,
    )
    # A savepoint: if another process created it meanwhile, use theirs.
    try:
        async with session.begin_nested():
            session.add(account)
    except IntegrityError:
        existing = await session.scalar(statement)
        if existing is None:
            raise
        return existing
    return account
