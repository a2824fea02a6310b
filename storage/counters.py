"""Named sequences for human references, safe under concurrent writers."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Counter


async def next_value(session: AsyncSession, name: str) -> int:
    """Return the next number of the sequence `name`, starting at 1."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    await session.execute(insert(Counter).values(name=name, value=0).on_conflict_do_nothing())
    # The UPDATE locks the row, so two transactions never get the same number.
    result = await session.execute(
        update(Counter)
        .where(Counter.name == name)
        .values(value=Counter.value + 1)
        .returning(Counter.value)
    )
    return int(result.scalar_one())


def reference(prefix: str, year: int, number: int) -> str:
    """Format a reference such as DK-2023-000123."""
    return f"{prefix}-{year}-{number:06d}"
