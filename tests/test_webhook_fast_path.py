"""The webhook's hot path: group-committed storing, the one-statement claim, reading updates."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.telegram.convert import UnreadableUpdateError, read_update
from storage import accounts, conversations, inbox, transactions
from storage.clock import ManualClock
from storage.engine import SessionFactory, is_connection_error
from storage.models import (
    ChannelAccount,
    Conversation,
    InboundUpdate,
    MemberStatus,
    OutboxMessage,
    Role,
)
from storage.outbox import ReplyJournal
from tests.factories import TgUser, callback_update, message_update, photo_update

ROOT = Path(__file__).resolve().parent.parent


def _from_lan(now: datetime) -> dict[str, Any]:
    """What a message from Lan (Telegram 1001) tells `take_and_load`, beside its key and name."""
    return {"channel": "telegram", "external_id": "1001", "chat_id": "1001", "now": now}


async def _rows(sessions: SessionFactory) -> dict[tuple[str, str], bool]:
    """Stored updates by channel and key, each with whether it was handled."""
    async with sessions() as session:
        rows = await session.execute(
            select(InboundUpdate.channel, InboundUpdate.update_key, InboundUpdate.processed_at)
        )
        return {(channel, key): done is not None for channel, key, done in rows}


async def test_updates_arriving_together_share_a_commit_and_duplicates_are_found(
    sessions: SessionFactory, clock: ManualClock
) -> None:
    writer = inbox.InboxWriter(sessions, clock)
    keys = [str(n) for n in range(40)] + ["3", "7", "7"]
    firsts = await asyncio.gather(*(writer.store("telegram", k, {"update_id": k}) for k in keys))
    assert firsts == [True] * 40 + [False] * 3
    assert await writer.store("telegram", "12", {"update_id": 12}) is False  # a redelivery
    assert await writer.store("other", "12", {"update_id": 12}) is True  # another channel
    stored = await _rows(sessions)
    assert len(stored) == 41
    assert not any(stored.values())


async def test_on_sqlite_the_inbox_waits_its_turn_behind_a_message_not_in_sqlite(
    database_url: str, sessions: SessionFactory, clock: ManualClock
) -> None:
    # SQLite writes one transaction at a time: the inbox writer waits for a message's
    # transaction on the bot's own turns rather than polling in SQLite's busy handler.
    # PostgreSQL has no such limit, and its inbox writer does not wait.
    on_sqlite = database_url.startswith("sqlite")
    turns = transactions.WriteTurns(one_writer=on_sqlite)
    opened: list[AsyncSession] = []

    def session_opened() -> AsyncSession:
        opened.append(sessions())
        return opened[-1]

    writer = inbox.InboxWriter(session_opened, clock, turns=turns)  # type: ignore[arg-type]
    async with turns.message():
        stored = asyncio.create_task(writer.store("telegram", "1", {"update_id": 1}))
        if on_sqlite:
            for _ in range(5):
                await asyncio.sleep(0)  # as far as it gets without I/O: up to its session
            assert not opened
        else:
            assert await asyncio.wait_for(stored, 10) is True
    assert await asyncio.wait_for(stored, 10) is True
    assert await _rows(sessions) == {("telegram", "1"): False}


async def test_a_failed_commit_fails_every_update_in_it(clock: ManualClock) -> None:
    class Broken:
        def __call__(self) -> object:
            raise ConnectionError("the database went away")

    writer = inbox.InboxWriter(Broken(), clock)  # type: ignore[arg-type]
    results = await asyncio.gather(
        *(writer.store("telegram", str(n), {}) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, ConnectionError) for result in results)


async def test_the_claim_and_the_sender_come_as_the_orm_would_give_them(
    sessions: SessionFactory, clock: ManualClock, org: dict[str, int]
) -> None:
    now = clock.now()
    args = _from_lan(now)

    async with sessions() as session, session.begin():
        loaded = await accounts.take_and_load(session, update_key="1", display_name="Lan", **args)
        assert loaded is not None
        account, conversation, member = loaded
        assert member is not None
        assert member.role is Role.MEMBER
        assert member.status is MemberStatus.ACTIVE
        assert account.last_seen_at.utcoffset() == timedelta(0)
        assert account.display_name == "Lan"  # refreshed from the message
        conversations.enter(conversation, "demo", "first", {"n": 1}, now)

    async with sessions() as session, session.begin():
        # Handled already: nothing is loaded, nothing changes.
        assert (
            await accounts.take_and_load(session, update_key="1", display_name="X", **args)
        ) is None
        later = {**args, "now": now + timedelta(hours=1)}
        again = await accounts.take_and_load(session, update_key="2", display_name="X", **later)
        assert again is not None
        assert again[1].flow == "demo"
        assert again[1].data == {"n": 1}
        assert again[0] is await session.get(ChannelAccount, again[0].id)  # in the session
    async with sessions() as session:
        saved = await session.get(ChannelAccount, again[0].id)
        assert saved is not None
        assert saved.display_name == "X"
        assert saved.last_seen_at == now + timedelta(hours=1)
    assert await _rows(sessions) == {("telegram", "1"): True, ("telegram", "2"): True}


async def test_first_contact_creates_the_account_and_its_conversation(
    sessions: SessionFactory, clock: ManualClock
) -> None:
    async with sessions() as session, session.begin():
        loaded = await accounts.take_and_load(
            session,
            channel="telegram",
            update_key="9",
            external_id="555",
            chat_id="555",
            display_name="Mới",
            now=clock.now(),
        )
        assert loaded is not None
        assert loaded[2] is None
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Conversation)) == 1
        assert await session.scalar(select(func.count()).select_from(ChannelAccount)) == 1


# What a fresh process does first with a message: no ORM query has configured the mappers yet.
_FIRST_MESSAGE_OF_A_PROCESS = """
import asyncio, sys
from datetime import UTC, datetime
from storage import accounts
from storage.engine import create_engine, create_session_factory

