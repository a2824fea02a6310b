"""The Zalo Official Account channel (Open API v3): signed webhook in, consultation messages out.

Consultation ("tư vấn") messages are the ones an OA may send for free to someone who wrote to
it, and only within 7 days of their last message: the channel declares that window, and the
delivery engine does not push past it (the message goes to the member's other messenger, or
is reported as outside the window).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp

from bot.channels import DeliveryError, OutsideWindowError, RetryLaterError, UnreachableError
from bot.ratelimit import ChannelLimiter, Limits
from bot.zalo import convert
from bot.zalo.inbound import ZaloChannelBase
from bot.zalo.tokens import OATokenError, OATokens
from handlers.dispatcher import Dispatcher
from handlers.i18n import Catalogue
from handlers.types import ChannelTraits, Reply
from storage import accounts
from storage.clock import Clock
from storage.engine import SessionFactory

log = logging.getLogger(__name__)

CHANNEL = convert.OA_CHANNEL
TRAITS = ChannelTraits(name=CHANNEL, buttons=False, text_limit=convert.TEXT_LIMIT)
MESSAGE_PATH = "/v3.0/oa/message/cs"
# The Open API takes a few tens of requests a second per app; stay well below.
LIMITS = Limits(per_second=10, chat_per_second=1.0, chat_burst=3)

# Error codes of the Open API ("error" in the answer; 0 is success).
TOKEN_ERRORS = frozenset({-216, -220})  # access token invalid, expired
WINDOW_ERRORS = frozenset({-230, -232})  # no interaction in the last 7 days
GONE_ERRORS = frozenset({-213, -227, -244})  # not following, inactive, restricted the OA
RATE_ERRORS = frozenset({-32})
QUOTA_ERRORS = frozenset({-211, -218})
_QUOTA_WAIT = 3600.0
# How often the token keeper looks whether the access token is due for a refresh.
_KEEP_EVERY = 15 * 60.0

_TIMESTAMP = re.compile(rb'"timestamp"\s*:\s*"?(\d{1,20})"?')


def signature(app_id: str, body: bytes, timestamp: str, secret_key: str) -> str:
    """The X-ZEvent-Signature of a webhook call: mac= SHA-256 of app id, body, time, key."""
    data = app_id.encode() + body + timestamp.encode() + secret_key.encode()
    return "mac=" + hashlib.sha256(data).hexdigest()


def signature_valid(
    supplied: str | None,
    *,
    app_id: str,
    body: bytes,
    secret_key: str,
    timestamp_header: str | None = None,
) -> bool:
    """Check a webhook call's signature in constant time, before its body is parsed.

    The timestamp signed is the event's own `timestamp` field (read from the raw bytes, not
    parsed), or a `timestamp` header where a proxy moved it there.
    """
    if not supplied:
        return False
    given = supplied.strip()
    if not given.startswith("mac="):
        given = "mac=" + given
    candidates = [m.group(1).decode() for m in _TIMESTAMP.finditer(body[:4096])][:3]
    if timestamp_header and timestamp_header.isdigit():
        candidates.insert(0, timestamp_header)
    matched = False
    for timestamp in candidates:
        expected = signature(app_id, body, timestamp, secret_key)
        matched |= hmac.compare_digest(given.encode(), expected.encode())
    return matched


class ZaloOAError(Exception):
    """The Open API refused a call: `code` is its (negative) error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"Zalo OA error {code}: {message}")
        self.code = code


