"""Flood control: one person sending 40 messages a second is slowed down, nobody else is."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from storage.clock import ManualClock
from tests.factories import message_update
from tests.telegram_harness import running_bot
from tests.zalo_harness import running_zalo_bot

# Paced in real time: kept off a CPU shared with the heavy tests (see tests/conftest.py).
pytestmark = pytest.mark.timing

# Fast enough for a short test, slow enough that 40 messages take seconds: 8 at once, then
# 5 a second (the bot's defaults are 8, then 1 a second).
RATE, BURST = 5.0, 8
FLOOD: dict[str, Any] = {"flood_rate": RATE, "flood_burst": BURST}
MESSAGES = 40
# Someone else writes after the flooder's 25th message, when 17 of them wait their turn.
OTHER_WRITES_AFTER = 25
NOTICE = "Bạn gửi nhanh quá"


def _command(n: int) -> str:
    """The flooder's n-th message: an unknown command, answered with its own name."""
    return f"/lenh{n}"


def _assert_not_queued_behind(flooder_so_far: int, elapsed: float) -> None:
    """Check the flooder's answers by the time another person was answered.

    Queued behind the flooder, the other would come after all its earlier messages and the
    notice. Not queued, the flooder has had its burst, the notice and its paced answers so far.
    """
    assert flooder_so_far < OTHER_WRITES_AFTER + 1, flooder_so_far
    paced = BURST + 1 + int(RATE * elapsed) + 1
    assert flooder_so_far <= paced, (flooder_so_far, elapsed)


def _assert_whole_flood_answered(texts: list[str], finished: float) -> None:
    """Check every flooded message was answered, in order, told once, at the flood rate."""
    assert sum(NOTICE in t for t in texts) == 1
    assert _answered_commands(texts) == list(range(1, MESSAGES + 1))
    # Slowed: 32 messages beyond the burst at 5 a second take about 6 s.
    assert finished >= (MESSAGES - BURST) / RATE * 0.8, finished


def _answered_commands(texts: list[str]) -> list[int]:
    found = []
    for text in texts:
        for n in range(MESSAGES, 0, -1):
            if _command(n) in text:
                found.append(n)
                break
    return found


async def test_a_telegram_flooder_is_slowed_and_told_once_while_others_are_answered_at_once(
    database_url: str, clock: ManualClock
) -> None:
    # Four update slots: a flooder waiting in one of them would soon hold them all.
    async with running_bot(database_url, clock, **FLOOD, telegram_concurrent_updates=4) as bot:
        flooder, other = bot.user(7001, "Tuấn"), bot.user(7002, "Lan")
        started = time.monotonic()
        for n in range(1, MESSAGES + 1):
            status = await bot.post(message_update(flooder.tg, _command(n)))
            assert status == 200  # the webhook answers at once, slowed or not
            if n == OTHER_WRITES_AFTER:
                # Halfway through the flood, someone else writes.
                await other.send("xin chào")
                flooder_so_far, elapsed = len(flooder.inbox), time.monotonic() - started
        posting = time.monotonic() - started

        assert other.inbox, "the other user got no answer"
        assert "Bạn chưa tham gia công đoàn" in other.inbox[0].text
        # Nobody waits for the flooder's queue.
        _assert_not_queued_behind(flooder_so_far, elapsed)

        everything = await bot.api.wait_for_messages(flooder.tg.id, MESSAGES + 1, within=30)
        finished = time.monotonic() - started
        _assert_whole_flood_answered([m.text for m in everything], finished)
        print(f"\nflood (telegram): posted in {posting:.2f} s, answered in {finished:.2f} s")


async def test_a_flooder_over_long_polling_does_not_hold_others_up(
    database_url: str, clock: ManualClock
) -> None:
    # Long polling hands updates to python-telegram-bot's four handler slots. At one message
    # a second beyond the burst, the other person would wait 17 s behind the flooder.
    async with running_bot(
        database_url,
        clock,
        webhook=False,
        flood_rate=1.0,
        flood_burst=BURST,
        telegram_concurrent_updates=4,
    ) as bot:
        flooder, other = bot.user(7004, "Tuấn"), bot.user(7005, "Lan")
        for n in range(1, OTHER_WRITES_AFTER + 1):
            await bot.api.queue_update(message_update(flooder.tg, _command(n)))
        await bot.api.queue_update(message_update(other.tg, "xin chào"))
        answer = await bot.api.wait_for_messages(other.tg.id, 1, within=8)
        assert "Bạn chưa tham gia công đoàn" in answer[0].text
        assert len(flooder.inbox) < OTHER_WRITES_AFTER  # the flooder still waits its turn


