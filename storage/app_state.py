"""Small key-value facts learnt at run time."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AppState

TELEGRAM_USERNAME = "telegram.username"


async def get(session: AsyncSession, key: str) -> str | None:
    row = await session.get(AppState, key)
    return row.value if row else None


async def put(session: AsyncSession, key: str, value: str) -> None:
    await session.merge(AppState(key=key, value=value))
