"""On SQLite the bot's writers take turns with messages' transactions instead of polling SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.zalo.channel import ZaloChannel
from handlers.dispatcher import Dispatcher
from handlers.routing import build_routes
from storage import transactions
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import InboundUpdate, OutboxMessage, OutboxStatus
from storage.outbox import ReplyJournal
from tests.builders import core_services


class _Opened:
    """A session factory that remembers every session it opened."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions
        self.count = 0

    def __call__(self) -> AsyncSession:
        self.count += 1
        return self._sessions()


async def _waits_its_turn(
    on_sqlite: bool,
    turns: transactions.WriteTurns,
    opened: _Opened,
    write: Callable[[], Awaitable[object]],
) -> None:
    """Run `write` while a message holds its turn: on SQLite it opens nothing until released."""
    async with turns.message():
        task = asyncio.ensure_future(write())
        if on_sqlite:
            for _ in range(5):
                await asyncio.sleep(0)  # as far as it gets without I/O: up to its session
            assert opened.count == 0
            assert not task.done()
        else:
            await asyncio.wait_for(task, 10)
    await asyncio.wait_for(task, 10)


async def test_a_zalo_event_is_stored_in_its_turn_behind_a_message(
    database_url: str, sessions: SessionFactory, clock: ManualClock
) -> None:
    # PostgreSQL has no one-writer limit, and there the event is stored at once.
    on_sqlite = database_url.startswith("sqlite")
    turns = transactions.WriteTurns(one_writer=on_sqlite)
    opened = _Opened(sessions)
    services = core_services(opened, clock)  # type: ignore[arg-type]
    dispatcher = Dispatcher(services, build_routes(), turns=turns)
    channel = ZaloChannel(
        None,  # type: ignore[arg-type]  # nothing is sent
        dispatcher,
        opened,  # type: ignore[arg-type]
        clock,
        services.texts,
        on_queued=lambda: None,
    )
    event = {"event_name": "message.text.received", "message": {"text": "xin chào"}}

    await _waits_its_turn(on_sqlite, turns, opened, lambda: channel.store_and_queue("1", event))

    async with sessions() as session:
        stored = (await session.scalars(select(InboundUpdate))).all()
    assert [(row.channel, row.update_key, row.payload) for row in stored] == [("zalo", "1", event)]


async def test_a_failed_answer_is_handed_to_the_retries_in_its_turn_behind_a_message(
    database_url: str, sessions: SessionFactory, clock: ManualClock
) -> None:
    on_sqlite = database_url.startswith("sqlite")
    turns = transactions.WriteTurns(one_writer=on_sqlite)
    async with sessions() as session, session.begin():
        row = OutboxMessage(
            account_id=1, channel="telegram", payload={"text": "Chào Lan"}, created_at=clock.now()
        )
        session.add(row)
    opened = _Opened(sessions)
    journal = ReplyJournal(opened, clock, turns=turns)  # type: ignore[arg-type]
    retry_at = clock.now() + timedelta(seconds=30)

    await _waits_its_turn(
        on_sqlite,
        turns,
        opened,
        lambda: journal.retry_later([row.id], parts_done=1, error="timed out", retry_at=retry_at),
    )

    async with sessions() as session:
        retried = await session.get(OutboxMessage, row.id)
    assert retried is not None
    assert (retried.status, retried.attempts, retried.parts_done) == (OutboxStatus.PENDING, 1, 1)
    assert retried.not_before == retry_at
