"""The aiohttp server: health check and messenger webhooks."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.zalo.oa import signature_valid
from storage.engine import DatabaseUnavailableError
from storage.text import storable_json

log = logging.getLogger(__name__)

TELEGRAM_WEBHOOK_PATH = "/telegram/webhook"
TELEGRAM_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ZALO_WEBHOOK_PATH = "/zalo/webhook"
ZALO_SECRET_HEADER = "X-Bot-Api-Secret-Token"
ZALO_OA_WEBHOOK_PATH = "/zalo-oa/webhook"
ZALO_OA_SIGNATURE_HEADER = "X-ZEvent-Signature"

Receiver = Callable[[dict[str, Any]], Awaitable[None]]
# Telegram's update ids are 32-bit; anything beyond a 64-bit integer is not an update.
_UPDATE_ID_LIMIT = 2**63


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes | str) -> Any:
    """Parse a webhook body as strict JSON (no NaN or Infinity), without NUL characters.

    Raises ValueError. What the database cannot store would otherwise fail the whole batch
    of updates stored with it.
    """
    return storable_json(json.loads(body, parse_constant=_reject_constant))


def secret_matches(supplied: str | None, expected: bytes) -> bool:
    """Compare a header with the secret in constant time."""
    return hmac.compare_digest((supplied or "").encode("utf-8", "replace"), expected)


def telegram_webhook(
    secret: str, receive: Receiver
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Build the webhook handler: secret first, then parse, store, and acknowledge."""
    expected = secret.encode()

    async def handle(request: web.Request) -> web.Response:
        if not secret_matches(request.headers.get(TELEGRAM_SECRET_HEADER), expected):
            log.warning("Telegram webhook call without the right secret from %s", request.remote)
            return web.Response(status=403)
        body = await request.read()
        try:
            payload = parse_json(body)
        except ValueError:
            return web.Response(status=400, text="malformed JSON")
        update_id = payload.get("update_id") if isinstance(payload, dict) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            return web.Response(status=400, text="no update_id")
        if not -_UPDATE_ID_LIMIT <= update_id < _UPDATE_ID_LIMIT:
            return web.Response(status=400, text="update_id out of range")
        # Stored before we answer: once Telegram has its 200, the update is safe with us.
        try:
            await receive(payload)
        except DatabaseUnavailableError:
            return _unavailable()
        return web.Response(status=200)

    return handle


def zalo_webhook(
    secret: str, receive: Receiver
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Build the Zalo Bot API webhook: secret first, then parse, store, and acknowledge.

    Zalo may send the update bare or wrapped in {"ok": true, "result": ...}; the receiver
    takes both and raises ValueError for a body it cannot key.
    """
    expected = secret.encode()

    async def handle(request: web.Request) -> web.Response:
        if not secret_matches(request.headers.get(ZALO_SECRET_HEADER), expected):
            log.warning("Zalo webhook call without the right secret from %s", request.remote)
            return web.Response(status=403)
        try:
            payload = parse_json(await request.read())
        except ValueError:
            return web.Response(status=400, text="malformed JSON")
        if not isinstance(payload, dict):
            return web.Response(status=400, text="not an update")
        try:
            await receive(payload)
        except DatabaseUnavailableError:
            return _unavailable()
        except ValueError as error:
            return web.Response(status=400, text=str(error))
        return web.json_response({"ok": True})

    return handle


def zalo_oa_webhook(
    app_id: str, secret_key: str, receive: Receiver
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Build the Zalo OA webhook: the signature over the raw body first, then parse and store."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if not signature_valid(
            request.headers.get(ZALO_OA_SIGNATURE_HEADER),
            app_id=app_id,
            body=body,
            secret_key=secret_key,
            timestamp_header=request.headers.get("timestamp"),
        ):
            log.warning("Zalo OA webhook call without a valid signature from %s", request.remote)
            return web.Response(status=403)
        try:
            payload = parse_json(body)
        except ValueError:
            return web.Response(status=400, text="malformed JSON")
        if not isinstance(payload, dict):
            return web.Response(status=400, text="not an event")
        try:
            await receive(payload)
        except DatabaseUnavailableError:
            return _unavailable()
        except ValueError as error:
            return web.Response(status=400, text=str(error))
        return web.json_response({"error": 0})

    return handle


def _unavailable() -> web.Response:
    """Refuse an update that could not be stored, so that the messenger sends it again.

    Telegram repeats a webhook call answered with a non-2xx status (its setWebhook
    documentation: it gives up "after a reasonable amount of attempts"; unconfirmed updates are
    kept up to 24 hours). Zalo's documentation says nothing of retries: whether it sends the
    event again is unknown, so the sender is told of the interruption as well.
    """
    return web.Response(status=503, text="database unavailable", headers={"Retry-After": "5"})


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_web_app() -> web.Application:
    """Create the web application with the routes every deployment has."""
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_get("/healthz", health)
    return app
