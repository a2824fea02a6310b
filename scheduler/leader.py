"""Leadership among bot processes: on PostgreSQL, the holder of an advisory lock schedules."""

from __future__ import annotations

import contextlib
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

# An arbitrary constant shared by every thidua process: "thidua" in ASCII, as a bigint.
LOCK_KEY = 0x746869647561


class Leadership:
    """Hold the scheduler's advisory lock on a connection of its own, or keep trying."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        # SQLite serves one process: it leads without a lock.
        self._exclusive = engine.dialect.name != "postgresql"

    @property
    def held(self) -> bool:
        return self._exclusive or self._connection is not None

    async def check(self) -> bool:
        """Take the lock if free, or confirm it is still ours; return whether we lead."""
        if self._exclusive:
            return True
        if self._connection is not None:
            try:
                await self._connection.execute(text("SELECT 1"))
                await self._connection.rollback()
                return True
            except Exception:
                # The lock went with the connection; another process may hold it by now.
                log.warning("lost the scheduler lock's connection")
                await self._discard()
        try:
            connection = await self._engine.connect()
        except Exception:
            log.warning("could not reach the database to take the scheduler lock")
            return False
        try:
            got = await connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}
            )
            # Leave no transaction open on a connection held for hours.
            await connection.commit()
        except Exception:
            await connection.close()
            raise
        if not got:
            await connection.close()
            return False
        self._connection = connection
        log.info("this process now runs the scheduler")
        return True

    async def release(self) -> None:
        if self._connection is None:
            return
        try:
            await self._connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY}
            )
            await self._connection.commit()
        except Exception:
            log.warning("could not release the scheduler lock cleanly")
            await self._discard()
            return
        connection, self._connection = self._connection, None
        await connection.close()

    async def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # Never back to the pool: a live connection would keep holding the lock there.
            with contextlib.suppress(Exception):
                await connection.invalidate()
