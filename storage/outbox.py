"""The outbox: every message the bot pushes, claimed by a sender and recorded when done."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import accounts
from storage.models import Broadcast, ChannelAccount, OutboxMessage, OutboxStatus

# `last_error` of a message nobody could be sent: its account was outside its channel's push
# window (accounts.PUSH_WINDOWS) and the member had no other account a push could reach.
OUTSIDE_WINDOW = "outside_window"


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message claimed for sending, with all a sender needs."""

    id: int
    account_id: int
    chat_id: str
    payload: dict[str, Any]
    attempts: int
    parts_done: int = 0
    # When the account's person last wrote: channels with a push window need it.
    last_seen_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of one claimed message."""

    id: int
    account_id: int
    status: OutboxStatus | None  # None: keep it pending and try again after `retry_at`
    error: str | None = None
    retry_at: datetime | None = None
    parts_done: int = 0
    # The account is outside its channel's push window: move the message to another account
    # of the member that a push can reach, or record it unreachable (`status` is ignored).
    reroute: bool = False


def enqueue(
    session: AsyncSession, *, account_id: int, channel: str, payload: dict[str, Any], now: datetime
) -> None:
    """Queue one message to an account in the caller's transaction."""
    session.add(
        OutboxMessage(account_id=account_id, channel=channel, payload=payload, created_at=now)
    )


async def claim(
    session: AsyncSession,
    *,
    channel: str,
    worker: str,
    now: datetime,
    until: datetime,
    limit: int,
) -> list[Claimed]:
    """Claim up to `limit` due messages of a channel, oldest first, for `worker` until `until`.

    On PostgreSQL the rows are picked with FOR UPDATE SKIP LOCKED, so processes sharing the
    outbox never claim the same message; a claim whose process died lapses at `until`.
    """
    claimable = (
        OutboxMessage.status == OutboxStatus.PENDING,
        OutboxMessage.channel == channel,
        or_(OutboxMessage.not_before.is_(None), OutboxMessage.not_before <= now),
        or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
    )
    # Lock the due rows once, skipping those another process holds, then claim exactly
    # those: the UPDATE joins the locked set instead of re-running the selection (which,
    # waiting on a row another process had just claimed, would claim it a second time).
    due = (
        select(OutboxMessage.id)
        .where(*claimable)
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
        # Evaluated once: an inlined CTE could be re-run while the UPDATE waits for a row.
        .prefix_with("MATERIALIZED")
    )
    rows = (
        await session.execute(
            update(OutboxMessage)
            # The conditions again, in case a row changed between locking and claiming.
            .where(OutboxMessage.id == due.c.id, *claimable)
            .values(claimed_by=worker, claimed_until=until)
            .returning(
                OutboxMessage.id,
                OutboxMessage.account_id,
                OutboxMessage.broadcast_id,
                OutboxMessage.payload,
                OutboxMessage.attempts,
                OutboxMessage.parts_done,
            )
        )
    ).all()
    if not rows:
        return []
    chats = {
        account_id: (chat_id, last_seen_at)
        for account_id, chat_id, last_seen_at in (
            await session.execute(
                select(
                    ChannelAccount.id, ChannelAccount.chat_id, ChannelAccount.last_seen_at
                ).where(ChannelAccount.id.in_({row.account_id for row in rows}))
            )
        ).all()
    }
    broadcast_ids = {row.broadcast_id for row in rows if row.broadcast_id is not None}
    shared: dict[int, dict[str, Any]] = {}
    if broadcast_ids:
        shared = dict(
            (
                await session.execute(
                    select(Broadcast.id, Broadcast.payload).where(Broadcast.id.in_(broadcast_ids))
                )
            ).all()
        )
    claimed = [
        Claimed(
            id=row.id,
            account_id=row.account_id,
            chat_id=chats[row.account_id][0],
            payload=row.payload if row.payload is not None else shared[row.broadcast_id],
            attempts=row.attempts,
            parts_done=row.parts_done,
            last_seen_at=chats[row.account_id][1],
        )
        for row in rows
        if row.account_id in chats
    ]
    return sorted(claimed, key=lambda c: c.id)


