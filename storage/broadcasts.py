"""Broadcasts: who an audience reaches, queueing it in one statement, and delivery reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage.accounts import PUSH_WINDOWS
from storage.models import (
    Broadcast,
    BroadcastStatus,
    ChannelAccount,
    Commitment,
    CommitmentKind,
    CommitmentStatus,
    Initiative,
    InitiativeStatus,
    Member,
    MemberStatus,
    OutboxMessage,
    OutboxStatus,
    Role,
    Unit,
)
from storage.outbox import OUTSIDE_WINDOW
from storage.units import in_subtree

AUDIENCE_KINDS = ("everyone", "units", "sector", "officers", "no_commitment", "no_initiative")


@dataclass(frozen=True, slots=True)
class Audience:
    """Who a broadcast is for, always within the author's unit and below."""

    kind: str
    unit_paths: tuple[str, ...] = ()
    sector: str | None = None
    campaign_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "unit_paths": list(self.unit_paths),
            "sector": self.sector,
            "campaign_id": self.campaign_id,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Audience:
        return cls(
            kind=str(raw["kind"]),
            unit_paths=tuple(raw.get("unit_paths") or ()),
            sector=raw.get("sector"),
            campaign_id=raw.get("campaign_id"),
        )


def _conditions(scope: Unit, audience: Audience) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        in_subtree(scope.path),
        Member.status == MemberStatus.ACTIVE,
    ]
    if audience.kind == "units":
        # Every chosen unit must itself lie in the scope; the caller checked, this enforces.
        chosen = [in_subtree(path) for path in audience.unit_paths if path.startswith(scope.path)]
        conditions.append(or_(*chosen) if chosen else literal(False))
    elif audience.kind == "sector":
        conditions.append(Unit.sector == audience.sector)
    elif audience.kind == "officers":
        conditions.append(Member.role.in_((Role.OFFICER, Role.ADMIN)))
    elif audience.kind == "no_commitment":
        conditions.append(
            ~exists().where(
                Commitment.author_id == Member.id,
                Commitment.campaign_id == audience.campaign_id,
                Commitment.kind == CommitmentKind.INDIVIDUAL,
                Commitment.status == CommitmentStatus.REGISTERED,
            )
        )
    elif audience.kind == "no_initiative":
        conditions.append(
            ~exists().where(
                Initiative.author_id == Member.id,
                Initiative.campaign_id == audience.campaign_id,
                Initiative.status != InitiativeStatus.DRAFT,
            )
        )
    elif audience.kind != "everyone":
        raise ValueError(f"unknown audience {audience.kind!r}")
    return conditions


def recipients(
    scope: Unit,
    audience: Audience,
    *,
    exclude_member_id: int | None,
    now: datetime | None = None,
) -> Select[Any]:
    """Select (account id, channel, reachable) of each recipient's preferred account.

    Given `now`, an account outside its channel's push window (accounts.PUSH_WINDOWS) comes
    after the member's other reachable accounts.
    """
    # The audience is narrowed first and only its members' accounts are ranked: ranking every
    # account in the database, then joining, cost a third more on a million members and far
    # more for a small audience in a big database.
    ranked = (
        select(
            ChannelAccount.id.label("account_id"),
            ChannelAccount.channel.label("channel"),
            ChannelAccount.reachable.label("reachable"),
            func.row_number()
            .over(
                partition_by=ChannelAccount.member_id,
                order_by=(
                    ChannelAccount.reachable.desc(),
                    *_pushable_first(now),
                    ChannelAccount.preferred.desc(),  # the member's choice (/lienket)
                    ChannelAccount.last_seen_at.desc(),
                    ChannelAccount.id,
                ),
            )
            .label("rank"),
        )
        .join(Member, Member.id == ChannelAccount.member_id)
        .join(Unit, Unit.id == Member.unit_id)
        .where(*_conditions(scope, audience))
    )
    if exclude_member_id is not None:
        ranked = ranked.where(Member.id != exclude_member_id)
    preferred = ranked.subquery()
    return select(preferred.c.account_id, preferred.c.channel, preferred.c.reachable).where(
        preferred.c.rank == 1
    )


def _pushable_first(now: datetime | None) -> list[ColumnElement[Any]]:
    """Order accounts a push may reach now before those outside their channel's window."""
    if now is None or not PUSH_WINDOWS:
        return []
    outside = or_(
        *(
            and_(ChannelAccount.channel == channel, ChannelAccount.last_seen_at < now - window)
            for channel, window in PUSH_WINDOWS.items()
        )
    )
    return [case((outside, literal(1)), else_=literal(0))]


