"""A fake Telegram Bot API server (aiohttp) that records what the bot sends.

By default it answers at once and without limits. With `limits=FakeLimits(...)` it enforces
Telegram's rate limits for bots (overall, per chat, per group; a higher overall limit for sends
with `allow_paid_broadcast`), answering 429 with `retry_after` as Telegram documents, and can
add latency to every request. With `bench=True` it keeps counts instead of every message, so a
broadcast to 100,000 chats or more stays light.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_ID = 777000111
BOT_USERNAME = "thidua_test_bot"

# Methods that send a message to a chat: the ones Telegram's limits apply to.
SEND_METHODS = frozenset(
    {
        "sendmessage",
        "sendphoto",
        "senddocument",
        "sendvideo",
        "sendaudio",
        "sendvoice",
        "sendanimation",
        "sendsticker",
        "sendmediagroup",
        "sendlocation",
        "sendcontact",
        "sendpoll",
        "copymessage",
        "forwardmessage",
    }
)


@dataclass
class SentMessage:
    """A message the bot sent through the fake API."""

    method: str
    chat_id: int
    text: str
    message_id: int
    buttons: list[list[dict[str, str]]] = field(default_factory=list)
    file_id: str | None = None  # sendPhoto, sendDocument: the file sent
    content: bytes | None = field(default=None, repr=False)  # an uploaded file's bytes

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


@dataclass(frozen=True, slots=True)
class FakeLimits:
    """Telegram's limits for bots as the fake enforces them, and the latency it adds.

    Each limit is a token bucket like the bot's own limiter: the overall ones hold one second's
    worth of messages, a private chat `chat_burst` messages refilled at `per_chat_per_second`, a
    group `group_per_minute` messages refilled over a minute. `slack` lets through that share
    more than a bucket holds, as network jitter would demand of a real server; 0 is exact.
    """

    per_second: float = 30.0
    paid_per_second: float = 1000.0  # sends with allow_paid_broadcast=True
    per_chat_per_second: float = 1.0
    chat_burst: int = 3
    group_per_minute: float = 20.0
    latency: float = 0.0  # seconds added to every request
    slack: float = 0.0


class _Bucket:
    """A token bucket: `capacity` messages at once, refilled at `rate` a second."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.level = 0.0
        self.stamp = now

    def wait(self, now: float) -> float:
        """Return 0 if one more message fits now, else the seconds until it would."""
        self.level = max(0.0, self.level - (now - self.stamp) * self.rate)
        self.stamp = now
        excess = self.level + 1 - self.capacity
        return 0.0 if excess <= 1e-9 else excess / self.rate

    def take(self) -> None:
        self.level = min(self.level + 1, self.capacity + 1)

    def empty_at(self) -> float:
        return self.stamp + self.level / self.rate