async def main():
    engine = create_engine(sys.argv[1])
    async with create_session_factory(engine)() as session:
        loaded = await accounts.take_and_load(
            session, channel="telegram", update_key="fresh", external_id="1001",
            chat_id="1001", display_name=None, now=datetime.now(UTC),
        )
        print(loaded[2].full_name)
    await engine.dispose()

asyncio.run(main())
"""


async def test_a_fresh_process_loads_the_sender_of_its_first_message(
    database_url: str, org: dict[str, int]
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _FIRST_MESSAGE_OF_A_PROCESS,
        database_url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    assert out.decode().strip() == "Nguyễn Thị Lan"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_busy_on_the_fast_path_counts_as_the_database_unavailable(
    sessions: SessionFactory,
) -> None:
    def locked(_db: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("database is locked")

    async with sessions() as session:
        with pytest.raises(OperationalError) as raised:
            await transactions.on_sqlite(session, locked)
    # So a message meeting it is retried once the database answers, not apologised for.
    assert is_connection_error(raised.value)


async def _until_a_thread_runs(function: Any, task: asyncio.Task[Any]) -> None:
    """Wait until another thread is inside `function`, while `task` has not finished."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        assert not task.done(), f"it finished without reaching {function.__name__}"
        for frame in sys._current_frames().values():
            while frame is not None:
                if frame.f_code is function.__code__:
                    return
                frame = frame.f_back  # type: ignore[assignment]
        assert asyncio.get_running_loop().time() < deadline, f"{function.__name__} never ran"
        await asyncio.sleep(0.01)