async def count(
    session: AsyncSession,
    scope: Unit,
    audience: Audience,
    *,
    exclude_member_id: int | None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Count recipients by channel; those who cannot be reached are counted apart.

    Given `now`, each member is counted on the account queue() would pick at that moment.
    """
    inner = recipients(scope, audience, exclude_member_id=exclude_member_id, now=now).subquery()
    rows = await session.execute(
        select(inner.c.channel, inner.c.reachable, func.count()).group_by(
            inner.c.channel, inner.c.reachable
        )
    )
    counts: dict[str, int] = {}
    for channel, reachable, n in rows.all():
        key = channel if reachable else "unreachable"
        counts[key] = counts.get(key, 0) + int(n)
    return counts


async def queue(session: AsyncSession, broadcast: Broadcast, scope: Unit, now: datetime) -> int:
    """Write one outbox row per recipient in one statement; return how many will be tried."""
    audience = Audience.from_dict(broadcast.audience)
    source = recipients(scope, audience, exclude_member_id=broadcast.author_id, now=now).subquery()
    # Accounts known to have blocked the bot are recorded as unreachable, not tried again.
    status = case(
        (source.c.reachable == true(), literal(OutboxStatus.PENDING.value)),
        else_=literal(OutboxStatus.UNREACHABLE.value),
    )
    result = await session.execute(
        insert(OutboxMessage).from_select(
            ["account_id", "channel", "broadcast_id", "status", "attempts", "created_at"],
            select(
                source.c.account_id,
                source.c.channel,
                literal(broadcast.id),
                status,
                literal(0),
                literal(now, type_=OutboxMessage.__table__.c.created_at.type),
            ),
        )
    )
    broadcast.status = BroadcastStatus.QUEUED
    broadcast.queued_at = now
    broadcast.recipients = int(getattr(result, "rowcount", 0) or 0)
    pending = await session.scalar(
        select(func.count()).where(
            OutboxMessage.broadcast_id == broadcast.id,
            OutboxMessage.status == OutboxStatus.PENDING,
        )
    )
    return int(pending or 0)


async def cancel(session: AsyncSession, broadcast: Broadcast, now: datetime) -> int:
    """Cancel a scheduled broadcast, or what is still unsent of a running one."""
    result = await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.broadcast_id == broadcast.id,
            OutboxMessage.status == OutboxStatus.PENDING,
        )
        .values(status=OutboxStatus.CANCELLED, claimed_by=None, claimed_until=None)
    )
    broadcast.status = BroadcastStatus.CANCELLED
    broadcast.finished_at = broadcast.finished_at or now
    return int(getattr(result, "rowcount", 0) or 0)


async def of_author(session: AsyncSession, author_id: int, limit: int = 10) -> Sequence[Broadcast]:
    statement = (
        select(Broadcast)
        .where(Broadcast.author_id == author_id)
        .order_by(Broadcast.id.desc())
        .limit(limit)
    )
    return (await session.scalars(statement)).all()


async def due(session: AsyncSession, now: datetime) -> Sequence[Broadcast]:
    """Return scheduled broadcasts whose time has come."""
    statement = (
        select(Broadcast)
        .where(Broadcast.status == BroadcastStatus.SCHEDULED, Broadcast.scheduled_for <= now)
        .order_by(Broadcast.scheduled_for)
        .with_for_update(skip_locked=True)
    )
    return (await session.scalars(statement)).all()


async def finished_unreported(session: AsyncSession) -> Sequence[Broadcast]:
    """Return queued broadcasts with nothing left to send whose author was not told yet."""
    still_pending = exists().where(
        OutboxMessage.broadcast_id == Broadcast.id,
        OutboxMessage.status == OutboxStatus.PENDING,
    )
    statement = (
        select(Broadcast)
        .where(
            and_(
                Broadcast.status == BroadcastStatus.QUEUED,
                Broadcast.finished_at.is_(None),
                ~still_pending,
            )
        )
        .with_for_update(skip_locked=True)
    )
    return (await session.scalars(statement)).all()


async def unreachable(
    session: AsyncSession, broadcast_id: int, *, offset: int = 0, limit: int = 20
) -> Sequence[tuple[str, str, str]]:
    """Return (member name, unit name, status) of those a broadcast did not reach."""
    rows = await session.execute(
        select(Member.full_name, Unit.name, OutboxMessage.status, OutboxMessage.last_error)
        .join(ChannelAccount, ChannelAccount.id == OutboxMessage.account_id)
        .join(Member, Member.id == ChannelAccount.member_id)
        .join(Unit, Unit.id == Member.unit_id)
        .where(
            OutboxMessage.broadcast_id == broadcast_id,
            OutboxMessage.status.in_((OutboxStatus.UNREACHABLE, OutboxStatus.FAILED)),
        )
        .order_by(Member.name_folded)
        .offset(offset)
        .limit(limit)
    )
    # Those a push could not reach in their channel's window are told apart.
    return [
        (name, unit, OUTSIDE_WINDOW if error == OUTSIDE_WINDOW else OutboxStatus(status).value)
        for name, unit, status, error in rows.all()
    ]


async def counts(session: AsyncSession, broadcast_id: int) -> dict[OutboxStatus, int]:
    """Count a broadcast's messages by what became of them."""
    rows = await session.execute(
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.broadcast_id == broadcast_id)
        .group_by(OutboxMessage.status)
    )
    found = {OutboxStatus(status): int(n) for status, n in rows.all()}
    return {status: found.get(status, 0) for status in OutboxStatus}