class ZaloOAClient:
    """Send consultation messages, with a token refreshed when Zalo says it has expired."""

    def __init__(self, api_base_url: str, tokens: OATokens, *, timeout: float = 15.0) -> None:
        self._url = f"{api_base_url.rstrip('/')}{MESSAGE_PATH}"
        self.tokens = tokens
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.tokens.close()

    async def send_text(self, user_id: str, text: str) -> None:
        await self._send({"recipient": {"user_id": user_id}, "message": {"text": text}})

    async def send_image(self, user_id: str, url: str) -> None:
        media = {"media_type": "image", "url": url}
        attachment = {
            "type": "template",
            "payload": {"template_type": "media", "elements": [media]},
        }
        await self._send({"recipient": {"user_id": user_id}, "message": {"attachment": attachment}})

    async def _send(self, body: dict[str, Any]) -> None:
        token = await self.tokens.access_token()
        code, message = await self._post(token, body)
        if code in TOKEN_ERRORS:
            token = await self.tokens.refresh(rejected=token)
            code, message = await self._post(token, body)
        if code != 0:
            raise ZaloOAError(code, message)

    async def _post(self, token: str, body: dict[str, Any]) -> tuple[int, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32))
        try:
            async with self._session.post(
                self._url,
                json=body,
                headers={"access_token": token},
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as response:
                status = response.status
                try:
                    answer = await response.json(content_type=None)
                except ValueError:
                    answer = None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise ConnectionError(f"Zalo OA unreachable ({type(error).__name__})") from None
        if not isinstance(answer, dict):
            raise ConnectionError(f"Zalo OA answered HTTP {status} without JSON")
        try:
            code = int(answer.get("error") or 0)
        except (TypeError, ValueError):
            code = -1
        return code, str(answer.get("message") or "")[:200]


class ZaloOAChannel(ZaloChannelBase):
    """Bridge between a Zalo Official Account and the neutral dispatcher."""

    traits = TRAITS
    push_window: timedelta = accounts.PUSH_WINDOWS[CHANNEL]

    def __init__(
        self,
        client: ZaloOAClient,
        dispatcher: Dispatcher,
        sessions: SessionFactory,
        clock: Clock,
        texts: Catalogue,
        on_queued: Callable[[], None],
        limiter: ChannelLimiter | None = None,
    ) -> None:
        super().__init__(dispatcher, sessions, clock, texts, on_queued)
        self.client = client
        self.limiter = limiter or ChannelLimiter(LIMITS)
        self._keeper: asyncio.Task[None] | None = None

    def start_token_keeper(self, every: float = _KEEP_EVERY) -> None:
        """Refresh the access token when due even if nothing is sent: an unused refresh token
        dies after a few months, and the OA could then not write to anyone until authorized
        again. The first look is at once, so bad tokens in the settings show at start."""
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._keep_tokens(every), name="zalo-oa-tokens")

    async def stop_token_keeper(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None

    async def _keep_tokens(self, every: float) -> None:
        while True:
            try:
                await self.client.tokens.access_token()
            except Exception:
                log.exception("Zalo OA access token unavailable; authorize the app again?")
            await asyncio.sleep(every)

    async def receive_webhook(self, payload: dict[str, Any]) -> None:
        """Store an event the bot acts on, then queue it; others are acknowledged and dropped.

        Raises MalformedUpdateError for an event that cannot be keyed.
        """
        key = convert.oa_update_key(payload)
        if key is not None:
            await self.store_and_queue(key, payload)

    def _event(self, payload: dict[str, Any]) -> convert.ZaloEvent | None:
        return convert.oa_event(payload)

    async def _send(self, chat_id: str, reply: Reply, *, pushed: bool, skip_parts: int) -> None:
        """Send the text's parts, then the pictures, one consultation message each."""
        for index, (kind, value) in enumerate(convert.calls(reply, self._texts)):
            if index < skip_parts:
                continue
            await self.limiter.acquire(chat_id, per_chat=pushed)
            try:
                if kind == "photo":
                    await self.client.send_image(chat_id, value)
                else:
                    await self.client.send_text(chat_id, value)
            except (ZaloOAError, OATokenError, ConnectionError) as error:
                translated = self._translate(error)
                translated.parts_done = index
                raise translated from None

    def _translate(self, error: Exception) -> DeliveryError:
        """Say what an Open API error means for delivery."""
        if not isinstance(error, ZaloOAError):
            return RetryLaterError(str(error), 60.0)
        if error.code in WINDOW_ERRORS:
            return OutsideWindowError(str(error))
        if error.code in GONE_ERRORS:
            return UnreachableError(str(error))
        if error.code in RATE_ERRORS:
            self.limiter.pause(60.0)
            return RetryLaterError(str(error), 60.0)
        if error.code in QUOTA_ERRORS:
            return RetryLaterError(str(error), _QUOTA_WAIT)
        return RetryLaterError(str(error), 60.0)