async def record(session: AsyncSession, outcomes: Iterable[SendResult], now: datetime) -> None:
    """Record a batch of outcomes, one statement per kind of outcome."""
    final: dict[tuple[OutboxStatus, str | None], list[int]] = {}
    rerouted: list[SendResult] = []
    for outcome in outcomes:
        if outcome.reroute:
            rerouted.append(outcome)
        elif outcome.status is None:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == outcome.id)
                .values(
                    attempts=OutboxMessage.attempts + 1,
                    parts_done=outcome.parts_done,
                    last_error=outcome.error,
                    not_before=outcome.retry_at,
                    claimed_by=None,
                    claimed_until=None,
                )
            )
        else:
            final.setdefault((outcome.status, outcome.error), []).append(outcome.id)
    for (status, error), ids in final.items():
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(
                status=status,
                attempts=OutboxMessage.attempts + 1,
                last_error=error,
                sent_at=now if status == OutboxStatus.SENT else None,
                claimed_by=None,
                claimed_until=None,
            )
        )
    if rerouted:
        await _reroute(session, rerouted, now)


async def _reroute(session: AsyncSession, outcomes: list[SendResult], now: datetime) -> None:
    """Move messages to another account of their member a push can reach now, else give up.

    A message moved to another channel waits there as a new one: from its first part, by
    whichever process sends that channel.
    """
    members = dict(
        (
            await session.execute(
                select(ChannelAccount.id, ChannelAccount.member_id).where(
                    ChannelAccount.id.in_({outcome.account_id for outcome in outcomes})
                )
            )
        ).all()
    )
    candidates = await accounts.pushable(
        session, (m for m in members.values() if m is not None), now
    )
    stranded: list[int] = []
    for outcome in outcomes:
        member_id = members.get(outcome.account_id)
        others = [a for a in candidates.get(member_id or 0, []) if a.id != outcome.account_id]
        if not others:
            stranded.append(outcome.id)
            continue
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == outcome.id)
            .values(
                account_id=others[0].id,
                channel=others[0].channel,
                parts_done=0,
                not_before=None,
                claimed_by=None,
                claimed_until=None,
            )
        )
    if stranded:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(stranded))
            .values(
                status=OutboxStatus.UNREACHABLE,
                attempts=OutboxMessage.attempts + 1,
                last_error=OUTSIDE_WINDOW,
                claimed_by=None,
                claimed_until=None,
            )
        )


async def renew(session: AsyncSession, ids: Iterable[int], *, worker: str, until: datetime) -> None:
    """Extend this worker's claims on messages it is still sending."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(list(ids)), OutboxMessage.claimed_by == worker)
        .values(claimed_until=until)
    )


async def release_claims(session: AsyncSession) -> int:
    """Release every claim; only safe when this is the one process sending (SQLite)."""
    result = await session.execute(
        update(OutboxMessage)
        .where(
            and_(
                OutboxMessage.status == OutboxStatus.PENDING,
                OutboxMessage.claimed_by.is_not(None),
            )
        )
        .values(claimed_by=None, claimed_until=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def withdraw(session: AsyncSession, broadcast_id: int, account_ids: Iterable[int]) -> int:
    """Take some accounts' still unsent messages of a broadcast back out of the queue."""
    ids = list(account_ids)
    if not ids:
        return 0
    result = await session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.broadcast_id == broadcast_id,
            OutboxMessage.account_id.in_(ids),
            OutboxMessage.status == OutboxStatus.PENDING,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def pending_ids(session: AsyncSession, channel: str) -> Sequence[int]:
    """Return the ids of pending messages of a channel (for tests and reports)."""
    rows = await session.scalars(
        select(OutboxMessage.id).where(
            OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.channel == channel
        )
    )
    return rows.all()