def _write_lock_free(database: str) -> bool:
    """Tell whether another connection could begin writing to the SQLite file at once."""
    other = sqlite3.connect(database, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_sqlite_transaction_holds_the_write_lock_from_its_first_statement(
    database_url: str, sessions: SessionFactory, clock: ManualClock, org: dict[str, int]
) -> None:
    # Its BEGIN IMMEDIATE runs with its first statement, whichever way that statement goes:
    # a writer then queues for the lock up front, it never fails half-way through.
    database = database_url.removeprefix("sqlite+aiosqlite:///")
    async with sessions() as session, session.begin():
        assert _write_lock_free(database)  # begun, nothing run yet: nothing held
        await session.scalar(select(func.count()).select_from(ChannelAccount))
        assert not _write_lock_free(database)
    assert _write_lock_free(database)
    args = _from_lan(clock.now())
    async with sessions() as session, session.begin():
        loaded = await accounts.take_and_load(session, update_key="1", display_name="Lan", **args)
        assert loaded is not None
        assert not _write_lock_free(database)
    assert _write_lock_free(database)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_message_cancelled_while_it_waits_for_the_database_leaves_nothing_held(
    database_url: str, sessions: SessionFactory, clock: ManualClock, org: dict[str, int]
) -> None:
    # Another process writes; a message waits for it in SQLite's busy handler and is cancelled
    # (the bot stopping). aiosqlite still runs what it was handed once the other is done: that
    # must not leave a transaction open on a pooled connection, holding the database.
    database = database_url.removeprefix("sqlite+aiosqlite:///")
    other = sqlite3.connect(database)
    other.execute("BEGIN IMMEDIATE")
    args = _from_lan(clock.now())
    async with sessions() as session:
        waiting = asyncio.create_task(
            accounts.take_and_load(session, update_key="1", display_name="Lan", **args)
        )
        # Its BEGIN IMMEDIATE is running in aiosqlite's thread, in SQLite's busy handler.
        await _until_a_thread_runs(transactions._begin_immediate, waiting)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    workers = [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]
    other.rollback()
    other.close()
    deadline = asyncio.get_running_loop().time() + 10
    # The handed-off claim runs, then is undone as its connection, discarded, closes.
    while not _write_lock_free(database) or all(worker.is_alive() for worker in workers):
        assert asyncio.get_running_loop().time() < deadline, "the database stayed locked"
        await asyncio.sleep(0.05)
    async with sessions() as session, session.begin():
        loaded = await accounts.take_and_load(session, update_key="2", display_name="Lan", **args)
        assert loaded is not None
    assert await _rows(sessions) == {("telegram", "2"): True}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_connection_discarded_mid_statement_does_not_keep_the_database_locked(
    database_url: str, engine: AsyncEngine
) -> None:
    # A task cancelled between a statement and its fetch leaves the statement unfinished, and
    # SQLAlchemy discards the connection. SQLite does not end a transaction whose statement is
    # unfinished when its connection closes: it kept the write lock until the garbage
    # collector came by, and every writer waited (up to the 30 s busy timeout).
    database = database_url.removeprefix("sqlite+aiosqlite:///")
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.execute("BEGIN IMMEDIATE")
        await driver.execute("INSERT INTO app_state (key, value) VALUES ('a', '1'), ('b', '2')")
        unfinished = await driver.execute("SELECT key FROM app_state")
        assert await unfinished.fetchone() is not None
        await connection.invalidate()
        assert _write_lock_free(database)
    del unfinished


async def test_a_message_rolled_back_leaves_nothing_of_either_path(
    sessions: SessionFactory, clock: ManualClock, org: dict[str, int]
) -> None:
    now = clock.now()
    args = _from_lan(now)
    async with sessions() as session:
        # The claim on the driver, the step through the ORM; then the handler fails.
        loaded = await accounts.take_and_load(session, update_key="1", display_name="", **args)
        assert loaded is not None
        conversations.enter(loaded[1], "demo", "first", {}, now)
        await session.flush()
        await session.rollback()
    assert await _rows(sessions) == {}
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Conversation)) == 0


