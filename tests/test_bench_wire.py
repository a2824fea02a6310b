"""The webhook benchmark's lean HTTP: its fake Bot API and its webhook client speak real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup

from bench.webhook import TOKEN, RecordingAPI
from bench.wire import ApiServer, WebhookClient
from tests.fakes.telegram_api import BOT_USERNAME


@pytest.fixture
async def api() -> AsyncIterator[RecordingAPI]:
    recording = RecordingAPI()
    await recording.start()
    yield recording
    await recording.stop()


async def test_a_real_bot_client_talks_to_the_benchmarks_fake_api(api: RecordingAPI) -> None:
    received: list[tuple[int, str]] = []
    api.on_message = lambda chat, text, _at: received.append((chat, text))
    # python-telegram-bot's own client sends its parameters as a urlencoded form.
    async with Bot(TOKEN, base_url=f"{api.base_url}/bot") as bot:
        assert bot.username == BOT_USERNAME
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Có", callback_data="c:1")]])
        message = await bot.send_message(chat_id=42, text="Xin chào 👋", reply_markup=keyboard)
    assert message.chat_id == 42
    assert message.text == "Xin chào 👋"
    assert received == [(42, "Xin chào 👋")]


async def test_the_fake_api_reads_json_and_refuses_what_telegram_refuses(
    api: RecordingAPI,
) -> None:
    async with aiohttp.ClientSession() as http:
        sent = await http.post(
            f"{api.base_url}/bot{TOKEN}/sendMessage", json={"chat_id": 7, "text": "một"}
        )
        assert sent.status == 200
        assert (await sent.json())["result"]["text"] == "một"
        empty = await http.post(
            f"{api.base_url}/bot{TOKEN}/sendMessage", json={"chat_id": 7, "text": ""}
        )
        assert empty.status == 400
        assert (await empty.json())["ok"] is False
        forged = await http.post(f"{api.base_url}/botWRONG/getMe")
        assert forged.status == 401
        unknown = await http.post(f"{api.base_url}/bot{TOKEN}/noSuchMethod")
        assert unknown.status == 404
        elsewhere = await http.get(f"{api.base_url}/healthz")
        assert elsewhere.status == 404
        # Files are not served by the benchmark's fake: a clear refusal, not a crash.
        form = aiohttp.FormData({"chat_id": "7"})
        form.add_field("photo", b"\x89PNG", filename="a.png", content_type="image/png")
        photo = await http.post(f"{api.base_url}/bot{TOKEN}/sendPhoto", data=form)
        assert photo.status == 400
        assert (await photo.json())["ok"] is False


async def test_the_fake_api_stops_without_waiting_for_an_answer_being_made() -> None:
    entered = asyncio.Event()
    cancelled: list[str] = []

    async def answer(token: str, method: str, body: bytes, form: bool) -> tuple[int, bytes]:
        entered.set()
        try:
            await asyncio.Event().wait()  # an answer that never comes
        except asyncio.CancelledError:
            cancelled.append(method)
            raise
        return 200, b"{}"

    server = ApiServer(answer)
    await server.start()
    async with aiohttp.ClientSession() as http:
        call = asyncio.ensure_future(
            http.post(f"http://127.0.0.1:{server.port}/bot{TOKEN}/getMe", json={})
        )
        await asyncio.wait_for(entered.wait(), 5)
        await asyncio.wait_for(server.stop(), 5)
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(call, 5)
    assert cancelled == ["getMe"]


async def test_the_webhook_client_keeps_its_connection_and_reports_each_status() -> None:
    peers: list[object] = []
    bodies: list[dict[str, object]] = []
    transports: list[asyncio.BaseTransport] = []

    async def webhook(request: web.Request) -> web.Response:
        assert request.headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cret"
        assert request.transport is not None
        transports.append(request.transport)
        peers.append(request.transport.get_extra_info("peername"))
        body = await request.json()
        bodies.append(body)
        response = web.Response(status=403 if body.get("forged") else 200)
        if body.get("last"):
            response.force_close()  # the server ends the connection after this answer
        return response

    app = web.Application()
    app.router.add_post("/telegram/webhook", webhook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    client = WebhookClient(
        "127.0.0.1",
        port,
        "/telegram/webhook",
        {"X-Telegram-Bot-Api-Secret-Token": "s3cret", "Content-Type": "application/json"},
    )
    try:
        statuses = [await client.post(json.dumps({"n": n}).encode()) for n in range(5)]
        statuses.append(await client.post(b'{"forged": true}'))
        statuses.append(await client.post(json.dumps({"last": True, "text": "Ừ"}).encode()))
        statuses.append(await client.post(b'{"after": "the close"}'))
        # The server closes the idle connection (its keep-alive timing out): once the client
        # hears of it, the next post goes on a new connection.
        transports[-1].close()
        deadline = time.monotonic() + 5
        while client.open_connections:
            assert time.monotonic() < deadline, "the client never heard of the close"
            await asyncio.sleep(0.01)
        statuses.append(await client.post(b'{"after": "the idle close"}'))
    finally:
        client.close()
        await runner.cleanup()
    assert statuses == [200] * 5 + [403, 200, 200, 200]
    assert bodies[6] == {"last": True, "text": "Ừ"}
    # One connection until the server closed it, then a new one each time it did.
    assert len(set(peers[:7])) == 1
    assert len({peers[0], peers[7], peers[8]}) == 3