async def test_stopping_does_not_wait_for_a_flood_whose_rest_is_answered_after_restart(
    database_url: str, clock: ManualClock
) -> None:
    slow = {"flood_rate": 0.5, "flood_burst": 2}  # twelve messages: about 20 s of waiting
    async with running_bot(database_url, clock, webhook=False, **slow) as bot:
        flooder = bot.user(7006, "Tuấn")
        for n in range(1, 13):
            await bot.api.queue_update(message_update(flooder.tg, _command(n)))
        await bot.api.wait_for_messages(flooder.tg.id, 2, within=10)
        stopping = time.monotonic()
    stopped_in = time.monotonic() - stopping
    assert stopped_in < 5, stopped_in  # not the 20 s the waiting messages would take
    answered = _answered_commands([m.text for m in bot.api.messages_to(flooder.tg.id)])

    async with running_bot(database_url, clock, webhook=False) as bot:  # polling again
        rest = 12 - len(answered)
        again = await bot.api.wait_for_messages(flooder.tg.id, rest, within=10)
    assert sorted(answered + _answered_commands([m.text for m in again])) == list(range(1, 13))


async def test_a_zalo_flooder_is_slowed_and_told_once_while_others_are_answered_at_once(
    database_url: str, clock: ManualClock
) -> None:
    async with running_zalo_bot(database_url, clock, **FLOOD) as bot:
        flooder, other = bot.zalo_user("zf-7001", "Tuấn"), bot.zalo_user("zf-7002", "Lan")
        started = time.monotonic()
        # More than the channel's 16 workers: a flooder waiting in them would block others.
        for n in range(1, MESSAGES + 1):
            status = await bot.post_zalo(flooder.user.update(_command(n)))
            assert status == 200
            if n == OTHER_WRITES_AFTER:
                await other.send("xin chào")
                flooder_so_far, elapsed = len(flooder.inbox), time.monotonic() - started
        assert other.inbox, "the other user got no answer"
        assert "Bạn chưa tham gia công đoàn" in other.inbox[0].text
        _assert_not_queued_behind(flooder_so_far, elapsed)

        everything = await bot.zalo.wait_for_messages(flooder.user.id, MESSAGES + 1, within=30)
        finished = time.monotonic() - started
        _assert_whole_flood_answered([m.text for m in everything], finished)
        print(f"\nflood (zalo): answered in {finished:.2f} s")


async def test_a_flooder_is_told_at_most_once_a_minute(
    database_url: str, clock: ManualClock
) -> None:
    # Four update slots: a flooder waiting in one of them would soon hold them all.
    async with running_bot(database_url, clock, **FLOOD, telegram_concurrent_updates=4) as bot:
        flooder = bot.user(7003, "Hà")
        sent = 0

        async def flood(notices: int) -> list[str]:
            """Send 12 more messages at once; return all answers once `notices` were told."""
            nonlocal sent
            for _ in range(12):
                sent += 1
                assert await bot.post(message_update(flooder.tg, _command(sent))) == 200
            expected = sent + notices + sent // 12 - 1  # and an answer to each "/lenhcuoi"
            answers = await bot.api.wait_for_messages(flooder.tg.id, expected, within=10)
            await bot.deliver(message_update(flooder.tg, "/lenhcuoi"))  # everything before: done
            return [m.text for m in answers]

        first = await flood(1)
        assert sum(NOTICE in t for t in first) == 1
        # Still flooding, 30 seconds later: slowed again, not told again.
        clock.advance(timedelta(seconds=30))
        second = await flood(1)
        assert sum(NOTICE in t for t in second) == 1
        # A minute after the notice, a new flood is told again.
        clock.advance(timedelta(seconds=31))
        third = await flood(2)
        assert sum(NOTICE in t for t in third) == 2
        assert _answered_commands(third) == list(range(1, sent + 1))
