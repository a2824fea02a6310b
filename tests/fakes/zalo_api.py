"""Fake Zalo servers (aiohttp) built from Zalo's documented payloads.

`FakeZaloBotAPI` serves the Zalo Bot API (`/bot<token>/<method>`, answers
`{"ok": true, "result": ...}`): getMe, getUpdates long polling (one update per answer, no
offset, HTTP 408 when nothing arrived), setWebhook / deleteWebhook, sendMessage (1 to 2,000
characters), sendPhoto, sendChatAction.

`FakeZaloOA` serves the Official Account Open API v3 consultation message endpoint
(`/v3.0/oa/message/cs`, header `access_token`, answers `{"error": 0, ...}` or a negative error
code) and Zalo's OAuth v4 token endpoint (`/v4/oa/access_token`), where each refresh token
works once. It also signs the webhook events the tests send to the bot, as Zalo does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web

BOT_ID = "1459232241454765289"
_ids = itertools.count(1)


def _zalo_id(prefix: str) -> str:
    """An id shaped like Zalo's: 20 hex characters."""
    return hashlib.sha1(f"{prefix}{next(_ids)}".encode()).hexdigest()[:20]


def _millis() -> int:
    return int(time.time() * 1000)


@dataclass
class ZaloSent:
    """A message the bot sent through a fake Zalo server."""

    method: str  # sendMessage, sendPhoto; "text", "image" on the OA
    chat_id: str
    text: str
    photo: str | None = None

    @property
    def lines(self) -> list[str]:
        return self.text.split("\n")