class FakeTelegramAPI:
    """Serve `/bot<token>/<method>` like api.telegram.org, on a local port.

    `/<client>/bot<token>/<method>` is served too, counting sends per `client` label, so that
    several bot processes given different base URLs (`base_url_for`) can be told apart.
    """

    def __init__(
        self,
        token: str,
        *,
        limits: FakeLimits | None = None,
        bench: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.limits = limits
        # Seconds, for the limits' buckets and the delivery counts; a test may turn it by hand.
        self.clock = clock
        # Bench mode keeps no list of messages or calls, only the counts below.
        self.bench = bench
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
        # Chats whose sends hang this many seconds, then fail with 504 (a server timing out).
        self.stalls: dict[int, float] = {}
        # Counts, kept in every mode.
        self.method_counts: Counter[str] = Counter()  # every request, by method as called
        self.deliveries: dict[int, int] = {}  # messages accepted per chat
        self.delivered = 0  # messages accepted in all
        self.paid_delivered = 0  # of which sent with allow_paid_broadcast
        self.delivered_by_client: Counter[str] = Counter()
        self.delivery_seconds: Counter[int] = Counter()  # accepted per whole monotonic second
        self.first_delivery_at: float | None = None
        self.last_delivery_at: float | None = None
        self.too_many_requests = 0  # 429s answered
        self.rejected_overall = 0
        self.rejected_chat = 0
        self._free: _Bucket | None = None
        self._paid: _Bucket | None = None
        self._chats: OrderedDict[int, _Bucket] = OrderedDict()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url_for(self, client: str) -> str:
        """Return a base URL whose sends are counted under `client` in `delivered_by_client`."""
        return f"{self.base_url}/{client}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/{client}/bot{token}/{method}", self._handle)
        # A test may leave a request hanging on purpose: stopping must not wait a minute for it.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
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

    @property
    def duplicates(self) -> int:
        """Count messages beyond the first that a chat received."""
        return sum(count - 1 for count in self.deliveries.values() if count > 1)

    def delivery_rate(self, *, skip: float = 0.0) -> float:
        """Return accepted messages a second from the first to the last, after `skip` seconds.

        Whole seconds are counted, so `skip` leaves out a ramp-up; the partial last second is
        left out unless it is the only one.
        """
        if self.first_delivery_at is None or self.last_delivery_at is None:
            return 0.0
        start = int(self.first_delivery_at + skip)
        end = int(self.last_delivery_at)
        if end <= start:
            elapsed = self.last_delivery_at - self.first_delivery_at
            return self.delivered / elapsed if elapsed > 0 else float(self.delivered)
        counted = sum(n for second, n in self.delivery_seconds.items() if start <= second < end)
        return counted / (end - start)

    # --- the protocol ---------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        result = await self.answer(
            request.match_info["method"],
            await _params(request),
            client=request.match_info.get("client", ""),
        )
        if isinstance(result, web.Response):
            return result
        return web.json_response({"ok": True, "result": result})

    async def answer(self, method: str, params: dict[str, Any], *, client: str = "") -> Any:
        """Answer one call: its result, or the error response (any HTTP server may carry it)."""
        self.method_counts[method] += 1
        if not self.bench:
            self.calls.append((method, params))
        failure = self.failures.get(method)
        if failure is not None and (response := failure(params)) is not None:
            return response
        stall = self.stalls.get(_chat_id(params) or 0)
        if stall:
            await asyncio.sleep(stall)
            return _error(504, "Gateway Timeout")
        handler = getattr(self, f"_api_{method.lower()}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        sending = method.lower() in SEND_METHODS
        if self.limits is not None and sending:
            retry_after = self._admit(params)
            if retry_after is not None:
                await self._lag()
                self.too_many_requests += 1
                return _error(
                    429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after
                )
        result = await handler(params)
        if sending and not isinstance(result, web.Response):
            self._count(params, client)
        await self._lag()
        return result

    async def _lag(self) -> None:
        if self.limits is not None and self.limits.latency > 0:
            await asyncio.sleep(self.limits.latency)

    def _admit(self, params: dict[str, Any]) -> int | None:
        """Take a send within the limits, or return the whole seconds to retry after."""
        limits = self.limits
        assert limits is not None
        now = self.clock()
        if self._free is None or self._paid is None:
            self._free = _Bucket(limits.per_second, limits.per_second * (1 + limits.slack), now)
            self._paid = _Bucket(
                limits.paid_per_second, limits.paid_per_second * (1 + limits.slack), now
            )
        overall = self._paid if _is_true(params.get("allow_paid_broadcast")) else self._free
        chat_id = _chat_id(params)
        chat = self._chat_bucket(chat_id, now) if chat_id is not None else None
        waits = [overall.wait(now)]
        self._free.wait(now)
        self._paid.wait(now)
        if chat is not None:
            waits.append(chat.wait(now))
        if waits[0] > 0:
            self.rejected_overall += 1
        elif max(waits) > 0:
            self.rejected_chat += 1
        if max(waits) > 0:
            return max(1, math.ceil(max(waits)))
        # Every send counts against both overall limits, whichever one admitted it.
        self._free.take()
        self._paid.take()
        if chat is not None:
            chat.take()
        return None

    def _chat_bucket(self, chat_id: int, now: float) -> _Bucket:
        limits = self.limits
        assert limits is not None
        bucket = self._chats.get(chat_id)
        if bucket is None:
            if chat_id < 0:
                rate, capacity = limits.group_per_minute / 60, limits.group_per_minute
            else:
                rate, capacity = limits.per_chat_per_second, float(limits.chat_burst)
            bucket = self._chats[chat_id] = _Bucket(rate, capacity * (1 + limits.slack), now)
        else:
            self._chats.move_to_end(chat_id)
        # Forget chats whose bucket has drained: they hold nothing a new bucket would not.
        while self._chats:
            oldest_id, oldest = next(iter(self._chats.items()))
            if oldest_id == chat_id or oldest.empty_at() > now:
                break
            del self._chats[oldest_id]
        return bucket

    def _count(self, params: dict[str, Any], client: str) -> None:
        chat_id = _chat_id(params)
        if chat_id is not None:
            self.deliveries[chat_id] = self.deliveries.get(chat_id, 0) + 1
        self.delivered += 1
        if _is_true(params.get("allow_paid_broadcast")):
            self.paid_delivered += 1
        self.delivered_by_client[client] += 1
        now = self.clock()
        self.delivery_seconds[int(now)] += 1
        if self.first_delivery_at is None:
            self.first_delivery_at = now
        self.last_delivery_at = now

    async def _record(self, message: SentMessage) -> None:
        if self.bench:
            return
        async with self._changed:
            self.sent.append(message)
            self._changed.notify_all()

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
        buttons = _buttons(params)
        if isinstance(buttons, web.Response):
            return buttons
        message = SentMessage("sendMessage", chat_id, text, next(self._message_ids), buttons)
        await self._record(message)
        return _message_json(message)

    async def _api_sendphoto(self, params: dict[str, Any]) -> dict[str, Any] | web.Response:
        return await self._send_file("sendPhoto", "photo", params)

    async def _api_senddocument(self, params: dict[str, Any]) -> dict[str, Any] | web.Response:
        return await self._send_file("sendDocument", "document", params)

    async def _send_file(
        self, method: str, kind: str, params: dict[str, Any]
    ) -> dict[str, Any] | web.Response:
        chat_id = int(params["chat_id"])
        if chat_id in self.blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        value = params.get(kind)
        # A file id or URL arrives as text; an upload as a file part.
        file_id = value if isinstance(value, str) else getattr(value, "filename", None)
        if not file_id:
            return _error(400, f"Bad Request: there is no {kind} in the request")
        caption = str(params.get("caption") or "")
        if len(caption) > 1024:
            return _error(400, "Bad Request: message caption is too long")
        buttons = _buttons(params)
        if isinstance(buttons, web.Response):
            return buttons
        upload = getattr(value, "file", None)
        message = SentMessage(
            method,
            chat_id,
            caption,
            next(self._message_ids),
            buttons,
            file_id=str(file_id),
            content=upload.read() if upload is not None else None,
        )
        await self._record(message)
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
    return form_params((await request.post()).items())


def form_params(fields: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Read a form's fields as the Bot API does: objects and lists travel as JSON text."""
    params: dict[str, Any] = {}
    for key, value in fields:
        if isinstance(value, str) and value[:1] in "[{":
            try:
                params[key] = json.loads(value)
                continue
            except ValueError:
                pass
        params[key] = value
    return params


def _is_true(value: object) -> bool:
    """Read a boolean parameter, sent as JSON true or as the form text "true"."""
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))


