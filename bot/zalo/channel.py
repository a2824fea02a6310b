"""The Zalo Bot API channel: webhook or long polling in, plain numbered texts out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from bot.channels import DeliveryError, RetryLaterError, UnreachableError
from bot.ratelimit import ChannelLimiter, Limits
from bot.zalo import convert
from bot.zalo.client import ZaloApiError, ZaloBotClient, ZaloNetworkError
from bot.zalo.inbound import ZaloChannelBase
from handlers.dispatcher import Dispatcher
from handlers.i18n import Catalogue
from handlers.types import ChannelTraits, Reply
from storage.clock import Clock
from storage.engine import DatabaseUnavailableError, SessionFactory

log = logging.getLogger(__name__)

CHANNEL = convert.BOT_CHANNEL
TRAITS = ChannelTraits(name=CHANNEL, buttons=False, text_limit=convert.TEXT_LIMIT)
# Zalo publishes no per-second limit for bots; this stays well under what its servers take,
# one chat at a time as on Telegram. A 429 ("quota exceeded") pauses every send.
LIMITS = Limits(per_second=20, chat_per_second=1.0, chat_burst=3)
_QUOTA_PAUSE = 60.0
_POLL_TIMEOUT = 30


class ZaloChannel(ZaloChannelBase):
    """Bridge between the Zalo Bot API and the neutral dispatcher."""

    traits = TRAITS

    def __init__(
        self,
        client: ZaloBotClient,
        dispatcher: Dispatcher,
        sessions: SessionFactory,
        clock: Clock,
        texts: Catalogue,
        on_queued: Callable[[], None],
        limiter: ChannelLimiter | None = None,
        *,
        poll_timeout: int = _POLL_TIMEOUT,
    ) -> None:
        super().__init__(dispatcher, sessions, clock, texts, on_queued)
        self.client = client
        self.limiter = limiter or ChannelLimiter(LIMITS)
        self._poll_timeout = poll_timeout
        self._poller: asyncio.Task[None] | None = None
        self.bot_info: dict[str, Any] = {}

    async def initialize(self) -> None:
        """Check the token and learn who the bot is (getMe)."""
        await self.client.start()
        self.bot_info = await self.client.get_me()

    async def receive_webhook(self, payload: dict[str, Any]) -> None:
        """Store a webhook update, then queue it; raise MalformedUpdateError if it has no key."""
        update = convert.unwrap_bot_update(payload)
        await self.store_and_queue(convert.bot_update_key(update), update)

    # --- long polling -----------------------------------------------------------------------

    def start_polling(self) -> None:
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name="zalo-polling")

    async def stop_polling(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def _poll(self) -> None:
        """Ask for updates one at a time; 408 means nothing arrived, and we ask again."""
        failures = 0
        while True:
            try:
                updates = await self.client.get_updates(self._poll_timeout)
            except (ZaloApiError, ZaloNetworkError) as error:
                failures += 1
                wait = min(30.0, 2.0**failures)
                log.warning("Zalo getUpdates failed (%s); retrying in %.0f s", error, wait)
                await asyncio.sleep(wait)
                continue
            failures = 0
            for payload in updates:
                try:
                    update = convert.unwrap_bot_update(payload)
                except convert.MalformedUpdateError:
                    log.warning("Zalo sent an update without a message id; left aside")
                    continue
                await self._store_through_outages(convert.bot_update_key(update), update)

    async def _store_through_outages(self, key: str, update: dict[str, Any]) -> None:
        """Store a polled update, waiting for the database if it is away.

        getUpdates has no offset: an update Zalo handed over is never sent again, so it is
        kept in memory until it can be stored rather than dropped.
        """
        while True:
            try:
                await self.store_and_queue(key, update)
                return
            except DatabaseUnavailableError:
                await self.outage.recovered()

    # --- answering and pushing ------------------------------------------------------------

    def _event(self, payload: dict[str, Any]) -> convert.ZaloEvent | None:
        return convert.bot_event(payload)

    async def _typing(self, chat_id: str) -> None:
        with contextlib.suppress(ZaloApiError, ZaloNetworkError):
            await self.client.send_chat_action(chat_id, "typing")

    async def _send(self, chat_id: str, reply: Reply, *, pushed: bool, skip_parts: int) -> None:
        """Send the text's parts, then the pictures, one call each; resume after `skip_parts`."""
        calls = convert.calls(reply, self._texts)
        for index, (kind, value) in enumerate(calls):
            if index < skip_parts:
                continue
            await self.limiter.acquire(chat_id, per_chat=pushed)
            try:
                if kind == "photo":
                    await self.client.send_photo(chat_id, value)
                else:
                    await self.client.send_message(chat_id, value)
            except (ZaloApiError, ZaloNetworkError) as error:
                translated = self._translate(error)
                translated.parts_done = index
                raise translated from None

    def _translate(self, error: ZaloApiError | ZaloNetworkError) -> DeliveryError:
        """Say what a Bot API error means for delivery: try later, or this chat is gone."""
        if isinstance(error, ZaloNetworkError):
            return RetryLaterError(str(error))
        if error.code == 429:
            self.limiter.pause(_QUOTA_PAUSE)
            return RetryLaterError(str(error), _QUOTA_PAUSE)
        text = error.description.lower()
        if error.code in (400, 404) and ("chat" in text or "user" in text):
            return UnreachableError(str(error))
        if error.code >= 500:
            return RetryLaterError(str(error))
        return RetryLaterError(str(error), 60.0)
