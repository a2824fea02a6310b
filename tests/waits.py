"""Waits on what the bot does in the background, bounded so a stuck test fails instead."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import func, select

from storage.engine import SessionFactory
from storage.models import OutboxMessage, OutboxStatus


async def settled(sessions: SessionFactory, within: float = 5.0) -> None:
    """Wait until the delivery engine has recorded what became of every queued message."""
    deadline = time.monotonic() + within
    while True:
        async with sessions() as session:
            pending = await session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status == OutboxStatus.PENDING)
            )
        if not pending:
            return
        assert time.monotonic() < deadline, f"{pending} messages still pending"
        await asyncio.sleep(0.02)
