"""A session's transaction reached on the driver, for the per-message hot path.

SQLAlchemy's async layers (greenlets, the cursor and result adapters, the session's state
machine) cost about as much CPU per statement as the round trip to PostgreSQL. On SQLite,
aiosqlite runs every call (cursor, execute, fetch, close) in its own thread and hands the result
back through the event loop: three or four hand-offs per statement through SQLAlchemy. The few
statements every message runs go to asyncpg itself, or run together in aiosqlite's thread in one
hand-off, inside the session's own transaction. Anything else goes through SQLAlchemy as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import PoolProxiedConnection

from storage.base import UTCDateTime


async def asyncpg_begun(session: AsyncSession) -> Any | None:
    """The session's asyncpg connection with its transaction begun, else None (not PostgreSQL)."""
    pooled = await _pooled(session)
    if pooled is None:
        return None
    adapter = pooled.dbapi_connection
    if getattr(adapter, "_transaction", None) is None:
        begin = getattr(adapter, "_start_transaction", None)
        if begin is None:
            return None
        await begin()
    return pooled.driver_connection


_T = TypeVar("_T")


# On a pooled SQLite connection (its `info`): SQLAlchemy has begun a transaction whose
# BEGIN IMMEDIATE has not run yet. It runs with the transaction's first statement, in the same
# hand-off to aiosqlite's thread: a hand-off costs more CPU than most statements.
BEGIN_PENDING = "thidua.sqlite_begin_pending"


async def on_sqlite(
    session: AsyncSession, work: Callable[[sqlite3.Connection], _T], *, commit: bool = False
) -> tuple[bool, _T | None]:
    """Run `work` on the session's SQLite connection in aiosqlite's thread, in one hand-off.

    The session's transaction is begun first; with `commit`, it is committed after `work` in
    the same hand-off (flush the session before, and call `session.commit()` after, which then
    has nothing left to do). Returns (False, None) if the session is not on aiosqlite; the caller
    then goes through SQLAlchemy. SQLite's errors come as SQLAlchemy's.
    """
    pooled = await _pooled(session, "sqlite")
    driver = pooled.driver_connection if pooled is not None else None
    if pooled is None or driver is None or not hasattr(driver, "_execute"):
        return False, None
    begin = bool(pooled.info.pop(BEGIN_PENDING, False))
    begun: list[bool] = []  # set in the thread once BEGIN IMMEDIATE has run
    try:
        done = await _in_thread(driver, functools.partial(_framed, begin, begun, work, commit))
    except Exception:
        # Raised in the thread: the work is over, and its transaction open unless BEGIN failed.
        if begin and not begun:
            pooled.info[BEGIN_PENDING] = True  # still to run
        raise
    except BaseException:
        # Cancelled: aiosqlite still runs what it was handed, so what the connection holds is
        # not known here. It is discarded, as SQLAlchemy discards a connection whose statement
        # was cancelled; SQLite rolls back what it holds as it closes.
        pooled.invalidate()
        raise
    if commit:
        # Should anything still run before the session's commit, it runs in a transaction.
        pooled.info[BEGIN_PENDING] = True
    return True, done


def _framed(
    begin: bool,
    begun: list[bool],
    work: Callable[[sqlite3.Connection], _T],
    commit: bool,
    db: sqlite3.Connection,
) -> _T:
    """In aiosqlite's thread: `work`, after BEGIN IMMEDIATE and before COMMIT as asked."""
    if begin:
        _begin_immediate(db)
        begun.append(True)
    done = work(db)
    if commit:
        db.execute("COMMIT").close()
    return done


def in_transaction(driver: Any) -> bool:
    """Tell whether an aiosqlite connection is inside a transaction (if unsure, yes).

    Read off the connection without a hand-off: SQLite keeps it as a flag.
    """
    try:
        return bool(driver.in_transaction)
    except Exception:  # closed, or not aiosqlite: let the driver's own call decide
        return True


def roll_back_before_close(driver: Any) -> None:
    """Queue, in aiosqlite's thread, a rollback of any open transaction ahead of a close.

    Without waiting for it: it runs after what is queued already, before the close that comes
    next, even where nothing may wait (a connection collected as garbage is closed too).
    """
    queue = getattr(driver, "_tx", None)
    if queue is None:
        return

    def roll_back() -> None:
        connection = getattr(driver, "_connection", None)
        if connection is not None and connection.in_transaction:
            connection.rollback()

    queue.put_nowait((None, roll_back))  # no future: nobody waits for it


