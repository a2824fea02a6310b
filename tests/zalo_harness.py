"""Run the real bot with its Zalo channels (and Telegram) against fake Zalo and Telegram servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bot.app import BotRuntime
from bot.settings import Settings, load_settings
from bot.web import ZALO_OA_WEBHOOK_PATH, ZALO_SECRET_HEADER, ZALO_WEBHOOK_PATH
from storage.clock import Clock
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.zalo_api import FakeZaloBotAPI, FakeZaloOA, IssuedPair, ZaloBotUser, ZaloSent
from tests.telegram_harness import SECRET as TELEGRAM_SECRET
from tests.telegram_harness import TOKEN as TELEGRAM_TOKEN
from tests.telegram_harness import TelegramBot

ZALO_TOKEN = "738499441022218443:ZaloTestToken_for-the-fake-api"
ZALO_SECRET = "zalo-webhook-secret-for-tests"


def zalo_settings(
    database_url: str,
    *,
    telegram: FakeTelegramAPI | None,
    zalo: FakeZaloBotAPI | None,
    oa: FakeZaloOA | None,
    pair: IssuedPair | None,
    webhook: bool = True,
) -> Settings:
    overrides: dict[str, Any] = {
        "database_url": database_url,
        "http_host": "127.0.0.1",
        "http_port": 0,
        # Tests type at machine speed: flood control only where a test asks for it.
        "flood_rate": 1000.0,
        "flood_burst": 1000,
        "_env_file": None,
    }
    if telegram is not None:
        overrides |= {
            "telegram_bot_token": TELEGRAM_TOKEN,
            "telegram_api_base_url": telegram.base_url,
            "telegram_webhook_url": "https://thidua.example/telegram/webhook",
            "telegram_webhook_secret": TELEGRAM_SECRET,
        }
    if zalo is not None:
        overrides |= {"zalo_bot_token": ZALO_TOKEN, "zalo_bot_api_base_url": zalo.base_url}
        if webhook:
            overrides |= {
                "zalo_webhook_url": "https://thidua.example/zalo/webhook",
                "zalo_webhook_secret": ZALO_SECRET,
            }
    if oa is not None and pair is not None:
        overrides |= {
            "zalo_oa_app_id": oa.app_id,
            "zalo_oa_secret_key": oa.oa_secret_key,
            "zalo_oa_app_secret_key": oa.app_secret_key,
            "zalo_oa_access_token": pair.access_token,
            "zalo_oa_refresh_token": pair.refresh_token,
            "zalo_oa_api_base_url": oa.base_url,
            "zalo_oa_oauth_base_url": oa.base_url,
        }
    return load_settings(**overrides)


@dataclass
class ZaloBot:
    """The bot under test, and the means to talk to it as Zalo (and Telegram) would."""

    runtime: BotRuntime
    http: aiohttp.ClientSession
    zalo: FakeZaloBotAPI
    oa: FakeZaloOA
    telegram_api: FakeTelegramAPI
    webhook: bool
    _handled: dict[str, asyncio.Event] = field(default_factory=dict)

    def _on_handled(self, key: str) -> None:
        self._handled.setdefault(key, asyncio.Event()).set()

    async def wait_handled(self, key: str) -> None:
        event = self._handled.setdefault(key, asyncio.Event())
        await asyncio.wait_for(event.wait(), 10)

    @property
    def telegram(self) -> TelegramBot:
        """The Telegram side, with its own harness (users, presses)."""
        harness = TelegramBot(self.telegram_api, self.runtime, self.http)
        harness._handled = self._handled
        return harness

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.runtime.http_port}{path}"

    # --- the Zalo bot ---------------------------------------------------------------------

    async def post_zalo(
        self, body: dict[str, Any] | bytes, *, secret: str | None = ZALO_SECRET
    ) -> int:
        """POST a body to the Zalo bot webhook as Zalo does; return the HTTP status."""
        headers = {ZALO_SECRET_HEADER: secret} if secret is not None else {}
        data = body if isinstance(body, bytes) else None
        payload = None if isinstance(body, bytes) else body
        async with self.http.post(
            self.url(ZALO_WEBHOOK_PATH), data=data, json=payload, headers=headers
        ) as response:
            return response.status

    def zalo_user(self, user_id: str, name: str) -> ZaloUserHarness:
        return ZaloUserHarness(self, ZaloBotUser(user_id, name))

    # --- the Official Account ---------------------------------------------------------------

    async def post_oa(self, body: bytes, headers: dict[str, str]) -> int:
        async with self.http.post(
            self.url(ZALO_OA_WEBHOOK_PATH), data=body, headers=headers
        ) as response:
            return response.status

    def oa_user(self, user_id: str) -> OAUserHarness:
        return OAUserHarness(self, user_id)


@dataclass
class ZaloUserHarness:
    """A person on the Zalo bot."""

    bot: ZaloBot
    user: ZaloBotUser
    wrap: bool = True  # webhook bodies as {"ok": true, "result": ...}

    @property
    def chat_id(self) -> str:
        return self.user.id

    @property
    def inbox(self) -> list[ZaloSent]:
        return self.bot.zalo.messages_to(self.user.id)

    @property
    def last(self) -> ZaloSent:
        return self.inbox[-1]

    async def deliver(self, update: dict[str, Any]) -> list[ZaloSent]:
        """Deliver an update (webhook or long poll) and return the bot's answers to it."""
        before = len(self.inbox)
        key = update["message"]["message_id"]
        if self.bot.webhook:
            body = {"ok": True, "result": update} if self.wrap else update
            status = await self.bot.post_zalo(body)
            assert status == 200, f"Zalo webhook answered {status}"
        else:
            await self.bot.zalo.queue_update(update)
        await self.bot.wait_handled(key)
        return self.inbox[before:]

    async def send(self, text: str) -> list[ZaloSent]:
        return await self.deliver(self.user.update(text))

    async def wait_for(self, count: int) -> list[ZaloSent]:
        return await self.bot.zalo.wait_for_messages(self.user.id, count)


