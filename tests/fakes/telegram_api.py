"""A fake Telegram Bot API server (aiohttp) that records what the bot sends."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_ID = 777000111
BOT_USERNAME = "thidua_test_bot"


@dataclass
class SentMessage:
    """A message the bot sent through the fake API."""

    method: str
    chat_id: int
    text: str
    message_id: int
    buttons: list[list[dict[str, str]]] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [button["text"] for row in self.buttons for button in row]

    def callback_data(self, label_part: str) -> str:
        """Return the data of the first button whose label contains `label_part`."""
        for row in self.buttons:
            for button in row:
                if label_part in button["text"]:
                    return button["callback_data"]
        raise LookupError(f"no button with {label_part!r} in {self.labels}")


class FakeTelegramAPI:
    """Serve `/bot<token>/<method>` like api.telegram.org, on a local port."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.sent: list[SentMessage] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.blocked: set[int] = set()
        self.webhook: dict[str, Any] | None = None
        self.commands: list[dict[str, str]] = []
        self._updates: list[dict[str, Any]] = []
        self._message_ids = itertools.count(1000)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.failures: dict[str, Callable[[dict[str, Any]], web.Response | None]] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- what tests use -------------------------------------------------------------

    async def queue_update(self, update: dict[str, Any]) -> None:
        """Offer an update to the bot's next getUpdates call (polling mode)."""
        async with self._changed:
            self._updates.append(update)
            self._changed.notify_all()

    def messages_to(self, chat_id: int) -> list[SentMessage]:
        return [m for m in self.sent if m.chat_id == chat_id]

    async def wait_for_messages(
        self, chat_id: int, count: int, within: float = 5.0
    ) -> list[SentMessage]:
        """Wait until `chat_id` has received at least `count` messages; return them all."""
        deadline = time.monotonic() + within
        async with self._changed:
            while len(self.messages_to(chat_id)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [m.text[:80] for m in self.messages_to(chat_id)]
                    raise AssertionError(
                        f"chat {chat_id} got {len(got)} of {count} messages: {got}"
                    )
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    continue
        return self.messages_to(chat_id)

    # --- the protocol ---------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params = await _params(request)
        self.calls.append((method, params))
        failure = self.failures.get(method)
        if failure is not None and (response := failure(params)) is not None:
            return response
        handler = getattr(self, f"_api_{method.lower()}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        result = await handler(params)
        if isinstance(result, web.Response):
            return result
        return web.json_response({"ok": True, "result": result})

    async def _api_getme(self, _params: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "Thi đua",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _api_setmycommands(self, params: dict[str, Any]) -> bool:
        self.commands = params.get("commands", [])
        return True

    async def _api_deletewebhook(self, _params: dict[str, Any]) -> bool:
        self.webhook = None
        return True

    async def _api_setwebhook(self, params: dict[str, Any]) -> bool:
        self.webhook = params
        return True

    async def _api_getupdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        async with self._changed:
            # Updates below the offset are confirmed: Telegram forgets them.
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            if not self._updates and timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(timeout, 1.0))
            return list(self._updates)

    async def _api_sendmessage(self, params: dict[str, Any]) -> dict[str, Any] | web.Response:
        chat_id = int(params["chat_id"])
        if chat_id in self.blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        text = str(params.get("text", ""))
        if not text or len(text) > 4096:
            return _error(400, "Bad Request: message text is empty or too long")
        markup = params.get("reply_markup") or {}
        buttons = markup.get("inline_keyboard", []) if isinstance(markup, dict) else []
        for row in buttons:
            for button in row:
                if len(button.get("callback_data", "").encode()) > 64:
                    return _error(400, "Bad Request: BUTTON_DATA_INVALID")
        message = SentMessage("sendMessage", chat_id, text, next(self._message_ids), buttons)
        async with self._changed:
            self.sent.append(message)
            self._changed.notify_all()
        return _message_json(message)

    async def _api_answercallbackquery(self, params: dict[str, Any]) -> bool:
        self.callback_answers.append(params)
        return True

    async def _api_editmessagereplymarkup(self, params: dict[str, Any]) -> dict[str, Any]:
        for message in self.sent:
            if message.message_id == int(params.get("message_id", 0)):
                message.buttons = []
                return _message_json(message)
        return {
            "message_id": int(params.get("message_id", 0)),
            "date": int(time.time()),
            "chat": {"id": 0, "type": "private"},
        }


async def _params(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        body = await request.json()
        return dict(body) if isinstance(body, dict) else {}
    form = await request.post()
    params: dict[str, Any] = {}
    for key, value in form.items():
        if isinstance(value, str) and value[:1] in "[{":
            try:
                params[key] = json.loads(value)
                continue
            except ValueError:
                pass
        params[key] = value
    return params


def _message_json(message: SentMessage) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message_id": message.message_id,
        "date": int(time.time()),
        "chat": {"id": message.chat_id, "type": "private"},
        "from": {"id": BOT_ID, "is_bot": True, "first_name": "Thi đua", "username": BOT_USERNAME},
        "text": message.text,
    }
    if message.buttons:
        body["reply_markup"] = {"inline_keyboard": message.buttons}
    return body


def _error(code: int, description: str, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if extra:
        body["parameters"] = extra
    return web.json_response(body, status=code)
