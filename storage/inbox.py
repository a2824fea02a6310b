"""Inbound updates: stored on arrival, claimed once when handled."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import InboundUpdate


def _insert_ignoring_duplicates(session: AsyncSession, values: dict[str, Any]) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return pg_insert(InboundUpdate).values(values).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite_insert(InboundUpdate).values(values).on_conflict_do_nothing()
    return insert(InboundUpdate).values(values)


async def store(
    session: AsyncSession,
    *,
    channel: str,
    update_key: str,
    payload: dict[str, Any] | None,
    now: datetime,
    processed: bool = False,
) -> bool:
    """Record an update once, optionally as handled; False when it had been recorded already."""
    values = {
        "channel": channel,
        "update_key": update_key,
        "payload": payload,
        "received_at": now,
        "processed_at": now if processed else None,
    }
    result = await session.execute(_insert_ignoring_duplicates(session, values))
    return bool(getattr(result, "rowcount", 0))


async def take(session: AsyncSession, *, channel: str, update_key: str, now: datetime) -> bool:
    """Record an update as handled now, in one statement; False if it was handled before.

    Inserts it if it is new; claims it if the webhook stored it unhandled; does nothing if
    it was handled already. The caller's transaction makes handling it at most once.
    """
    dialect = session.get_bind().dialect.name
    insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
    values = insert_(InboundUpdate).values(
        channel=channel, update_key=update_key, payload=None, received_at=now, processed_at=now
    )
    statement = values.on_conflict_do_update(
        index_elements=[InboundUpdate.channel, InboundUpdate.update_key],
        set_={"processed_at": now},
        where=InboundUpdate.processed_at.is_(None),
    ).returning(InboundUpdate.id)
    return (await session.execute(statement)).first() is not None


async def record_failure(
    session: AsyncSession, *, channel: str, update_key: str, error_ref: str, now: datetime
) -> None:
    """Mark an update handled with an error, so it is not retried forever."""
    await session.execute(
        update(InboundUpdate)
        .where(InboundUpdate.channel == channel, InboundUpdate.update_key == update_key)
        .values(processed_at=now, error_ref=error_ref)
    )


async def unprocessed(
    session: AsyncSession, channel: str, limit: int = 1000
) -> Sequence[InboundUpdate]:
    """Return updates stored but not yet handled, oldest first (after a crash)."""
    statement = (
        select(InboundUpdate)
        .where(InboundUpdate.channel == channel, InboundUpdate.processed_at.is_(None))
        .order_by(InboundUpdate.id)
        .limit(limit)
    )
    return (await session.scalars(statement)).all()


async def purge(session: AsyncSession, handled_before: datetime) -> int:
    """Forget updates handled before a moment; messengers redeliver only within a day."""
    result = await session.execute(
        delete(InboundUpdate).where(InboundUpdate.processed_at < handled_before)
    )
    return int(getattr(result, "rowcount", 0) or 0)
