"""Inbound updates: stored on arrival, claimed once when handled."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.base import UTCDateTime
from storage.clock import Clock
from storage.engine import SessionFactory
from storage.models import InboundUpdate
from storage.transactions import WriteTurns, asyncpg_begun, commit, on_sqlite, sqlite_time

log = logging.getLogger(__name__)

_TABLE = cast(Table, InboundUpdate.__table__)
# Built once per dialect: a statement built per call costs more than its execution.
_STORE_MANY = {
    "postgresql": pg_insert(_TABLE)
    .on_conflict_do_nothing(index_elements=[_TABLE.c.channel, _TABLE.c.update_key])
    .returning(_TABLE.c.update_key),
    "sqlite": sqlite_insert(_TABLE)
    .on_conflict_do_nothing(index_elements=[_TABLE.c.channel, _TABLE.c.update_key])
    .returning(_TABLE.c.update_key),
}

# The same on asyncpg itself: SQLAlchemy's many-rows insert costs more CPU than the round trip.
_PG_STORE_MANY = """
INSERT INTO inbound_updates (channel, update_key, payload, received_at)
SELECT $1, u.update_key, u.payload::jsonb, $4
FROM unnest($2::text[], $3::text[]) AS u(update_key, payload)
ON CONFLICT (channel, update_key) DO NOTHING
RETURNING update_key
"""

# Rows per statement on SQLite: older builds take at most 999 parameters.
_SQLITE_ROWS = 200


def _sqlite_store_many(
    rows: Sequence[tuple[str, str, str, object]], db: sqlite3.Connection
) -> set[str]:
    """In aiosqlite's thread: insert the new updates, a statement per 200; return their keys."""
    new: set[str] = set()
    for start in range(0, len(rows), _SQLITE_ROWS):
        chunk = rows[start : start + _SQLITE_ROWS]
        values = ", ".join(["(?, ?, ?, ?)"] * len(chunk))
        sql = (
            "INSERT INTO inbound_updates (channel, update_key, payload, received_at) "
            f"VALUES {values} ON CONFLICT (channel, update_key) DO NOTHING RETURNING update_key"
        )
        cursor = db.execute(sql, [value for row in chunk for value in row])
        try:
            new.update(found[0] for found in cursor.fetchall())
        finally:
            cursor.close()
    return new


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


async def store_many(
    session: AsyncSession,
    *,
    channel: str,
    updates: Sequence[tuple[str, dict[str, Any]]],
    now: datetime,
) -> set[str]:
    """Record many unhandled updates in one statement; return the keys that were new.

    The keys must be distinct. PostgreSQL and SQLite only (both answer with the rows inserted).
    """
    if not updates:
        return set()
    driver = await asyncpg_begun(session)
    if driver is not None:
        keys = [key for key, _ in updates]
        texts = [json.dumps(payload, ensure_ascii=False) for _, payload in updates]
        rows = await driver.fetch(_PG_STORE_MANY, channel, keys, texts, now)
        return {row[0] for row in rows}
    dialect = session.get_bind().dialect
    if dialect.name == "sqlite":
        received = sqlite_time(dialect)(now)
        rows = [
            (channel, key, json.dumps(payload, ensure_ascii=False), received)
            for key, payload in updates
        ]
        ran, new = await on_sqlite(session, functools.partial(_sqlite_store_many, rows))
        if ran and new is not None:
            return new
    statement = _STORE_MANY[dialect.name]
    rows = [
        {"channel": channel, "update_key": key, "payload": payload, "received_at": now}
        for key, payload in updates
    ]
    connection = await session.connection()
    return set((await connection.execute(statement, rows)).scalars())


@dataclass(slots=True)
class _Waiting:
    channel: str
    update_key: str
    payload: dict[str, Any]
    stored: asyncio.Future[bool]


