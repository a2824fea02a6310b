"""Facts learnt at run time, stored by processes that may start together."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from storage import app_state
from storage.engine import SessionFactory


async def _waiting_on_a_lock(sessions: SessionFactory) -> bool:
    """Tell whether a PostgreSQL backend waits for a row lock now (SQLite: never observable)."""
    async with sessions() as session:
        if session.get_bind().dialect.name != "postgresql":
            return True
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return bool(waiting)


async def test_two_processes_storing_the_bot_username_at_once_both_succeed(
    sessions: SessionFactory,
) -> None:
    # The first process has stored the username and not yet committed when the second stores
    # its own: the second waits for the first, then replaces its value instead of failing.
    async with sessions() as first, first.begin():
        await app_state.put(first, app_state.TELEGRAM_USERNAME, "thidua_old_bot")

        async def second_process() -> None:
            async with sessions() as second, second.begin():
                await app_state.put(second, app_state.TELEGRAM_USERNAME, "thidua_bot")

        second = asyncio.create_task(second_process())
        while not await _waiting_on_a_lock(sessions):
            if second.done():
                break  # it did not wait: its outcome is checked below
            await asyncio.sleep(0.01)
    await second

    async with sessions() as session:
        assert await app_state.get(session, app_state.TELEGRAM_USERNAME) == "thidua_bot"


async def test_a_stored_fact_reads_back_replaced_in_the_same_session(
    sessions: SessionFactory,
) -> None:
    async with sessions() as session, session.begin():
        await app_state.put(session, app_state.TELEGRAM_USERNAME, "thidua_old_bot")
        assert await app_state.get(session, app_state.TELEGRAM_USERNAME) == "thidua_old_bot"
        await app_state.put(session, app_state.TELEGRAM_USERNAME, "thidua_bot")
        assert await app_state.get(session, app_state.TELEGRAM_USERNAME) == "thidua_bot"
