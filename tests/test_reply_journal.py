"""Answers survive a kill: written to the outbox with the step, sent after a restart, once.

The real bot runs as a child process (`python -m bot run`, webhook mode) against a fake Bot API
in this process. One member's answer hangs at Telegram's side (the send is in flight, the step
committed) when the bot is killed with SIGKILL: after the restart that answer still reaches
them, once. Another member's answer, sent before the kill, is not sent again.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from bot.web import TELEGRAM_SECRET_HEADER, TELEGRAM_WEBHOOK_PATH
from storage.engine import SessionFactory, create_engine, create_session_factory
from storage.models import OutboxMessage, OutboxStatus, Unit
from tests.bot_process import BotProcess, bot_env
from tests.builders import add_campaign, add_member, ninh_thuan_tree
from tests.factories import TgUser, message_update
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.telegram_harness import SECRET, TOKEN

pytestmark = pytest.mark.fault

LAN = TgUser(7_400_001, "Lan")
HOA = TgUser(7_400_002, "Hoa")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _seed(sessions: SessionFactory) -> None:
    async with sessions() as session, session.begin():
        tree = await ninh_thuan_tree(session)
        await add_campaign(session, tree["LDLD-NT"])
        unit = await session.get(Unit, tree["CDCS-MAYNT"].id)
        assert unit is not None
        for user in (LAN, HOA):
            await add_member(session, unit, f"Đoàn viên {user.id}", telegram_id=user.id)


async def _outbox(sessions: SessionFactory) -> list[tuple[OutboxStatus, str | None]]:
    async with sessions() as session:
        rows = await session.execute(
            select(OutboxMessage.status, OutboxMessage.claimed_by).order_by(OutboxMessage.id)
        )
        return [(status, claimed_by) for status, claimed_by in rows.all()]


async def _until(check: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not within {within} s")


async def test_an_answer_whose_process_died_after_the_step_is_sent_after_restart_once(
    database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    await _seed(sessions)
    api = FakeTelegramAPI(TOKEN)
    await api.start()
    port = _free_port()
    bot = BotProcess(bot_env(database_url, api.base_url, TOKEN, SECRET, http_port=port), tmp_path)
    url = f"http://127.0.0.1:{port}{TELEGRAM_WEBHOOK_PATH}"

    async def post(update: dict[str, object]) -> None:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):  # the child may still be starting
                try:
                    async with http.post(
                        url, json=update, headers={TELEGRAM_SECRET_HEADER: SECRET}
                    ) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("the webhook never acknowledged the update")

    def texts(user: TgUser) -> list[str]:
        return [m.text for m in api.messages_to(user.id)]

    try:
        await bot.start()
        # Hoa is answered and the answer finished before the kill.
        await post(message_update(HOA, "/help"))

        async def hoa_answered() -> bool:
            return bool(texts(HOA)) and not await _outbox(sessions)

        await _until(hoa_answered, 15, "Hoa's answer sent and finished")
        expected = texts(HOA)

        # Lan's answer hangs at Telegram's side: the step is committed, the send in flight.
        api.stalls[LAN.id] = 600.0

        async def lan_sending() -> bool:
            return any(
                method == "sendMessage" and str(params.get("chat_id")) == str(LAN.id)
                for method, params in api.calls
            )

        await post(message_update(LAN, "/help"))
        await _until(lan_sending, 15, "the answer to Lan being sent")
        await bot.kill()
        assert not texts(LAN)
        journaled = await _outbox(sessions)
        assert len(journaled) == len(expected)
        assert all(status == OutboxStatus.PENDING and by for status, by in journaled)

        del api.stalls[LAN.id]
        await bot.start()

        async def lan_answered() -> bool:
            rows = await _outbox(sessions)
            return len(texts(LAN)) >= len(expected) and all(
                status == OutboxStatus.SENT for status, _ in rows
            )

        # Sent by the delivery engine once the dead process's claims lapsed.
        await _until(lan_answered, 40, "Lan's answer after the restart")
        # Nothing is pending any more, so nothing can be sent again: these counts are final.
        assert texts(LAN) == expected
        assert texts(HOA) == expected
    finally:
        await bot.stop()
        await api.stop()
        await engine.dispose()
