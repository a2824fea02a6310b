"""Engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SessionFactory = async_sessionmaker[AsyncSession]


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
    # before servers or proxies drop idle ones, and a dropped one fails that one message.
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
        # Writers queue on the lock up front instead of failing when a reader upgrades.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