@dataclass
class OAUserHarness:
    """A person writing to the union's Official Account."""

    bot: ZaloBot
    user_id: str

    @property
    def chat_id(self) -> str:
        return self.user_id

    @property
    def inbox(self) -> list[ZaloSent]:
        return self.bot.oa.messages_to(self.user_id)

    async def deliver(self, event: dict[str, Any]) -> list[ZaloSent]:
        """Send a signed event to the OA webhook and return the bot's answers to it."""
        before = len(self.inbox)
        body, headers = self.bot.oa.signed(event)
        status = await self.bot.post_oa(body, headers)
        assert status == 200, f"OA webhook answered {status}"
        if event["event_name"] in ("follow", "unfollow"):
            key = f"{event['event_name']}:{self.user_id}:{event['timestamp']}"
        else:
            key = event["message"]["msg_id"]
        await self.bot.wait_handled(key)
        return self.inbox[before:]

    async def send(self, text: str) -> list[ZaloSent]:
        return await self.deliver(self.bot.oa.event(self.user_id, text=text))

    async def follow(self) -> list[ZaloSent]:
        return await self.deliver(self.bot.oa.event(self.user_id, "follow"))

    async def wait_for(self, count: int) -> list[ZaloSent]:
        return await self.bot.oa.wait_for_messages(self.user_id, count)


@asynccontextmanager
async def running_zalo_bot(
    database_url: str,
    clock: Clock,
    *,
    webhook: bool = True,
    oa: FakeZaloOA | None = None,
    **settings: Any,
) -> AsyncIterator[ZaloBot]:
    """Start the fakes and the real bot with Telegram, the Zalo bot and the OA; stop them all.

    `settings` override ours, e.g. `flood_rate=10.0`.
    """
    telegram_api = FakeTelegramAPI(TELEGRAM_TOKEN)
    zalo = FakeZaloBotAPI(ZALO_TOKEN)
    oa = oa or FakeZaloOA()
    for fake in (telegram_api, zalo, oa):
        await fake.start()
    pair = oa.issue()
    configured = zalo_settings(
        database_url, telegram=telegram_api, zalo=zalo, oa=oa, pair=pair, webhook=webhook
    ).model_copy(update=settings)
    runtime = BotRuntime(configured, clock)
    try:
        await runtime.start(schedule=False)
        assert runtime.telegram is not None
        assert runtime.zalo is not None
        assert runtime.zalo_oa is not None
        async with aiohttp.ClientSession() as http:
            harness = ZaloBot(runtime, http, zalo, oa, telegram_api, webhook)
            runtime.telegram.observe(harness._on_handled)
            runtime.zalo.observe(harness._on_handled)
            runtime.zalo_oa.observe(harness._on_handled)
            yield harness
    finally:
        await runtime.stop()
        for fake in (telegram_api, zalo, oa):
            await fake.stop()
