"""Small key-value facts learnt at run time."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AppState

TELEGRAM_USERNAME = "telegram.username"


async def get(session: AsyncSession, key: str) -> str | None:
    row = await session.get(AppState, key)
    return row.value if row else None


async def put(session: AsyncSession, key: str, value: str) -> None:
    await session.merge(AppState(key=key, value=value))


async def put_if_missing(session: AsyncSession, key: str, value: str) -> bool:
    """Store a fact unless it is known already; False when it was (whoever stored it first)."""
    insert_ = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    result = await session.execute(
        insert_(AppState).values(key=key, value=value).on_conflict_do_nothing()
    )
    return bool(getattr(result, "rowcount", 0))


async def get_locked(session: AsyncSession, key: str) -> str | None:
    """Read a fact and hold it until the transaction ends, so no other process changes it
    meanwhile (FOR UPDATE on PostgreSQL; a SQLite transaction holds the database already)."""
    return await session.scalar(select(AppState.value).where(AppState.key == key).with_for_update())