def _chat_id(params: dict[str, Any]) -> int | None:
    try:
        return int(params["chat_id"])
    except (KeyError, TypeError, ValueError):
        return None


def _buttons(params: dict[str, Any]) -> list[list[dict[str, str]]] | web.Response:
    markup = params.get("reply_markup") or {}
    buttons: list[list[dict[str, str]]] = (
        markup.get("inline_keyboard", []) if isinstance(markup, dict) else []
    )
    for row in buttons:
        for button in row:
            if len(button.get("callback_data", "").encode()) > 64:
                return _error(400, "Bad Request: BUTTON_DATA_INVALID")
    return buttons


def _message_json(message: SentMessage) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message_id": message.message_id,
        "date": int(time.time()),
        "chat": {"id": message.chat_id, "type": "private"},
        "from": {"id": BOT_ID, "is_bot": True, "first_name": "Thi đua", "username": BOT_USERNAME},
    }
    unique = f"u{message.message_id}"
    if message.method == "sendPhoto":
        body["photo"] = [
            {"file_id": message.file_id, "file_unique_id": unique, "width": 1, "height": 1}
        ]
    elif message.method == "sendDocument":
        body["document"] = {"file_id": message.file_id, "file_unique_id": unique}
    if message.file_id is None:
        body["text"] = message.text
    elif message.text:
        body["caption"] = message.text
    if message.buttons:
        body["reply_markup"] = {"inline_keyboard": message.buttons}
    return body


def _error(code: int, description: str, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if extra:
        body["parameters"] = extra
    return web.json_response(body, status=code)