async def _in_thread(driver: Any, work: Callable[[sqlite3.Connection], _T]) -> _T:
    try:
        return await driver._execute(work, driver._conn)  # type: ignore[no-any-return]
    except sqlite3.Error as error:
        # As SQLAlchemy would raise it: an OperationalError ("database is locked") is then
        # recognised as the database being unavailable, an IntegrityError as a conflict.
        raise exc.DBAPIError.instance(None, None, error, sqlite3.Error) from error


@functools.cache
def sqlite_time(dialect: Dialect) -> Callable[[datetime], object]:
    """Return how a timestamp column stores a time on SQLite (text, as SQLAlchemy writes it)."""
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    return process


def begin_immediate(driver: Any) -> Awaitable[None] | None:
    """Return an awaitable running BEGIN IMMEDIATE in aiosqlite's thread, else None."""
    if not hasattr(driver, "_execute"):
        return None
    return _in_thread(driver, _begin_immediate)


def _begin_immediate(connection: sqlite3.Connection) -> None:
    connection.execute("BEGIN IMMEDIATE").close()


async def commit(session: AsyncSession) -> None:
    """Flush and commit the session's transaction; the caller closes the session right after.

    On asyncpg the COMMIT goes straight to the driver, skipping the ORM's commit (a greenlet
    and its state machine, about a sixth of a simple message's CPU). SQLAlchemy then still
    holds the transaction open: closing the session ends it with a rollback that the adapter
    skips, its transaction being done. Elsewhere this is `session.commit()`.
    """
    if session.new or session.dirty or session.deleted:
        await session.flush()
    pooled = await _pooled(session)
    adapter = pooled.dbapi_connection if pooled is not None else None
    transaction = getattr(adapter, "_transaction", None)
    discard = getattr(adapter, "_call_and_discard", None)
    if transaction is not None and discard is not None:
        # As the adapter's own commit does: the transaction is done whether COMMIT succeeds.
        await discard(transaction.commit)
        return
    # Elsewhere through the session, which keeps its own account of the transaction.
    await session.commit()


async def _pooled(
    session: AsyncSession, dialect: str = "postgresql"
) -> PoolProxiedConnection | None:
    """The session's pooled connection (its transaction begun), if on `dialect`."""
    sync: Connection | None
    transaction = session.sync_session.get_transaction()
    if transaction is not None and getattr(transaction, "_connections", None):
        # The transaction holds its connection already: taken without I/O, without a greenlet.
        sync = session.sync_session.connection()
    else:
        sync = (await session.connection()).sync_connection
    if sync is None or sync.invalidated or sync.dialect.name != dialect:
        return None
    return sync.connection


class WriteTurns:
    """Turns at the database for the transactions every message brings, in one process.

    SQLite lets one transaction write at a time, and each of these begins by writing. Left to
    SQLite, the others wait in its busy handler, which polls with sleeps of up to 100 ms: on the
    webhook benchmark that cost a third of the throughput. So there a message's transaction
    and the writers running beside messages (the inbox writer, the finished answers, Zalo's
    stored events, failure records, the journal's retries and renewals) take one turn at a
    time here, and wait for it without polling. On PostgreSQL only messages' transactions are
    bounded (by what the connection pool holds); the writers go freely.
    """

    def __init__(self, *, one_writer: bool, messages: int = 16) -> None:
        self._shared = asyncio.Semaphore(1) if one_writer else None
        self._messages = self._shared or asyncio.Semaphore(messages)

    def message(self) -> asyncio.Semaphore:
        """Return a message's turn, held for its whole transaction."""
        return self._messages

    def writer(self) -> AbstractAsyncContextManager[object]:
        """Return a background writer's turn, for a writer that opens its own session."""
        return self._shared if self._shared is not None else contextlib.nullcontext()

    @contextlib.asynccontextmanager
    async def writing(self, sessions: Callable[[], AsyncSession]) -> AsyncIterator[AsyncSession]:
        """Open a session and its transaction in a writer's turn; committed on leaving."""
        async with self.writer(), sessions() as session, session.begin():
            yield session