class InboxWriter:
    """Store arriving updates durably, many to a transaction (group commit).

    `store` returns once the transaction holding the update has committed, so a webhook can
    acknowledge after it. While one transaction is being written, the updates arriving meanwhile
    gather for the next: a lone update is written at once, a busy webhook shares each commit
    (a transaction's round trips and fixed cost) among all the updates that arrived during the
    previous one.
    """

    def __init__(
        self,
        sessions: SessionFactory,
        clock: Clock,
        *,
        max_batch: int = 500,
        turns: WriteTurns | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._turns = turns or WriteTurns(one_writer=False)
        self._max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def store(self, channel: str, update_key: str, payload: dict[str, Any]) -> bool:
        """Store an unhandled update; False when it had been stored before (a redelivery).

        Raises what the database raised if the transaction holding it failed.
        """
        stored: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(channel, update_key, payload, stored))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all(), name="inbox-writer")
        return await stored

    async def _write_all(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._write(batch)
        finally:
            self._writer = None
            # Cancelled with updates still waiting (shutting down): they were not stored.
            for waiting in self._waiting:
                if not waiting.stored.done():
                    waiting.stored.set_exception(RuntimeError("the inbox writer stopped"))
            self._waiting.clear()

    async def _write(self, batch: list[_Waiting]) -> None:
        # The first of several copies of one update in a batch is the one stored.
        firsts: dict[tuple[str, str], _Waiting] = {}
        for waiting in batch:
            firsts.setdefault((waiting.channel, waiting.update_key), waiting)
        by_channel: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for first in firsts.values():
            by_channel.setdefault(first.channel, []).append((first.update_key, first.payload))
        try:
            new: set[tuple[str, str]] = set()
            async with self._turns.writer(), self._sessions() as session:
                now = self._clock.now()
                for channel, updates in by_channel.items():
                    keys = await store_many(session, channel=channel, updates=updates, now=now)
                    new.update((channel, key) for key in keys)
                await commit(session)
        except BaseException as error:
            log.warning("could not store %d inbound updates: %r", len(batch), error)
            for waiting in batch:
                if not waiting.stored.done():
                    waiting.stored.set_exception(
                        error if isinstance(error, Exception) else RuntimeError(repr(error))
                    )
            if not isinstance(error, Exception):
                raise
            return
        for waiting in batch:
            if not waiting.stored.done():
                key = (waiting.channel, waiting.update_key)
                waiting.stored.set_result(firsts[key] is waiting and key in new)


async def take(session: AsyncSession, *, channel: str, update_key: str, now: datetime) -> bool:
    """Record an update as handled now, in one statement; False if it was handled before.

    Inserts it if it is new; claims it if the webhook stored it unhandled; does nothing if
    it was handled already. The caller's transaction makes handling it at most once.
    """
    statement = _TAKE["postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"]
    connection = await session.connection()
    taken = await connection.execute(
        statement, {"channel": channel, "update_key": update_key, "now": now}
    )
    return taken.first() is not None


def _take_statement(insert_: Any) -> Any:
    now = bindparam("now", type_=UTCDateTime())
    values = insert_(_TABLE).values(
        channel=bindparam("channel"),
        update_key=bindparam("update_key"),
        payload=None,
        received_at=now,
        processed_at=now,
    )
    return values.on_conflict_do_update(
        index_elements=[_TABLE.c.channel, _TABLE.c.update_key],
        set_={"processed_at": now},
        where=_TABLE.c.processed_at.is_(None),
    ).returning(_TABLE.c.id)


_TAKE = {"postgresql": _take_statement(pg_insert), "sqlite": _take_statement(sqlite_insert)}


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
    session: AsyncSession, channel: str, limit: int = 1000, *, after_id: int = 0
) -> Sequence[InboundUpdate]:
    """Return updates stored but not yet handled, oldest first (after a crash).

    One page of `limit`; the next page starts after the last row's id.
    """
    statement = (
        select(InboundUpdate)
        .where(
            InboundUpdate.channel == channel,
            InboundUpdate.processed_at.is_(None),
            InboundUpdate.id > after_id,
        )
        .order_by(InboundUpdate.id)
        .limit(limit)
    )
    return (await session.scalars(statement)).all()


async def unprocessed_pages(
    sessions: SessionFactory, channel: str, page: int = 1000
) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    """Yield the (key, payload) of every update stored but not handled, a page at a time.

    Each page is read in a session of its own: a long outage can leave many pages waiting.
    Only updates stored before the first page: later ones are being answered as they come.
    """
    async with sessions() as session:
        last = await session.scalar(
            select(func.max(InboundUpdate.id)).where(
                InboundUpdate.channel == channel, InboundUpdate.processed_at.is_(None)
            )
        )
    last_id = 0
    while last is not None and last_id < last:
        async with sessions() as session:
            stored = await unprocessed(session, channel, page, after_id=last_id)
            rows = [row for row in stored if row.id <= last]
            found = [(row.update_key, row.payload) for row in rows if row.payload is not None]
        if not rows:
            return
        last_id = rows[-1].id
        yield found


async def purge(session: AsyncSession, handled_before: datetime) -> int:
    """Forget updates handled before a moment; messengers redeliver only within a day."""
    result = await session.execute(
        delete(InboundUpdate).where(InboundUpdate.processed_at < handled_before)
    )
    return int(getattr(result, "rowcount", 0) or 0)
