"""Engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import await_

from storage.transactions import (
    BEGIN_PENDING,
    begin_immediate,
    in_transaction,
    roll_back_before_close,
)

SessionFactory = async_sessionmaker[AsyncSession]

log = logging.getLogger(__name__)


class DatabaseUnavailableError(Exception):
    """The database cannot be reached now; what was being done must be retried later."""


def is_connection_error(error: BaseException) -> bool:
    """Tell whether an error means the database is unreachable, not that a statement failed.

    A refused or cut connection, a server shutting down or restarting, a pool with no connection
    to give: all pass once the server is back. A constraint or a syntax error never does, nor
    an OSError of a handler's own (a missing file).
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current, DatabaseUnavailableError | exc.OperationalError | exc.InterfaceError
        ):
            return True
        if isinstance(current, exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, exc.TimeoutError):  # no connection free in the pool
            return True
        if isinstance(current, ConnectionError | socket.gaierror):
            return True
        if isinstance(current, OSError) and current.errno in _NETWORK_ERRNOS:
            return True
        # PostgreSQL's own words (asyncpg, whether SQLAlchemy wrapped it or not): a connection
        # exception (class 08), or the server shutting down or starting up (57P01-57P03).
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and (sqlstate.startswith("08") or sqlstate in _SHUTDOWN):
            return True
        if type(current).__name__ in _DRIVER_CONNECTION_ERRORS:
            return True
        orig: object = getattr(current, "orig", None)
        unseen = orig is not current.__cause__
        if isinstance(orig, BaseException) and unseen and is_connection_error(orig):
            return True
        current = current.__cause__
    return False


_SHUTDOWN = frozenset({"57P01", "57P02", "57P03"})
# asyncpg's, also as SQLAlchemy's adapter re-raises them from raw driver calls. An
# InternalClientError ("cannot switch to state ...") is a connection left mid-operation when
# the server cut it: unusable, and fine again on a new connection.
_DRIVER_CONNECTION_ERRORS = frozenset(
    {
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "InterfaceError",
        "InternalClientError",
    }
)
_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ETIMEDOUT,
        errno.EPIPE,
    }
)


class DatabaseOutage:
    """Wait for an unreachable database to come back, and tell each person of it only once.

    Every caller that met a connection error waits on one probe (`SELECT 1`, retried with a
    growing pause), so a thousand waiting updates do not knock at the server a thousand times.
    """

    def __init__(
        self,
        sessions: SessionFactory,
        *,
        notice_every: timedelta = timedelta(minutes=1),
        first_pause: float = 0.25,
        longest_pause: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._notice_every = notice_every
        self._first_pause = first_pause
        self._longest_pause = longest_pause
        self._probe: asyncio.Task[None] | None = None
        self._noticed: dict[str, datetime] = {}
        self.outages = 0  # probes started: how many times the database was found away

    @property
    def ongoing(self) -> bool:
        return self._probe is not None and not self._probe.done()

    def should_notify(self, person: str, now: datetime) -> bool:
        """Return True at most once a minute per person: whether to tell them of the outage."""
        last = self._noticed.get(person)
        if last is not None and now - last < self._notice_every:
            return False
        if len(self._noticed) > 10_000:  # forget those told long ago; the map stays small
            cutoff = now - self._notice_every
            self._noticed = {p: at for p, at in self._noticed.items() if at >= cutoff}
        self._noticed[person] = now
        return True

    async def recovered(self) -> None:
        """Return once the database answers again."""
        if self._probe is None or self._probe.done():
            self.outages += 1
            self._probe = asyncio.create_task(self._wait_until_reachable(), name="db-probe")
        await asyncio.shield(self._probe)

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None

    async def _wait_until_reachable(self) -> None:
        pause = self._first_pause
        log.warning("the database is unreachable; waiting for it to come back")
        while True:
            await asyncio.sleep(pause)
            try:
                async with self._sessions() as session:
                    await session.execute(text("SELECT 1"))
            except Exception as error:
                if not is_connection_error(error):
                    raise
                pause = min(self._longest_pause, pause * 2)
                continue
            log.warning("the database is reachable again")
            return


def is_sqlite(url: str) -> bool:
    """Tell whether a database URL names SQLite."""
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, echo: bool = False, pool_size: int = 20) -> AsyncEngine:
    """Create an engine tuned for the database the URL names."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    # No pre-ping: it costs three round trips per transaction. Connections are recycled
    # before servers or proxies drop idle ones, and a dropped one fails that one message,
    # which is retried (see DatabaseOutage). A connection found cut invalidates every pooled
    # connection older than it, so after a server restart the pool renews itself at once.
    # The pool keeps `pool_size` connections; the overflow above it is closed as soon as it is
    # returned, so a busy bot whose transactions often exceed the pool opens a connection (TLS
    # attempt, authentication, codec set-up: ten round trips) for a good share of its messages.
    # Hence a pool as large as the transactions a busy process runs at once, and a small
    # overflow for bursts.
    return create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size // 2, pool_recycle=600
    )


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    """Create the factory handing out one session per message or job."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that BEGIN IMMEDIATE below is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers queue on the lock up front instead of failing when a reader upgrades. The
        # BEGIN IMMEDIATE waits for the transaction's first statement: that one runs it, in its
        # own hand-off to aiosqlite's thread (`storage.transactions.on_sqlite`, or below).
        connection.connection.info[BEGIN_PENDING] = True

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before_statement(connection: Any, *_args: Any) -> None:
        pooled = connection.connection
        if pooled.info.pop(BEGIN_PENDING, False):
            begun = begin_immediate(pooled.driver_connection)
            if begun is None:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                await_(begun)

    @event.listens_for(engine.sync_engine.pool, "close")
    def _before_close(dbapi_connection: Any, _record: Any) -> None:
        # A connection discarded with a statement unfinished (its task cancelled between the
        # statement and its fetch) would not end its transaction on closing: SQLite keeps it,
        # and the write lock with it, until that statement is garbage-collected.
        roll_back_before_close(engine.sync_engine.dialect.get_driver_connection(dbapi_connection))

    _end_only_open_transactions(engine)


def _end_only_open_transactions(engine: AsyncEngine) -> None:
    """Commit or roll back a SQLite connection only when it has a transaction open.

    SQLAlchemy rolls back every connection returned to the pool, committed or not, and ends a
    transaction that ran no statement (its BEGIN never ran, above). On aiosqlite every call, even
    one with nothing to do, is a hand-off to the driver's thread and back: a message's
    transaction saved one of its six this way.
    """
    dialect = engine.sync_engine.dialect
    rollback, commit = dialect.do_rollback, dialect.do_commit

    def do_rollback(pooled: PoolProxiedConnection) -> None:
        _forget_pending_begin(pooled)
        if in_transaction(pooled.driver_connection):
            rollback(pooled)

    def do_commit(pooled: PoolProxiedConnection) -> None:
        _forget_pending_begin(pooled)
        if in_transaction(pooled.driver_connection):
            commit(pooled)

    dialect.do_rollback = do_rollback  # type: ignore[method-assign, assignment]
    dialect.do_commit = do_commit  # type: ignore[method-assign, assignment]


def _forget_pending_begin(pooled: PoolProxiedConnection) -> None:
    # The connection made to set the dialect up has no `info`; it never began a transaction.
    with contextlib.suppress(NotImplementedError):
        pooled.info.pop(BEGIN_PENDING, None)