async def test_answers_are_committed_with_the_step_that_produced_them(
    sessions: SessionFactory, clock: ManualClock, org: dict[str, int]
) -> None:
    now = clock.now()
    args = _from_lan(now)
    journal = ReplyJournal(sessions, clock)
    async with sessions() as session:
        loaded = await accounts.take_and_load(session, update_key="1", display_name="", **args)
        assert loaded is not None
        account, conversation, _member = loaded
        conversations.enter(conversation, "demo", "second", {"n": 2}, now)  # not flushed yet
        answers = [{"text": "Một"}, {"text": "Hai 🌸"}]
        ids = await journal.write_and_commit(
            session, account_id=account.id, channel="telegram", payloads=answers, now=now
        )
    assert len(ids) == 2
    async with sessions() as session:
        saved = await session.get(Conversation, account.id)
        assert saved is not None
        assert (saved.flow, saved.step, saved.data) == ("demo", "second", {"n": 2})
        journaled = await session.scalars(
            select(OutboxMessage.payload)
            .where(OutboxMessage.id.in_(ids))
            .order_by(OutboxMessage.id)
        )
        assert journaled.all() == answers
    assert await _rows(sessions) == {("telegram", "1"): True}


# Row locks exist on PostgreSQL only; on SQLite a writer holds the whole database.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_locked_account_is_waited_for_and_read_after_the_lock(
    engine: AsyncEngine, sessions: SessionFactory, clock: ManualClock, org: dict[str, int]
) -> None:
    now = clock.now()
    args = _from_lan(now)
    args["display_name"] = "Nguyễn Thị Lan"
    holder = sessions()
    async with holder.begin():
        # Another process is handling Lan's previous message.
        held = await accounts.take_and_load(holder, update_key="1", **args)
        assert held is not None
        conversations.enter(held[1], "demo", "second", {}, now)
        await holder.flush()

        async with sessions() as session, session.begin():
            with pytest.raises(accounts.AccountBusyError):
                await accounts.take_and_load(session, update_key="2", **args)

        async def waiting() -> str | None:
            async with sessions() as session, session.begin():
                loaded = await accounts.take_and_load(session, update_key="2", wait=True, **args)
                assert loaded is not None
                return loaded[1].step

        second = asyncio.create_task(waiting())
        await _until_a_statement_waits_for_a_lock(engine, second)
    await holder.close()
    # It sees the step the first message left, not the one before the lock.
    assert await asyncio.wait_for(second, 10) == "second"


async def _until_a_statement_waits_for_a_lock(engine: AsyncEngine, task: asyncio.Task[Any]) -> None:
    """Wait until a backend of this database waits for a lock, while `task` has not finished."""
    deadline = asyncio.get_running_loop().time() + 10
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND wait_event_type = 'Lock' AND cardinality(pg_blocking_pids(pid)) > 0"
    )
    while True:
        assert not task.done(), "it went ahead without waiting for the lock"
        async with engine.connect() as connection:
            if await connection.scalar(query):
                return
        assert asyncio.get_running_loop().time() < deadline, "nothing ever waited for the lock"
        await asyncio.sleep(0.01)


def test_updates_are_read_from_their_json() -> None:
    lan = TgUser(1001, "Lan", "Nguyễn")
    text = read_update(message_update(lan, "xin chào", update_id=7))
    assert text is not None
    assert text.incoming.text == "xin chào"
    assert text.incoming.display_name == "Lan Nguyễn"
    assert text.incoming.update_key == "7"
    assert text.callback_query_id is None

    press = read_update(callback_update(lan, "c:abc:yes", message_id=42))
    assert press is not None
    assert press.incoming.choice == "c:abc:yes"
    assert press.pressed_on == (1001, 42)
    assert press.callback_query_id is not None

    photo = read_update(photo_update(lan, "file-1", caption="ảnh"))
    assert photo is not None
    assert photo.incoming.text == "ảnh"
    assert [a.file_ref for a in photo.incoming.attachments] == ["file-1"]

    group = message_update(lan, "hi")
    group["message"]["chat"]["type"] = "group"
    assert read_update(group) is None
    no_data = callback_update(lan, "x")
    del no_data["callback_query"]["data"]
    assert read_update(no_data) is None
    assert read_update({"update_id": 5, "edited_message": {}}) is None

    sender = {"id": 1, "first_name": "A"}
    for broken in (
        {"message": {}},
        {"update_id": 1, "message": {"from": sender, "chat": 5}},
        {"update_id": "1"},
        {"update_id": 1, "callback_query": {"from": sender, "data": "x", "message": {}}},
    ):
        with pytest.raises(UnreadableUpdateError):
            read_update(broken)
