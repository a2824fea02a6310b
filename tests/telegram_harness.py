"""Run the real bot (python-telegram-bot Application, aiohttp server) against a fake Bot API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bot.app import BotRuntime
from bot.settings import Settings, load_settings
from bot.web import TELEGRAM_SECRET_HEADER, TELEGRAM_WEBHOOK_PATH
from storage.clock import Clock
from tests.factories import TgUser, callback_update, message_update
from tests.fakes.telegram_api import FakeTelegramAPI, SentMessage

TOKEN = "123456789:TEST-token_for-the-fake-api"
SECRET = "webhook-secret-for-tests"


def bot_settings(
    database_url: str, api: FakeTelegramAPI, *, webhook: bool = True, **extra: Any
) -> Settings:
    """Settings pointing the bot at the fake API, with the webhook on a free local port."""
    overrides: dict[str, Any] = {
        "database_url": database_url,
        "telegram_bot_token": TOKEN,
        "telegram_api_base_url": api.base_url,
        "http_host": "127.0.0.1",
        "http_port": 0,
        # Tests type at machine speed: flood control only where a test asks for it.
        "flood_rate": 1000.0,
        "flood_burst": 1000,
        "_env_file": None,
    }
    if webhook:
        overrides["telegram_webhook_url"] = "https://thidua.example/telegram/webhook"
        overrides["telegram_webhook_secret"] = SECRET
    return load_settings(**{**overrides, **extra})


@dataclass
class TelegramBot:
    """The bot under test, and the means to talk to it as Telegram would."""

    api: FakeTelegramAPI
    runtime: BotRuntime
    http: aiohttp.ClientSession
    _handled: dict[str, asyncio.Event] = field(default_factory=dict)

    def _on_handled(self, key: str) -> None:
        self._handled.setdefault(key, asyncio.Event()).set()

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.runtime.http_port}{TELEGRAM_WEBHOOK_PATH}"

    async def post(self, update: dict[str, Any] | bytes, *, secret: str | None = SECRET) -> int:
        """POST an update to the webhook as Telegram does; return the HTTP status."""
        headers = {TELEGRAM_SECRET_HEADER: secret} if secret is not None else {}
        if isinstance(update, bytes):
            response = await self.http.post(self.webhook_url, data=update, headers=headers)
        else:
            response = await self.http.post(self.webhook_url, json=update, headers=headers)
        async with response:
            return response.status

    async def deliver(self, update: dict[str, Any]) -> None:
        """Deliver an update through the webhook and wait until the bot has answered it."""
        key = str(update["update_id"])
        event = self._handled.setdefault(key, asyncio.Event())
        status = await self.post(update)
        assert status == 200, f"webhook answered {status}"
        await asyncio.wait_for(event.wait(), 10)

    def user(self, user_id: int, first_name: str, last_name: str | None = None) -> TelegramUser:
        return TelegramUser(self, TgUser(user_id, first_name, last_name))


@dataclass
class TelegramUser:
    """A person on Telegram chatting with the bot."""

    bot: TelegramBot
    tg: TgUser

    @property
    def inbox(self) -> list[SentMessage]:
        return self.bot.api.messages_to(self.tg.id)

    @property
    def last(self) -> SentMessage:
        return self.inbox[-1]

    async def send(self, text: str) -> list[SentMessage]:
        """Send a text and return the bot's answers to it."""
        before = len(self.inbox)
        await self.bot.deliver(message_update(self.tg, text))
        return self.inbox[before:]

    async def send_update(self, update: dict[str, Any]) -> list[SentMessage]:
        """Send a prepared update (a photo, a document) and return the bot's answers to it."""
        before = len(self.inbox)
        await self.bot.deliver(update)
        return self.inbox[before:]

    async def press(self, label_part: str, message: SentMessage | None = None) -> list[SentMessage]:
        """Press the button whose label contains `label_part` on a message (the last by default)."""
        message = message or self.last_with_buttons()
        data = message.callback_data(label_part)
        return await self.press_data(data, message.message_id)

    async def press_data(self, data: str, message_id: int = 1) -> list[SentMessage]:
        """Send a button press with arbitrary callback data, as a forger could."""
        before = len(self.inbox)
        await self.bot.deliver(callback_update(self.tg, data, message_id=message_id))
        return self.inbox[before:]

    def last_with_buttons(self) -> SentMessage:
        for message in reversed(self.inbox):
            if message.buttons:
                return message
        raise AssertionError("no message with buttons")

    async def wait_for(self, count: int) -> list[SentMessage]:
        """Wait until this user has received `count` messages in all (pushed ones included)."""
        return await self.bot.api.wait_for_messages(self.tg.id, count)


@asynccontextmanager
async def running_bot(
    database_url: str, clock: Clock, *, webhook: bool = True, **settings: Any
) -> AsyncIterator[TelegramBot]:
    """Start the fake API and the real bot (`settings` override ours); stop both afterwards."""
    api = FakeTelegramAPI(TOKEN)
    await api.start()
    runtime = BotRuntime(bot_settings(database_url, api, webhook=webhook, **settings), clock)
    try:
        # The tests move the clock and tick the scheduler themselves.
        await runtime.start(schedule=False)
        assert runtime.telegram is not None
        async with aiohttp.ClientSession() as http:
            harness = TelegramBot(api, runtime, http)
            runtime.telegram.observe(harness._on_handled)
            yield harness
    finally:
        await runtime.stop()
        await api.stop()
