"""A session's PostgreSQL transaction reached on the driver, for the per-message hot path.

SQLAlchemy's async layers (greenlets, the cursor and result adapters, the session's state
machine) cost about as much CPU per statement as the round trip to the server. The few
statements every message runs go to asyncpg itself, inside the session's own transaction.
Anything else, SQLite included, goes through SQLAlchemy as usual.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import PoolProxiedConnection


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
    if transaction is None or discard is None:
        await session.commit()
        return
    # As the adapter's own commit does: the transaction is done whether COMMIT succeeds or not.
    await discard(transaction.commit)


async def _pooled(session: AsyncSession) -> PoolProxiedConnection | None:
    """The session's pooled connection, if it is PostgreSQL's (SQLAlchemy's asyncpg adapter)."""
    sync: Connection | None
    transaction = session.sync_session.get_transaction()
    if transaction is not None and getattr(transaction, "_connections", None):
        # The transaction holds its connection already: taken without I/O, without a greenlet.
        sync = session.sync_session.connection()
    else:
        sync = (await session.connection()).sync_connection
    if sync is None or sync.invalidated or sync.dialect.name != "postgresql":
        return None
    return sync.connection
