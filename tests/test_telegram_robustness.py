"""The Telegram path under duplicates, forgeries, restarts, crashes and odd input."""

from __future__ import annotations

import asyncio
import unicodedata
from typing import Any

from aiohttp import web
from sqlalchemy import func, select

from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import ChannelAccount, InboundUpdate, Invitation, Member
from tests.builders import invitation_code
from tests.factories import TgUser, callback_update, message_update
from tests.telegram_harness import TelegramBot, running_bot


async def _count(sessions: SessionFactory, model: type) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_webhook_without_the_secret_is_refused_and_stores_nothing(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    update = message_update(bot.user(2001, "Kẻ giả").tg, "/start")
    assert await bot.post(update, secret=None) == 403
    assert await bot.post(update, secret="wrong-secret") == 403
    assert await bot.post(update, secret="webhook-secret-for-tests-but-longer") == 403
    assert await _count(sessions, InboundUpdate) == 0
    assert await _count(sessions, ChannelAccount) == 2  # the two built ones
    assert bot.api.messages_to(2001) == []


async def test_malformed_webhook_bodies_are_rejected_without_error(bot: TelegramBot) -> None:
    assert await bot.post(b"{not json") == 400
    assert await bot.post(b'{"message": {}}') == 400
    assert await bot.post(b'{"update_id": "12"}') == 400
    assert await bot.post(b"[1, 2]") == 400


async def test_the_same_update_delivered_twice_is_handled_once(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    lan = bot.user(1001, "Lan")
    update = message_update(lan.tg, "/toi")
    await bot.deliver(update)
    assert await bot.post(update) == 200  # Telegram retries; we acknowledge and ignore
    await lan.send("/help")  # handled after the duplicate, in order
    texts = [m.text for m in lan.inbox]
    assert sum("Nguyễn Thị Lan" in t and "Đơn vị" in t for t in texts) == 1
    async with sessions() as session:
        rows = await session.scalar(
            select(func.count()).where(InboundUpdate.update_key == str(update["update_id"]))
        )
    assert rows == 1


async def test_forged_and_stale_presses_change_nothing_and_say_so(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    officer = bot.user(9001, "Minh")
    for forged in ("c:ffffff:yes", "a:join:99999:y", "a:join:1:maybe", "xyz", "a:nope"):
        answer = await officer.press_data(forged)
        assert "không" in answer[-1].text.lower()
    notices = [a.get("text") for a in bot.api.callback_answers]
    assert len(notices) == 5
    assert all(notices)

    # A member cannot approve anyone by forging the officer's button.
    pending = bot.user(2002, "Tâm")
    await pending.send("/start")
    await pending.send("muoi")
    await pending.press("Muối")
    await pending.send("Đỗ Văn Tâm")
    before = len(officer.inbox)  # counted first: the request may come before the press returns
    await pending.press("Tôi đồng ý")
    prompt = (await officer.wait_for(before + 1))[-1]
    lan = bot.user(1001, "Lan")
    answer = await lan.press_data(prompt.callback_data("Duyệt"))
    assert "không có quyền" in answer[-1].text
    async with sessions() as session:
        tam = await session.scalar(select(Member).where(Member.full_name == "Đỗ Văn Tâm"))
    assert tam is not None
    assert tam.status == "pending"


async def test_an_officer_cannot_invite_outside_their_branch(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    officer = bot.user(9001, "Minh")
    menu = await officer.send("/moi")
    labels = menu[-1].labels
    assert any("CD-KCN" in label for label in labels)
    assert not any("CDCS-CVA" in label for label in labels)  # another branch
    own_button = menu[-1].callback_data("CDCS-MAYNT")
    forged = own_button.rsplit(":", 1)[0] + f":u{org['CDCS-CVA']}"
    answer = await officer.press_data(forged, menu[-1].message_id)
    assert "đơn vị của mình" in answer[-1].text
    assert await _count(sessions, Invitation) == 0

    member = bot.user(1001, "Lan")
    answer = await member.send("/moi")
    assert "chỉ dành cho cán bộ" in answer[-1].text


async def test_officer_invites_from_the_bot_and_the_link_works(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    officer = bot.user(9001, "Minh")
    await officer.send("/moi")
    await officer.press("CDCS-MUOI")
    created = await officer.press("Đoàn viên")
    text = created[-1].text
    assert "https://t.me/thidua_test_bot?start=" in text
    code = text.split("?start=")[1].split()[0]

    newcomer = bot.user(2003, "Sơn")
    answer = await newcomer.send(f"/start {code}")
    assert "Muối Ninh Thuận" in answer[0].text


async def test_a_conversation_survives_a_restart(
    database_url: str, clock: ManualClock, org: dict[str, int], sessions: SessionFactory
) -> None:
    code = await invitation_code(sessions, org["CDCS-MAYNT"], clock.now())
    async with running_bot(database_url, clock) as bot:
        user = bot.user(2004, "Hoa")
        await user.send(f"/start {code}")
        consent = await user.send("Trương Thị Hoa")
        accept = consent[-1].callback_data("Tôi đồng ý")
    async with running_bot(database_url, clock) as bot:
        answer = await bot.user(2004, "Hoa").press_data(accept)
        assert "Chào mừng Trương Thị Hoa" in answer[-1].text


async def test_a_stored_update_survives_a_crash_after_the_acknowledgement(
    database_url: str, clock: ManualClock, org: dict[str, int]
) -> None:
    update = message_update(_lan(), "/toi")
    async with running_bot(database_url, clock) as bot:
        assert bot.runtime.telegram is not None
        # The process stops handling (as if it died) right after acknowledging.
        await bot.runtime.telegram.application.stop()
        assert await bot.post(update) == 200
        assert bot.api.messages_to(1001) == []
    async with running_bot(database_url, clock) as bot:
        answers = await bot.api.wait_for_messages(1001, 1)
        assert "Nguyễn Thị Lan" in answers[0].text


def _lan() -> TgUser:
    return TgUser(1001, "Lan")


async def test_long_decomposed_and_emoji_input(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    code = await invitation_code(sessions, org["CDCS-MAYNT"], clock.now())
    user = bot.user(2005, "Nga")
    await user.send(f"/start {code}")

    too_long = await user.send("Nguyễn " * 800)  # 5,600 characters
    assert "tối đa 100 ký tự" in too_long[-1].text

    only_emoji = await user.send("🎉🎉🎉")
    assert "ít nhất 2 chữ cái" in only_emoji[-1].text

    # A name goes on officers' lists and reports: an emoji in it is explained, not stored.
    with_emoji = await user.send(unicodedata.normalize("NFD", "Nguyễn Thị Ngà 🌸"))
    assert "không có chữ số hay biểu tượng (bạn đã gửi 🌸)" in with_emoji[-1].text

    decomposed = unicodedata.normalize("NFD", "Nguyễn Thị Ngà")
    assert decomposed != unicodedata.normalize("NFC", decomposed)
    await user.send(decomposed)
    await user.press("Tôi đồng ý")
    async with sessions() as session:
        member = await session.scalar(select(Member).where(Member.full_name.like("%Ngà")))
    assert member is not None
    assert member.full_name == unicodedata.normalize("NFC", "Nguyễn Thị Ngà")

    chatter = await bot.user(1001, "Lan").send("x" * 5000)
    assert "/help" in chatter[-1].text


async def test_hints_for_commands_and_text_outside_a_conversation(
    bot: TelegramBot, org: dict[str, int]
) -> None:
    stranger = bot.user(2006, "Lạ")
    assert "/start" in (await stranger.send("xin chào"))[-1].text
    lan = bot.user(1001, "Lan")
    assert "Không có lệnh /abc" in (await lan.send("/abc"))[-1].text
    assert "/toi" in (await lan.send("/trogiup"))[-1].text
    assert "Không có thao tác nào" in (await lan.send("/huy"))[-1].text
    officer = bot.user(9001, "Minh")
    await officer.send("/moi")
    assert "Đã hủy" in (await officer.send("/cancel"))[-1].text
    help_text = "\n".join(m.text for m in await officer.send("/help"))
    assert "/moi" in help_text


async def test_command_menu_is_set_in_vietnamese(bot: TelegramBot) -> None:
    commands = {c["command"]: c["description"] for c in bot.api.commands}
    assert commands["start"].startswith("Bắt đầu")
    assert {"help", "huy", "toi", "moi"} <= set(commands)
    assert bot.api.webhook is not None
    assert bot.api.webhook["secret_token"] == "webhook-secret-for-tests"


async def test_long_polling_mode(
    database_url: str, clock: ManualClock, org: dict[str, int]
) -> None:
    async with running_bot(database_url, clock, webhook=False) as bot:
        assert bot.api.webhook is None
        await bot.api.queue_update(message_update(_lan(), "/toi"))
        answers = await bot.api.wait_for_messages(1001, 1)
        assert "Nguyễn Thị Lan" in answers[0].text
        await bot.api.queue_update(callback_update(_lan(), "c:000000:x"))
        answers = await bot.api.wait_for_messages(1001, 2)
        assert "đã cũ" in answers[1].text


async def test_a_press_answered_too_late_for_telegram_still_gets_its_answers(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    code = await invitation_code(sessions, org["CDCS-MAYNT"], clock.now())
    user = bot.user(2010, "Quế")
    await user.send(f"/start {code}")
    await user.send("Trịnh Thị Quế")

    # A press replayed after a crash or held through an outage is too old to acknowledge.
    def too_old(_params: dict[str, Any]) -> web.Response:
        return web.json_response(
            {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: query is too old and response timeout expired "
                "or query ID is invalid",
            },
            status=400,
        )

    bot.api.failures["answerCallbackQuery"] = too_old
    welcome = await user.press("Tôi đồng ý")
    assert "Chào mừng Trịnh Thị Quế" in welcome[-1].text


async def test_every_stored_update_is_replayed_after_a_crash_however_many(
    database_url: str, clock: ManualClock, org: dict[str, int]
) -> None:
    # More than one page of the inbox (1,000 rows) waits when the process dies.
    senders = [TgUser(600_000 + n, "Khách") for n in range(1_001)]
    async with running_bot(database_url, clock) as bot:
        assert bot.runtime.telegram is not None
        await bot.runtime.telegram.application.stop()
        slots = asyncio.Semaphore(32)

        async def post(sender: TgUser) -> int:
            async with slots:
                return await bot.post(message_update(sender, "xin chào"))

        assert set(await asyncio.gather(*(post(s) for s in senders))) == {200}
    async with running_bot(database_url, clock) as bot:
        for sender in senders:
            answer = await bot.api.wait_for_messages(sender.id, 1)
            assert "/start" in answer[0].text
