"""The delivery engine against the fake Bot API: rate limits, retries, long texts, restarts."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from bot.channels import Channel
from bot.delivery import MAX_ATTEMPTS, Deliverer, backoff
from handlers.types import ChannelTraits, Reply
from storage import outbox
from storage.clock import ManualClock, SystemClock
from storage.engine import SessionFactory
from storage.models import ChannelAccount, OutboxMessage, OutboxStatus, Unit
from tests.builders import add_campaign, add_member
from tests.telegram_harness import TelegramBot, running_bot
from tests.waits import settled

LAN = 1001
MINH = 9001


# --- helpers ---------------------------------------------------------------------------


@dataclass
class Arrival:
    """A sendMessage call as the fake Bot API saw it."""

    at: float
    chat_id: int
    answered: int  # the HTTP status the fake gave


@dataclass
class Answering:
    """A `failures` hook for sendMessage: `rule` decides each call's error status, if any."""

    rule: Callable[[int, int], int | None]  # (chat id, calls to it so far) -> status or None
    retry_after: float = 1.0
    arrivals: list[Arrival] = field(default_factory=list)
    _per_chat: dict[int, int] = field(default_factory=dict)

    def __call__(self, params: dict[str, Any]) -> web.Response | None:
        chat_id = int(params["chat_id"])
        seen = self._per_chat.get(chat_id, 0)
        self._per_chat[chat_id] = seen + 1
        status = self.rule(chat_id, seen)
        self.arrivals.append(Arrival(time.monotonic(), chat_id, status or 200))
        if status is None:
            return None
        if status == 429:
            body: dict[str, Any] = {
                "ok": False,
                "error_code": 429,
                "description": f"Too Many Requests: retry after {self.retry_after}",
                "parameters": {"retry_after": self.retry_after},
            }
        else:
            body = {"ok": False, "error_code": status, "description": "Bad Gateway"}
        return web.json_response(body, status=status)


async def add_people(sessions: SessionFactory, org: dict[str, int], chats: range) -> None:
    """Add a member of CDCS-MUOI with a Telegram account for each chat id."""
    async with sessions() as session, session.begin():
        unit = await session.get(Unit, org["CDCS-MUOI"])
        assert unit is not None
        for chat in chats:
            await add_member(session, unit, f"Công nhân {chat}", telegram_id=chat)


async def enqueue(
    sessions: SessionFactory, clock: ManualClock, texts: dict[int, str]
) -> dict[int, int]:
    """Queue one message per chat; return the outbox id of each chat's message."""
    async with sessions() as session, session.begin():
        accounts = {
            int(a.chat_id): a
            for a in await session.scalars(
                select(ChannelAccount).where(
                    ChannelAccount.chat_id.in_([str(chat) for chat in texts])
                )
            )
        }
        for chat, text in texts.items():
            outbox.enqueue(
                session,
                account_id=accounts[chat].id,
                channel="telegram",
                payload={"text": text},
                now=clock.now(),
            )
        await session.flush()
        rows = await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        by_account = {row.account_id: row.id for row in rows}
    return {chat: by_account[account.id] for chat, account in accounts.items()}


async def row(sessions: SessionFactory, outbox_id: int) -> OutboxMessage:
    async with sessions() as session:
        found = await session.get(OutboxMessage, outbox_id)
    assert found is not None
    return found


def texts_to(bot: TelegramBot, chat_id: int) -> list[str]:
    return [m.text for m in bot.api.messages_to(chat_id)]


# --- 429 Too Many Requests -------------------------------------------------------------