class _Recorder:
    """What both fakes share: the messages sent, and waiting for them."""

    def __init__(self) -> None:
        self.sent: list[ZaloSent] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, app: web.Application) -> None:
        # A test may leave a request hanging on purpose: stopping must not wait a minute for it.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, message: ZaloSent) -> None:
        async with self._changed:
            self.sent.append(message)
            self._changed.notify_all()

    def messages_to(self, chat_id: str) -> list[ZaloSent]:
        return [m for m in self.sent if m.chat_id == chat_id]

    async def wait_for_messages(
        self, chat_id: str, count: int, within: float = 5.0
    ) -> list[ZaloSent]:
        """Wait until `chat_id` has received at least `count` messages; return them all."""
        deadline = time.monotonic() + within
        async with self._changed:
            while len(self.messages_to(chat_id)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [m.text[:80] for m in self.messages_to(chat_id)]
                    raise AssertionError(
                        f"Zalo chat {chat_id} got {len(got)} of {count} messages: {got}"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)
        return self.messages_to(chat_id)


# --- the Zalo Bot API -----------------------------------------------------------------------


class FakeZaloBotAPI(_Recorder):
    """Serve `/bot<token>/<method>` like bot-api.zaloplatforms.com, on a local port."""

    def __init__(self, token: str, *, idle_wait: float = 0.2) -> None:
        super().__init__()
        self.token = token
        # How long getUpdates waits for an update before answering 408 (Zalo: its timeout).
        self.idle_wait = idle_wait
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.method_counts: Counter[str] = Counter()
        self.idle_answers = 0
        self.webhook: dict[str, Any] | None = None
        self.chat_actions: list[tuple[str, str]] = []
        self.failures: dict[str, web.Response] = {}
        self._updates: list[dict[str, Any]] = []

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        await self._serve(app)

    async def queue_update(self, update: dict[str, Any]) -> None:
        """Offer an update to the bot's next getUpdates call."""
        async with self._changed:
            self._updates.append(update)
            self._changed.notify_all()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _bot_error(401, "Unauthorized")
        method = request.match_info["method"]
        try:
            params = await request.json() if request.can_read_body else {}
        except ValueError:
            return _bot_error(400, "Bad request")
        params = params if isinstance(params, dict) else {}
        self.calls.append((method, params))
        self.method_counts[method] += 1
        failure = self.failures.get(method)
        if failure is not None:
            return failure
        handler = getattr(self, f"_api_{method}", None)  # method names are case-sensitive
        if handler is None:
            return _bot_error(404, "Not found")
        result = await handler(params)
        if isinstance(result, web.Response):
            return result
        return web.json_response({"ok": True, "result": result})

    async def _api_getMe(self, _params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return {
            "id": BOT_ID,
            "account_name": "bot.thidua",
            "account_type": "BASIC",
            "can_join_groups": False,
        }

    async def _api_getUpdates(self, params: dict[str, Any]) -> Any:  # noqa: N802
        wait = min(float(params.get("timeout") or 30), self.idle_wait)
        async with self._changed:
            if not self._updates:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)
            if not self._updates:
                self.idle_answers += 1
                return _bot_error(408, "Request timeout")
            # One update per answer, and it is not offered again.
            return self._updates.pop(0)

    async def _api_setWebhook(self, params: dict[str, Any]) -> Any:  # noqa: N802
        secret = str(params.get("secret_token") or "")
        if not str(params.get("url") or "").startswith("https://") or not 8 <= len(secret) <= 256:
            return _bot_error(400, "Bad request")
        self.webhook = params
        return {"url": params["url"], "updated_at": _millis()}

    async def _api_deleteWebhook(self, _params: dict[str, Any]) -> Any:  # noqa: N802
        self.webhook = None
        return {"url": "", "updated_at": _millis()}

    async def _api_sendMessage(self, params: dict[str, Any]) -> Any:  # noqa: N802
        chat_id = str(params.get("chat_id") or "")
        text = params.get("text")
        if not chat_id or not isinstance(text, str) or not 1 <= len(text) <= 2000:
            return _bot_error(400, "Bad request")
        await self._record(ZaloSent("sendMessage", chat_id, text))
        return {"message_id": _zalo_id("m"), "date": _millis()}

    async def _api_sendPhoto(self, params: dict[str, Any]) -> Any:  # noqa: N802
        chat_id = str(params.get("chat_id") or "")
        photo = params.get("photo")
        caption = str(params.get("caption") or "")
        if not chat_id or not isinstance(photo, str) or not photo or len(caption) > 2000:
            return _bot_error(400, "Bad request")
        await self._record(ZaloSent("sendPhoto", chat_id, caption, photo=photo))
        return {"message_id": _zalo_id("m"), "date": _millis()}

    async def _api_sendChatAction(self, params: dict[str, Any]) -> Any:  # noqa: N802
        self.chat_actions.append((str(params.get("chat_id")), str(params.get("action"))))
        return web.json_response({"ok": True})


def _bot_error(code: int, description: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": code, "description": description}, status=code
    )


@dataclass(frozen=True)
class ZaloBotUser:
    """Someone chatting with the Zalo bot; in a private chat the chat id is the user id."""

    id: str
    name: str

    def update(
        self,
        text: str | None = None,
        *,
        event: str = "message.text.received",
        message_id: str | None = None,
        photo_url: str | None = None,
    ) -> dict[str, Any]:
        """An update as the Bot API sends it (bare: the webhook may also wrap it)."""
        message: dict[str, Any] = {
            "from": {"id": self.id, "display_name": self.name, "is_bot": False},
            "chat": {"id": self.id, "chat_type": "PRIVATE"},
            "message_id": message_id or _zalo_id("u"),
            "date": _millis(),
        }
        if text is not None:
            message["text" if event == "message.text.received" else "caption"] = text
        if photo_url is not None:
            message["photo_url"] = photo_url
        if event == "message.sticker.received":
            message["sticker"] = "0e078a2fb66a5f34067b"
            message["url"] = "https://stickers.example/0e078a2f.png"
        return {"event_name": event, "message": message}


# --- the Official Account Open API and OAuth ------------------------------------------------

OA_ID = "3662729599332560487"
APP_ID = "2553928453557884079"
OA_SECRET_KEY = "oa-secret-key-for-tests"
APP_SECRET_KEY = "app-secret-key-for-tests"


@dataclass
class IssuedPair:
    access_token: str
    refresh_token: str


class FakeZaloOA(_Recorder):
    """Serve the consultation message endpoint and the OAuth token endpoint."""

    def __init__(self, *, refresh_latency: float = 0.0) -> None:
        super().__init__()
        self.app_id = APP_ID
        self.oa_secret_key = OA_SECRET_KEY
        self.app_secret_key = APP_SECRET_KEY
        # Added to each token refresh, as a slow OAuth server would (widens a race).
        self.refresh_latency = refresh_latency
        self.valid_access: set[str] = set()
        self.live_refresh: set[str] = set()
        self.used_refresh: list[str] = []
        self.refused_refresh: list[str] = []
        # Users Zalo answers -230 for (no interaction within 7 days), -213 (not following).
        self.outside_window: set[str] = set()
        self.not_following: set[str] = set()
        self.message_calls = 0
        self._pairs = itertools.count(1)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v3.0/oa/message/cs", self._message)
        app.router.add_post("/v4/oa/access_token", self._oauth)
        await self._serve(app)

    def issue(self) -> IssuedPair:
        """Issue a pair as authorizing the app for the OA does."""
        n = next(self._pairs)
        pair = IssuedPair(f"AT-{n}-{_zalo_id('a')}", f"RT-{n}-{_zalo_id('r')}")
        self.valid_access.add(pair.access_token)
        self.live_refresh.add(pair.refresh_token)
        return pair

    def expire(self, access_token: str) -> None:
        self.valid_access.discard(access_token)

    # --- webhook events, signed -----------------------------------------------------------

    def sign(self, body: bytes, timestamp: str) -> str:
        data = self.app_id.encode() + body + timestamp.encode() + self.oa_secret_key.encode()
        return "mac=" + hashlib.sha256(data).hexdigest()

    def event(self, user_id: str, event: str = "user_send_text", **message: Any) -> dict[str, Any]:
        """An event as the OA webhook sends it."""
        body: dict[str, Any] = {
            "app_id": self.app_id,
            "user_id_by_app": f"app-{user_id}",
            "event_name": event,
            "timestamp": str(_millis()),
        }
        if event in ("follow", "unfollow"):
            body["oa_id"] = OA_ID
            body["follower"] = {"id": user_id}
            body["source"] = "oa_profile"
        else:
            body["sender"] = {"id": user_id}
            body["recipient"] = {"id": OA_ID}
            body["message"] = {"msg_id": message.pop("msg_id", None) or _zalo_id("o"), **message}
        return body

    def signed(self, event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """The raw body and headers of a webhook call carrying `event`."""
        body = json.dumps(event, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "X-ZEvent-Signature": self.sign(body, str(event["timestamp"])),
        }
        return body, headers

    # --- the API ---------------------------------------------------------------------------

    async def _message(self, request: web.Request) -> web.Response:
        self.message_calls += 1
        if request.headers.get("access_token") not in self.valid_access:
            return web.json_response({"error": -216, "message": "Access token is invalid"})
        body = await request.json()
        user_id = str(body.get("recipient", {}).get("user_id") or "")
        message = body.get("message") or {}
        if not user_id:
            return web.json_response({"error": -201, "message": "user_id is invalid"})
        if user_id in self.not_following:
            return web.json_response({"error": -213, "message": "User has not followed OA"})
        if user_id in self.outside_window:
            return web.json_response(
                {"error": -230, "message": "User has not interacted with OA in past 7 days"}
            )
        if "text" in message:
            text = message["text"]
            if not isinstance(text, str) or not 1 <= len(text) <= 2000:
                return web.json_response({"error": -201, "message": "text is invalid"})
            await self._record(ZaloSent("text", user_id, text))
        else:
            elements = message["attachment"]["payload"]["elements"]
            await self._record(ZaloSent("image", user_id, "", photo=elements[0]["url"]))
        return web.json_response(
            {"error": 0, "message": "Success", "data": {"message_id": _zalo_id("s")}}
        )

    async def _oauth(self, request: web.Request) -> web.Response:
        form = await request.post()
        if request.headers.get("secret_key") != self.app_secret_key:
            return web.json_response({"error": -14002, "error_description": "invalid secret"})
        if form.get("app_id") != self.app_id or form.get("grant_type") != "refresh_token":
            return web.json_response({"error": -14001, "error_description": "invalid request"})
        token = str(form.get("refresh_token") or "")
        if self.refresh_latency:
            await asyncio.sleep(self.refresh_latency)
        if token not in self.live_refresh:
            self.refused_refresh.append(token)
            return web.json_response(
                {"error": -14014, "error_description": "Invalid refresh token"}
            )
        # A refresh token works once.
        self.live_refresh.discard(token)
        self.used_refresh.append(token)
        pair = self.issue()
        return web.json_response(
            {
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
                "expires_in": "90000",
            }
        )
