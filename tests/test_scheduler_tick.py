"""The periodic tick: it forgets old handled updates and keeps recent ones."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from handlers.i18n import Catalogue
from scheduler.service import ScheduleConfig, Scheduler
from storage import inbox
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import InboundUpdate


async def test_tick_forgets_updates_handled_over_a_week_ago(
    sessions: SessionFactory, engine: AsyncEngine, clock: ManualClock
) -> None:
    async with sessions() as session, session.begin():
        await inbox.store(
            session,
            channel="telegram",
            update_key="old",
            payload=None,
            now=clock.now(),
            processed=True,
        )
    clock.advance(timedelta(days=6))
    async with sessions() as session, session.begin():
        await inbox.store(
            session,
            channel="telegram",
            update_key="recent",
            payload=None,
            now=clock.now(),
            processed=True,
        )
        await inbox.store(
            session, channel="telegram", update_key="waiting", payload={"x": 1}, now=clock.now()
        )
    clock.advance(timedelta(days=2))

    woken: list[bool] = []
    scheduler = Scheduler(
        sessions,
        engine,
        clock,
        Catalogue.load(),
        ScheduleConfig(zone=ZoneInfo("Asia/Ho_Chi_Minh")),
        lambda: woken.append(True),
    )
    await scheduler.tick()

    async with sessions() as session:
        keys = set(await session.scalars(select(InboundUpdate.update_key)))
    assert keys == {"recent", "waiting"}
    assert woken == []  # nothing was queued for anyone
