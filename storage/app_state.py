"""Small key-value facts learnt at run time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from storage.models import AppState

TELEGRAM_USERNAME = "telegram.username"


async def get(session: AsyncSession, key: str) -> str | None:
    row = await session.get(AppState, key)
    return row.value if row else None


async def put(session: AsyncSession, key: str, value: str) -> None:
    """Store a fact, replacing what was known.

    One statement (an upsert): processes starting together each store what they learnt (the
    bot's username) without one failing on the other's row.
    """
    statement = _insert(session, key, value)
    await session.execute(
        statement.on_conflict_do_update(index_elements=[AppState.key], set_={"value": value})
    )
    known = session.identity_map.get(session.identity_key(AppState, key))
    if isinstance(known, AppState):
        set_committed_value(known, "value", value)


async def put_if_missing(session: AsyncSession, key: str, value: str) -> bool:
    """Store a fact unless it is known already; False when it was (whoever stored it first)."""
    result = await session.execute(_insert(session, key, value).on_conflict_do_nothing())
    return bool(getattr(result, "rowcount", 0))


def _insert(session: AsyncSession, key: str, value: str) -> Any:
    """Return the INSERT of a fact in the session's database's dialect, which has ON CONFLICT."""
    insert_ = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return insert_(AppState).values(key=key, value=value)


async def get_locked(session: AsyncSession, key: str) -> str | None:
    """Read a fact and hold it until the transaction ends, so no other process changes it
    meanwhile (FOR UPDATE on PostgreSQL; a SQLite transaction holds the database already)."""
    return await session.scalar(select(AppState.value).where(AppState.key == key).with_for_update())