async def test_429_pauses_sending_and_every_message_is_delivered_once(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    chats = range(2001, 2007)
    await add_people(sessions, org, chats)
    limited = 2
    answering = Answering(lambda chat, seen: 429 if len(answering.arrivals) < limited else None)
    bot.api.failures["sendMessage"] = answering

    ids = await enqueue(sessions, clock, {chat: f"Tin số {chat}" for chat in chats})
    bot.runtime.deliverer.wake()
    for chat in chats:
        await bot.user(chat, "x").wait_for(1)
    await settled(sessions)

    for chat in chats:
        assert texts_to(bot, chat) == [f"Tin số {chat}"]
    refused = [a for a in answering.arrivals if a.answered == 429]
    assert len(refused) == limited
    assert len(answering.arrivals) == len(chats) + limited  # each refused call tried once more
    t0 = refused[0].at
    # Calls already on their way when Telegram said stop arrive at once; then, for the
    # second Telegram asked, nothing at all.
    assert [a for a in answering.arrivals if t0 + 0.2 < a.at < t0 + 0.95] == []
    for first in refused:
        [again] = [a for a in answering.arrivals if a.chat_id == first.chat_id and a.at > first.at]
        assert again.answered == 200
        assert again.at >= t0 + 0.95
    # The waits happened inside one delivery attempt.
    for outbox_id in ids.values():
        message = await row(sessions, outbox_id)
        assert message.status == OutboxStatus.SENT
        assert message.attempts == 1
        assert message.last_error is None


async def test_429_pauses_every_send_of_the_channel(bot: TelegramBot) -> None:
    first, other = 2101, 2102
    answering = Answering(lambda chat, seen: 429 if chat == first and seen == 0 else None)
    bot.api.failures["sendMessage"] = answering
    channel = bot.runtime.telegram
    assert channel is not None

    pushing = asyncio.create_task(channel.push(str(first), Reply("Tin thứ nhất")))
    deadline = time.monotonic() + 5
    while channel.limiter.paused_for == 0:
        assert time.monotonic() < deadline, "the channel never paused"
        await asyncio.sleep(0.01)
    asked_at = time.monotonic()
    await channel.push(str(other), Reply("Tin thứ hai"))  # another chat, during the pause
    await pushing

    [refused] = [a for a in answering.arrivals if a.answered == 429]
    [second] = [a for a in answering.arrivals if a.chat_id == other]
    assert second.at - asked_at > 0.5  # it waited for the pause, though not refused itself
    assert second.at >= refused.at + 0.95
    assert texts_to(bot, first) == ["Tin thứ nhất"]
    assert texts_to(bot, other) == ["Tin thứ hai"]


async def test_persistent_429_keeps_the_message_for_later(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    await bot.runtime.deliverer.stop()
    stop = {"on": True}
    answering = Answering(lambda chat, seen: 429 if stop["on"] else None, retry_after=0.2)
    bot.api.failures["sendMessage"] = answering
    [outbox_id] = (await enqueue(sessions, clock, {LAN: "Nhắc hạn đăng ký"})).values()

    assert await bot.runtime.deliverer.drain() == 1
    assert len(answering.arrivals) == 4  # the first call and three more after each pause
    message = await row(sessions, outbox_id)
    assert message.status == OutboxStatus.PENDING
    assert message.attempts == 1
    assert message.last_error == "rate limited"
    assert message.not_before == clock.now() + backoff(0)
    assert texts_to(bot, LAN) == []

    stop["on"] = False
    clock.advance(backoff(0))
    assert await bot.runtime.deliverer.drain() == 1
    message = await row(sessions, outbox_id)
    assert message.status == OutboxStatus.SENT
    assert texts_to(bot, LAN) == ["Nhắc hạn đăng ký"]


# --- server errors ---------------------------------------------------------------------


async def test_502_is_retried_with_backoff_and_delivered_once(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    deliverer = bot.runtime.deliverer
    await deliverer.stop()  # drive it round by round
    answering = Answering(lambda chat, seen: 502 if seen < 2 else None)
    bot.api.failures["sendMessage"] = answering
    [outbox_id] = (await enqueue(sessions, clock, {LAN: "Nhắc hạn đăng ký"})).values()

    assert await deliverer.drain() == 1
    message = await row(sessions, outbox_id)
    assert message.status == OutboxStatus.PENDING
    assert message.attempts == 1
    assert message.last_error == "Bad Gateway"
    assert message.not_before == clock.now() + timedelta(seconds=5)
    assert message.claimed_by is None
    assert await deliverer.drain() == 0  # not before its time
    clock.advance(timedelta(seconds=4))
    assert await deliverer.drain() == 0

    clock.advance(timedelta(seconds=1))
    assert await deliverer.drain() == 1
    message = await row(sessions, outbox_id)
    assert message.status == OutboxStatus.PENDING
    assert message.attempts == 2
    assert message.not_before == clock.now() + timedelta(seconds=10)

    clock.advance(timedelta(seconds=10))
    assert await deliverer.drain() == 1
    message = await row(sessions, outbox_id)
    assert message.status == OutboxStatus.SENT
    assert message.attempts == 3
    assert message.sent_at == clock.now()
    assert message.last_error is None
    assert texts_to(bot, LAN) == ["Nhắc hạn đăng ký"]
    assert [a.answered for a in answering.arrivals] == [502, 502, 200]
    clock.advance(timedelta(minutes=10))
    assert await deliverer.drain() == 0


async def test_a_message_failing_every_time_ends_failed_and_is_reported(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    hung = 1002
    async with sessions() as session, session.begin():
        root = await session.get(Unit, org["LDLD-NT"])
        assert root is not None
        await add_campaign(session, root)
    await add_people(sessions, org, range(hung, hung + 1))
    deliverer = bot.runtime.deliverer
    await deliverer.stop()
    answering = Answering(lambda chat, seen: 502 if chat == hung else None)
    bot.api.failures["sendMessage"] = answering

    minh = bot.user(MINH, "Minh")
    await minh.send("/thongbao")
    await minh.press("Soạn thông báo mới")
    await minh.send("Họp công đoàn lúc 14:00")
    await minh.press("Chọn người nhận")
    await minh.press("Tất cả đoàn viên")
    await minh.press("Gửi ngay")

    assert await deliverer.drain() == 2
    assert texts_to(bot, LAN) == ["Họp công đoàn lúc 14:00"]
    for attempts in range(1, MAX_ATTEMPTS):
        async with sessions() as session:
            failing = await session.scalar(
                select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.PENDING)
            )
        assert failing is not None
        assert failing.attempts == attempts
        assert failing.not_before == clock.now() + backoff(attempts - 1)
        clock.advance(backoff(attempts - 1))
        assert await deliverer.drain() == 1
    async with sessions() as session:
        failed = await session.scalar(
            select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.FAILED)
        )
    assert failed is not None
    assert failed.attempts == MAX_ATTEMPTS
    assert failed.last_error == "Bad Gateway"
    assert len([a for a in answering.arrivals if a.chat_id == hung]) == MAX_ATTEMPTS
    clock.advance(timedelta(hours=1))
    assert await deliverer.drain() == 0  # given up

    assert await bot.runtime.scheduler.tick() == 1
    assert await deliverer.drain() == 1
    assert minh.last.text.startswith(
        "📊 Thông báo #1 đã gửi xong: 1 người đã nhận, 1 lỗi, 0 không liên lạc được."
    )
    await minh.send("/thongbao")
    await minh.press("Thông báo của tôi")
    shown = (await minh.press("#1"))[-1]
    assert "Đã gửi: 1\n" in shown.text
    assert "Lỗi: 1\n" in shown.text
    who = await minh.press("Ai chưa nhận được?")
    assert who[-1].text == (
        "Chưa nhận được thông báo #1:\n"
        "• Công nhân 1002 – Công đoàn cơ sở Công ty Cổ phần Muối Ninh Thuận (lỗi khi gửi)"
    )
    assert texts_to(bot, hung) == []


# --- long texts ------------------------------------------------------------------------


async def test_a_long_text_is_split_at_paragraphs_in_order(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    sentence = "Công đoàn cơ sở tổ chức phát động phong trào thi đua lao động giỏi."
    paragraphs: list[str] = []
    while len("\n\n".join(paragraphs)) < 9_000:
        paragraphs.append(f"Đoạn {len(paragraphs) + 1:02d}. " + " ".join([sentence] * 4))
    text = "\n\n".join(paragraphs)
    assert 9_000 <= len(text) < 9_400

    await enqueue(sessions, clock, {LAN: text})
    bot.runtime.deliverer.wake()
    await bot.user(LAN, "Lan").wait_for(3)
    await settled(sessions)
    parts = texts_to(bot, LAN)
    assert len(parts) == 3
    assert all(len(part) <= 4096 for part in parts)
    # Each part is whole paragraphs, and together they are the text, in order.
    assert [p for part in parts for p in part.split("\n\n")] == paragraphs
    assert re.sub(r"\s+", " ", " ".join(parts)) == re.sub(r"\s+", " ", text)


async def test_a_long_paragraph_after_a_heading_is_split_between_words(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    text = "Kế hoạch thi đua năm 2023\n\n" + " ".join(["phong trào thi đua yêu nước"] * 330)
    assert len(text) > 9_000

    await enqueue(sessions, clock, {LAN: text})
    bot.runtime.deliverer.wake()
    await bot.user(LAN, "Lan").wait_for(3)
    await settled(sessions)
    parts = texts_to(bot, LAN)
    assert all(len(part) <= 4096 for part in parts)
    assert " ".join(parts).split() == text.split()  # no word cut in two


async def test_a_long_text_failing_halfway_resumes_where_it_stopped(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    deliverer = bot.runtime.deliverer
    await deliverer.stop()
    paragraphs = [f"Mục {i:02d}. " + "Nội dung kế hoạch thi đua năm 2023. " * 8 for i in range(30)]
    paragraphs = [p.strip() for p in paragraphs]
    text = "\n\n".join(paragraphs)
    answering = Answering(lambda chat, seen: 502 if seen == 1 else None)  # the second part
    bot.api.failures["sendMessage"] = answering
    [outbox_id] = (await enqueue(sessions, clock, {LAN: text})).values()

    assert await deliverer.drain() == 1
    assert len(texts_to(bot, LAN)) == 1
    message = await row(sessions, outbox_id)
    assert message.status == OutboxStatus.PENDING
    assert message.attempts == 1
    clock.advance(backoff(0))
    assert await deliverer.drain() == 1
    parts = texts_to(bot, LAN)
    assert len(parts) == 3  # the first part was not sent again
    assert [p for part in parts for p in part.split("\n\n")] == paragraphs
    assert (await row(sessions, outbox_id)).status == OutboxStatus.SENT


# --- restarts and several senders ------------------------------------------------------


async def test_notifications_wait_in_the_outbox_until_the_bot_restarts(
    database_url: str, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    async with running_bot(database_url, clock) as first:
        await first.runtime.deliverer.stop()
        newcomer = first.user(1020, "Bình")
        await newcomer.send("/start")
        await newcomer.send("cong ty may")
        await newcomer.press("May Ninh Thuận")
        await newcomer.send("Võ Văn Bình")
        requested = await newcomer.press("Tôi đồng ý")
        assert "Đã gửi yêu cầu" in requested[-1].text
        async with sessions() as session:
            [queued] = (await session.scalars(select(OutboxMessage))).all()
            minh_account = await session.scalar(
                select(ChannelAccount).where(ChannelAccount.chat_id == str(MINH))
            )
        assert minh_account is not None
        assert queued.account_id == minh_account.id
        assert queued.status == OutboxStatus.PENDING
        assert queued.payload is not None
        assert "Võ Văn Bình" in queued.payload["text"]
        assert first.api.messages_to(MINH) == []

    async with running_bot(database_url, clock) as second:
        minh = second.user(MINH, "Minh")
        [prompt] = await minh.wait_for(1)
        assert "Võ Văn Bình" in prompt.text
        await settled(sessions)
        assert len(minh.inbox) == 1
        async with sessions() as session:
            [sent] = (await session.scalars(select(OutboxMessage))).all()
        assert sent.status == OutboxStatus.SENT
        assert sent.attempts == 1
        # The buttons of a message sent after the restart still work.
        decided = await minh.press("Duyệt", prompt)
        assert "Đã duyệt" in decided[-1].text


async def test_two_senders_never_send_the_same_message(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    chats = range(2201, 2221)
    await add_people(sessions, org, chats)
    await bot.runtime.deliverer.stop()
    channel = bot.runtime.telegram
    assert channel is not None
    senders = [
        Deliverer(bot.runtime.sessions, {"telegram": channel}, clock, concurrency=4)
        for _ in range(2)
    ]
    await enqueue(sessions, clock, {chat: f"Tin {chat}" for chat in chats})

    handled = await asyncio.gather(*(sender.drain() for sender in senders))
    assert sum(handled) == len(chats)
    for chat in chats:
        assert texts_to(bot, chat) == [f"Tin {chat}"]
    calls = [p for method, p in bot.api.calls if method == "sendMessage"]
    assert len(calls) == len(chats)


async def test_a_lapsed_claim_is_taken_over(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    deliverer = bot.runtime.deliverer
    await deliverer.stop()
    [outbox_id] = (await enqueue(sessions, clock, {LAN: "Nhắc hạn"})).values()
    async with sessions() as session, session.begin():
        message = await session.get(OutboxMessage, outbox_id)
        assert message is not None
        # Another process claimed it and died before recording anything.
        message.claimed_by = "other-host:4242:abcdef"
        message.claimed_until = clock.now() + timedelta(seconds=60)

    assert await deliverer.drain() == 0
    clock.advance(timedelta(seconds=60))
    assert await deliverer.drain() == 0  # the claim holds up to its very end
    clock.advance(timedelta(seconds=1))
    assert await deliverer.drain() == 1
    assert texts_to(bot, LAN) == ["Nhắc hạn"]
    message = await row(sessions, outbox_id)
    assert message.status == OutboxStatus.SENT
    assert message.claimed_by is None


async def test_a_message_whose_account_was_deleted_ends_failed_and_the_rest_go_out(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    chats = range(2251, 2254)
    await add_people(sessions, org, chats)
    await bot.runtime.deliverer.stop()
    ids = await enqueue(sessions, clock, {chat: f"Tin {chat}" for chat in chats})
    async with sessions() as session, session.begin():
        gone = await session.scalar(select(ChannelAccount).where(ChannelAccount.chat_id == "2252"))
        assert gone is not None
        await session.delete(gone)

    assert await bot.runtime.deliverer.drain() == 2
    assert texts_to(bot, 2251) == ["Tin 2251"]
    assert texts_to(bot, 2253) == ["Tin 2253"]
    message = await row(sessions, ids[2252])
    assert (message.status, message.last_error) == (OutboxStatus.FAILED, outbox.RECIPIENT_GONE)
    clock.advance(timedelta(minutes=10))
    assert await bot.runtime.deliverer.drain() == 0


class HeldChannel:
    """The real Telegram channel behind a gate: a sender that is alive but slow."""

    def __init__(self, real: Channel) -> None:
        self.real = real
        self.sending = asyncio.Event()
        self.gate = asyncio.Event()

    @property
    def traits(self) -> ChannelTraits:
        return self.real.traits

    async def push(self, chat_id: str, reply: Reply, *, skip_parts: int = 0) -> None:
        self.sending.set()
        await self.gate.wait()
        await self.real.push(chat_id, reply, skip_parts=skip_parts)


async def test_a_slow_sender_keeps_its_messages(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    """A sender alive but slow (429 pauses, a huge batch) must not lose its claims.

    Real time here, with a short lease: the claims must be kept alive while the batch is
    being sent, however that is done.
    """
    chats = range(2301, 2304)
    await add_people(sessions, org, chats)
    await bot.runtime.deliverer.stop()
    real = bot.runtime.telegram
    assert real is not None
    held = HeldChannel(real)
    lease = timedelta(seconds=0.6)
    slow = Deliverer(bot.runtime.sessions, {"telegram": held}, SystemClock(), lease=lease)
    other = Deliverer(bot.runtime.sessions, {"telegram": real}, SystemClock(), lease=lease)
    await enqueue(sessions, clock, {chat: f"Tin {chat}" for chat in chats})

    sending = asyncio.create_task(slow.drain())
    await asyncio.wait_for(held.sending.wait(), 5)
    # For more than twice the lease, the other sender keeps looking at the outbox.
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert await other.drain() == 0
        await asyncio.sleep(0.05)
    held.gate.set()
    assert await sending == len(chats)
    for chat in chats:
        assert texts_to(bot, chat) == [f"Tin {chat}"]


@pytest.mark.parametrize("blocked", [True, False])
async def test_chat_not_found_and_blocked_are_unreachable(
    bot: TelegramBot,
    org: dict[str, int],
    sessions: SessionFactory,
    clock: ManualClock,
    blocked: bool,
) -> None:
    await bot.runtime.deliverer.stop()
    if blocked:
        bot.api.blocked.add(LAN)
    else:
        bot.api.failures["sendMessage"] = lambda params: web.json_response(
            {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
            status=400,
        )
    [outbox_id] = (await enqueue(sessions, clock, {LAN: "Nhắc hạn"})).values()
    assert await bot.runtime.deliverer.drain() == 1
    message = await row(sessions, outbox_id)
    assert message.status == OutboxStatus.UNREACHABLE
    assert message.attempts == 1
    async with sessions() as session:
        account = await session.get(ChannelAccount, message.account_id)
    assert account is not None
    assert account.reachable is False
    clock.advance(timedelta(hours=1))
    assert await bot.runtime.deliverer.drain() == 0  # never tried again
