"""Delivery survives crashes: the real bot, killed with SIGKILL mid-broadcast, loses nothing.

The bot runs as a child process (`python -m bot run`, webhook mode) against a fake Bot API in
this process that enforces Telegram's limits. A broadcast to 10,000 members is queued straight
into the database; the child is killed at seeded random points and started again. Afterwards
every member has the message, no more were sent twice than could have been in flight at the
kills, and every outbox row is recorded as sent. On PostgreSQL two processes also share one
broadcast without sending anything twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select, text
from telegram import Bot
from telegram.error import Forbidden, RetryAfter

from handlers.types import Attachment, Reply
from storage.engine import create_engine, create_session_factory, is_sqlite
from storage.models import ChannelAccount, Member, UnitKind
from tests.bot_process import BotProcess, add_recipients, bot_env, outbox_counts, queue_broadcast
from tests.builders import add_member, add_unit
from tests.fakes.telegram_api import FakeLimits, FakeTelegramAPI
from tests.telegram_harness import SECRET, TOKEN, TelegramBot

RECIPIENTS = 10_000
CHAT_BASE = 5_000_000_000
CONCURRENCY = 64
KILLS = 3
# Longer than a process takes to send one claimed batch, so no claim lapses while it is sent.
SHARED_LEASE = 10
SEED = 20230315
TEXT = "Thông báo: Đại hội Công đoàn cơ sở họp lúc 8 giờ thứ Hai."
# Telegram's limits with paid broadcasts, and a round trip of 50 ms.
LIMITS = FakeLimits(per_second=30, paid_per_second=1000, latency=0.05)


# --- the fake API enforces Telegram's limits ---------------------------------------------------


@pytest.fixture
async def limited_api() -> AsyncIterator[FakeTelegramAPI]:
    api = FakeTelegramAPI(TOKEN, limits=FakeLimits(per_second=5, paid_per_second=50))
    await api.start()
    yield api
    await api.stop()


async def _post(
    http: aiohttp.ClientSession, api: FakeTelegramAPI, method: str, **params: object
) -> tuple[int, dict[str, object]]:
    async with http.post(f"{api.base_url}/bot{TOKEN}/{method}", json=params) as response:
        return response.status, await response.json()


async def test_over_the_overall_rate_the_fake_answers_429_with_retry_after(
    limited_api: FakeTelegramAPI,
) -> None:
    async with aiohttp.ClientSession() as http:
        answers = [
            await _post(http, limited_api, "sendMessage", chat_id=100 + n, text="x")
            for n in range(8)
        ]
    assert [status for status, _ in answers] == [200] * 5 + [429] * 3
    _, body = answers[-1]
    assert body["ok"] is False
    assert body["error_code"] == 429
    assert body["parameters"] == {"retry_after": 1}
    assert body["description"] == "Too Many Requests: retry after 1"
    assert limited_api.too_many_requests == 3
    assert limited_api.rejected_overall == 3
    assert limited_api.delivered == 5


async def test_a_chat_gets_a_burst_of_three_then_one_a_second() -> None:
    seconds = [1000.0]
    limited_api = FakeTelegramAPI(
        TOKEN, limits=FakeLimits(per_second=5, paid_per_second=50), clock=lambda: seconds[0]
    )
    await limited_api.start()
    try:
        async with aiohttp.ClientSession() as http:
            first = [
                (await _post(http, limited_api, "sendMessage", chat_id=42, text="x"))[0]
                for _ in range(4)
            ]
            other = await _post(http, limited_api, "sendMessage", chat_id=43, text="x")
            seconds[0] += 0.9
            early = await _post(http, limited_api, "sendMessage", chat_id=42, text="x")
            seconds[0] += 0.1  # a second after the burst
            later = await _post(http, limited_api, "sendMessage", chat_id=42, text="x")
    finally:
        await limited_api.stop()
    assert first == [200, 200, 200, 429]
    assert early[0] == 429
    assert other[0] == 200
    assert later[0] == 200
    assert limited_api.rejected_chat == 2
    assert limited_api.deliveries == {42: 4, 43: 1}
    assert limited_api.duplicates == 3


async def test_paid_broadcasts_raise_the_overall_limit(limited_api: FakeTelegramAPI) -> None:
    async with aiohttp.ClientSession() as http:
        paid = [
            await _post(
                http,
                limited_api,
                "sendMessage",
                chat_id=1000 + n,
                text="x",
                allow_paid_broadcast=True,
            )
            for n in range(20)
        ]
        # Paid messages count against the free limit too: it is spent.
        free = await _post(http, limited_api, "sendMessage", chat_id=999, text="x")
    assert [status for status, _ in paid] == [200] * 20
    assert free[0] == 429
    assert limited_api.paid_delivered == 20


async def test_latency_and_bench_mode_keep_counts_only() -> None:
    api = FakeTelegramAPI(TOKEN, limits=FakeLimits(latency=0.1), bench=True)
    await api.start()
    try:
        async with aiohttp.ClientSession() as http:
            start = time.monotonic()
            status, _ = await _post(http, api, "sendMessage", chat_id=7, text="x")
            assert time.monotonic() - start >= 0.1
            assert status == 200
            await _post(http, api, "sendMessage", chat_id=7, text="x")
    finally:
        await api.stop()
    assert api.sent == []
    assert api.calls == []
    assert api.deliveries == {7: 2}
    assert api.method_counts["sendMessage"] == 2


async def test_photos_and_documents_are_recorded_and_blocked_chats_refuse_them() -> None:
    api = FakeTelegramAPI(TOKEN)
    await api.start()
    try:
        async with Bot(TOKEN, base_url=f"{api.base_url}/bot") as bot:
            photo = await bot.send_photo(11, photo="AgACAgIAAx-photo", caption="Ảnh hội thao")
            document = await bot.send_document(11, document="BQACAgIAAx-doc")
            api.blocked.add(12)
            with pytest.raises(Forbidden):
                await bot.send_photo(12, photo="AgACAgIAAx-photo")
            with pytest.raises(Forbidden):
                await bot.send_document(12, document="BQACAgIAAx-doc")
    finally:
        await api.stop()
    assert photo.photo[0].file_id == "AgACAgIAAx-photo"
    assert photo.caption == "Ảnh hội thao"
    assert document.document is not None
    assert document.document.file_id == "BQACAgIAAx-doc"
    assert [(m.method, m.chat_id, m.file_id) for m in api.sent] == [
        ("sendPhoto", 11, "AgACAgIAAx-photo"),
        ("sendDocument", 11, "BQACAgIAAx-doc"),
    ]
    assert api.deliveries == {11: 2}


async def test_the_channel_pushes_attachments_after_the_text(bot: TelegramBot) -> None:
    assert bot.runtime.telegram is not None
    reply = Reply(
        "Kế hoạch thi đua năm 2023",
        attachments=(
            Attachment("document", "BQAC-ke-hoach"),
            Attachment("photo", "AgAC-anh"),
        ),
    )
    await bot.runtime.telegram.push("3003", reply)
    assert [(m.method, m.file_id) for m in bot.api.messages_to(3003)] == [
        ("sendMessage", None),
        ("sendDocument", "BQAC-ke-hoach"),
        ("sendPhoto", "AgAC-anh"),
    ]


async def test_python_telegram_bot_reads_the_fakes_429_as_retry_after() -> None:
    api = FakeTelegramAPI(TOKEN, limits=FakeLimits(per_second=30))
    await api.start()
    try:
        async with Bot(TOKEN, base_url=f"{api.base_url}/bot") as bot:
            for _ in range(3):
                await bot.send_message(21, "x")
            with pytest.raises(RetryAfter) as error:
                await bot.send_message(21, "x")
    finally:
        await api.stop()
    assert error.value.retry_after == timedelta(seconds=1)
    assert api.too_many_requests == 1


# --- the real bot, killed mid-broadcast -------------------------------------------------------


async def _queue_big_broadcast(database_url: str, count: int) -> set[int]:
    """Queue a broadcast from an officer (without an account) to `count` members."""
    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            root = await add_unit(
                session, "LDLD-BIG", "Liên đoàn Lao động tỉnh", kind=UnitKind.PROVINCE
            )
            leaf = await add_unit(session, "CDCS-BIG", "Công đoàn cơ sở Công ty Lớn", parent=root)
            author = await add_member(session, root, "Trần Văn Minh")
            await add_recipients(session, leaf, count, chat_base=CHAT_BASE)
        if not is_sqlite(database_url):
            # Without fresh statistics PostgreSQL plans `queue` quadratically (see
            # bench/results-broadcast.md): 10,000 recipients would take about a minute.
            async with engine.connect() as connection:
                await connection.execute(text("ANALYZE units, members, channel_accounts"))
        async with sessions() as session, session.begin():
            _, queued = await queue_broadcast(session, author, root, TEXT, datetime.now(UTC))
            assert queued == count
            chats = await session.scalars(
                select(ChannelAccount.chat_id)
                .join(Member, Member.id == ChannelAccount.member_id)
                .where(Member.unit_id == leaf.id)
            )
            return {int(chat) for chat in chats}
    finally:
        await engine.dispose()


async def _until(
    condition: Callable[[], bool], within: float, bots: list[BotProcess], what: str
) -> None:
    """Wait until `condition` holds, failing early if a bot process died."""
    deadline = time.monotonic() + within
    while not condition():
        for bot in bots:
            if not bot.alive:
                raise AssertionError(f"{bot.log_path.name} exited: {bot.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def _until_recorded(database_url: str, within: float) -> dict[str, int]:
    """Wait until no outbox row is pending; return the counts by status."""
    deadline = time.monotonic() + within
    while True:
        counts = await outbox_counts(database_url)
        if not counts.get("pending") or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.5)


@pytest.mark.slow
@pytest.mark.crash
async def test_a_bot_killed_mid_broadcast_loses_nothing_and_repeats_little(
    database_url: str, tmp_path: Path
) -> None:
    expected = await _queue_big_broadcast(database_url, RECIPIENTS)
    api = FakeTelegramAPI(TOKEN, limits=LIMITS, bench=True)
    await api.start()
    env = bot_env(
        database_url,
        api.base_url,
        TOKEN,
        SECRET,
        telegram_rate_limit=1000,
        delivery_concurrency=CONCURRENCY,
        delivery_lease_seconds=2,
    )
    bot = BotProcess(env, tmp_path)
    rng = random.Random(SEED)
    kill_points = sorted(rng.sample(range(RECIPIENTS // 20, RECIPIENTS * 9 // 10), KILLS))
    started = time.monotonic()
    try:
        await bot.start()
        for point in kill_points:
            await _until(lambda p=point: api.delivered >= p, 90, [bot], f"{point} sends")
            await asyncio.sleep(rng.uniform(0, 0.2))
            await bot.kill()
            await bot.start()
        await _until(lambda: len(api.deliveries) >= RECIPIENTS, 120, [bot], "every chat")
        counts = await _until_recorded(database_url, 30)
    finally:
        await bot.stop()
        await api.stop()
    elapsed = time.monotonic() - started
    missing = expected - api.deliveries.keys()
    strangers = api.deliveries.keys() - expected
    print(
        f"\n{RECIPIENTS} recipients, {bot.kills} kills at {kill_points} sends, "
        f"{api.duplicates} duplicates, {api.too_many_requests} 429s, {elapsed:.1f} s"
    )
    assert bot.kills == KILLS
    assert not missing, f"{len(missing)} recipients never got the message"
    assert not strangers
    assert api.duplicates <= bot.kills * CONCURRENCY, f"{api.duplicates} duplicates"
    assert counts == {"sent": RECIPIENTS}, counts


@pytest.mark.slow
@pytest.mark.crash
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_processes_share_a_broadcast_without_sending_twice(
    database_url: str, tmp_path: Path
) -> None:
    expected = await _queue_big_broadcast(database_url, RECIPIENTS)
    api = FakeTelegramAPI(TOKEN, limits=LIMITS, bench=True)
    await api.start()
    bots = [
        BotProcess(
            bot_env(
                database_url,
                api.base_url_for(name),
                TOKEN,
                SECRET,
                # The two processes share Telegram's 1,000 messages a second.
                telegram_rate_limit=500,
                delivery_concurrency=CONCURRENCY,
                delivery_lease_seconds=SHARED_LEASE,
            ),
            tmp_path,
            name=name,
        )
        for name in ("a", "b")
    ]
    started = time.monotonic()
    try:
        await asyncio.gather(*(bot.start() for bot in bots))
        await _until(lambda: len(api.deliveries) >= RECIPIENTS, 120, bots, "every chat")
        # A message whose outcome went unrecorded would go out again once its claim lapses.
        counts = await _until_recorded(database_url, SHARED_LEASE + 20)
    finally:
        await asyncio.gather(*(bot.stop() for bot in bots))
        await api.stop()
    shares = {name: api.delivered_by_client[name] for name in ("a", "b")}
    print(
        f"\n{RECIPIENTS} recipients, shares {shares}, {api.duplicates} duplicates, "
        f"{api.too_many_requests} 429s, {time.monotonic() - started:.1f} s"
    )
    assert expected == api.deliveries.keys()
    assert api.duplicates == 0
    assert all(share > 0 for share in shares.values()), shares
    assert sum(shares.values()) == RECIPIENTS
    assert counts == {"sent": RECIPIENTS}, counts
