"""A small aiohttp client for the Zalo Bot API: {base}/bot{token}/{method}, JSON in and out.

The token is part of every URL: no URL, and so no token, ever appears in an error or a log.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

# getUpdates answers HTTP 408 (or error_code 408) when nothing arrived within its timeout.
IDLE = 408


class ZaloApiError(Exception):
    """The Bot API refused a call: `code` is its error_code (or the HTTP status)."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(f"Zalo Bot API error {code}: {description}")
        self.code = code
        self.description = description


class ZaloNetworkError(Exception):
    """The Bot API could not be reached, or did not answer in time."""


class ZaloBotClient:
    """Call the Bot API methods the bot uses; one connection pool for all of them."""

    def __init__(
        self, token: str, base_url: str, *, timeout: float = 15.0, connections: int = 32
    ) -> None:
        self._prefix = f"{base_url.rstrip('/')}/bot{token}/"
        self._timeout = timeout
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                raise_for_status=False,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, wait: float | None = None
    ) -> Any:
        """POST one method call and return its `result`; raise ZaloApiError or ZaloNetworkError."""
        if self._session is None:
            await self.start()
        assert self._session is not None
        limit = aiohttp.ClientTimeout(total=wait or self._timeout)
        try:
            async with self._session.post(
                self._prefix + method, json=params or {}, timeout=limit
            ) as response:
                status = response.status
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
        except (aiohttp.ClientError, TimeoutError) as error:
            # The exception's text may hold the URL, and so the token: only its kind is kept.
            raise ZaloNetworkError(f"{method}: {type(error).__name__}") from None
        if isinstance(body, dict) and body.get("ok") is True:
            return body.get("result")
        if isinstance(body, dict):
            code = _int(body.get("error_code")) or status
            description = str(body.get("description") or body.get("message") or "")
        else:
            code, description = status, "unreadable answer"
        if status == IDLE:
            code = IDLE
        raise ZaloApiError(code, description[:200])

    async def get_me(self) -> dict[str, Any]:
        result = await self.call("getMe")
        return result if isinstance(result, dict) else {}

    async def get_updates(self, seconds: int = 30) -> list[dict[str, Any]]:
        """Wait up to `seconds` for the next update; [] when none arrived (HTTP 408).

        Zalo answers with one update and has no offset: what it answered is not sent again.
        """
        try:
            result = await self.call("getUpdates", {"timeout": str(seconds)}, wait=seconds + 15.0)
        except ZaloApiError as error:
            if error.code == IDLE:
                return []
            raise
        if isinstance(result, dict):
            return [result]
        if isinstance(result, list):
            return [update for update in result if isinstance(update, dict)]
        return []

    async def set_webhook(self, url: str, secret_token: str) -> None:
        await self.call("setWebhook", {"url": url, "secret_token": secret_token})

    async def delete_webhook(self) -> None:
        await self.call("deleteWebhook")

    async def send_message(self, chat_id: str, text: str) -> None:
        await self.call("sendMessage", {"chat_id": chat_id, "text": text})

    async def send_photo(self, chat_id: str, photo: str, caption: str | None = None) -> None:
        params: dict[str, Any] = {"chat_id": chat_id, "photo": photo}
        if caption:
            params["caption"] = caption
        await self.call("sendPhoto", params)

    async def send_chat_action(self, chat_id: str, action: str = "typing") -> None:
        await self.call("sendChatAction", {"chat_id": chat_id, "action": action})


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return 0
