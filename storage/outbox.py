"""The outbox: messages the bot pushes on its own, kept until they are delivered."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ChannelAccount, OutboxMessage, OutboxStatus


def enqueue(
    session: AsyncSession, *, account_id: int, payload: dict[str, Any], now: datetime
) -> None:
    """Queue one message to an account in the caller's transaction."""
    session.add(OutboxMessage(account_id=account_id, payload=payload, created_at=now))


async def pending(
    session: AsyncSession, limit: int = 100
) -> Sequence[tuple[OutboxMessage, ChannelAccount]]:
    """Return the oldest pending messages with their accounts."""
    statement = (
        select(OutboxMessage, ChannelAccount)
        .join(ChannelAccount, ChannelAccount.id == OutboxMessage.account_id)
        .where(OutboxMessage.status == OutboxStatus.PENDING)
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in (await session.execute(statement)).all()]


async def mark(
    session: AsyncSession,
    message_id: int,
    status: OutboxStatus,
    now: datetime,
    error: str | None = None,
) -> None:
    """Record what became of one message."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .values(
            status=status,
            attempts=OutboxMessage.attempts + 1,
            sent_at=now if status == OutboxStatus.SENT else None,
            last_error=error,
        )
    )


async def postpone(session: AsyncSession, message_id: int, error: str) -> None:
    """Count a failed attempt and leave the message pending for a later round."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .values(attempts=OutboxMessage.attempts + 1, last_error=error)
    )
