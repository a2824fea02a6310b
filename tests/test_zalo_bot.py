"""The Zalo bot (Zalo Bot API): joining and registering by typing numbers, the webhook's
secret, wrapped and bare bodies, repeats, long polling with 408 idle answers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from bot.zalo import convert
from bot.zalo.client import ZaloBotClient, ZaloNetworkError
from handlers.i18n import Catalogue
from handlers.types import Attachment, Choice, Reply
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import (
    ChannelAccount,
    Commitment,
    CommitmentStatus,
    InboundUpdate,
    Initiative,
    Member,
    MemberStatus,
    Unit,
)
from tests.builders import add_campaign, invitation_code
from tests.fakes.zalo_api import ZaloBotUser
from tests.zalo_harness import ZALO_TOKEN, ZaloBot, running_zalo_bot

MAYNT = "Công đoàn cơ sở Công ty TNHH May Ninh Thuận"
CHOOSE = "👉 Trả lời bằng số thứ tự của lựa chọn (ví dụ: 1)."
IMAGE = "message.image.received"


@pytest.fixture
async def zbot(database_url: str, clock: ManualClock) -> AsyncIterator[ZaloBot]:
    async with running_zalo_bot(database_url, clock) as bot:
        yield bot


@pytest.fixture
async def campaign(sessions: SessionFactory, org: dict[str, int]) -> None:
    async with sessions() as session, session.begin():
        root = await session.get(Unit, org["LDLD-NT"])
        assert root is not None
        await add_campaign(session, root)


def numbered(text: str) -> list[str]:
    """The labels of the numbered choices at the end of a Zalo text."""
    labels = []
    for line in text.split("\n"):
        number, dot, label = line.partition(". ")
        if dot and number.isdigit():
            assert int(number) == len(labels) + 1, text
            labels.append(label)
    return labels


async def count(sessions: SessionFactory, model: type[object]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --- whole flows by typing numbers ----------------------------------------------------------


async def test_join_by_code_and_register_a_commitment_typing_numbers(
    zbot: ZaloBot, org: dict[str, int], campaign: None, sessions: SessionFactory, clock: ManualClock
) -> None:
    code = await invitation_code(sessions, org["CDCS-MAYNT"], clock.now())
    thu = zbot.zalo_user("e4ea2cd5189df1c3a88c", "Thu")

    answers = await thu.send(f"/start {code}")
    assert "Công ty TNHH May Ninh Thuận" in answers[0].text
    assert "họ và tên" in answers[-1].text
    consent = await thu.send("Nguyễn Thị Thu")
    assert "Nghị định 13/2023/NĐ-CP" in consent[-1].text
    assert numbered(consent[-1].text) == ["Tôi đồng ý", "Không đồng ý"]
    assert consent[-1].text.endswith(CHOOSE)
    welcome = await thu.send("1")
    assert "Chào mừng Nguyễn Thị Thu" in welcome[-1].text

    movements = await thu.send("/dangky")
    labels = numbered(movements[-1].text)
    assert labels[0] == "Năng suất cao, chất lượng tốt"  # the enterprise sector's first
    asked = await thu.send("1")
    assert "Phong trào: Năng suất cao, chất lượng tốt." in asked[-1].text
    measure = await thu.send("Tôi cam kết có ít nhất 2 sáng kiến cải tiến trong năm")
    assert numbered(measure[-1].text) == ["Bỏ qua"]
    pact = await thu.send("2 sáng kiến")
    assert numbered(pact[-1].text)[0] == "Không giao ước"
    # The words of a choice work as well as its number, with or without diacritics.
    confirm = await thu.send("khong giao uoc")
    assert "Xác nhận đăng ký thi đua" in confirm[-1].text
    assert numbered(confirm[-1].text)[0] == "✅ Gửi đăng ký"
    done = await thu.send("1.")
    assert "Đã ghi nhận đăng ký thi đua DK-2023-000001" in done[-1].text
    # A stale number after the flow ended changes nothing.
    stale = await thu.send("1")
    assert "DK-2023-000001" not in stale[-1].text

    async with sessions() as session:
        member = await session.scalar(select(Member).where(Member.full_name == "Nguyễn Thị Thu"))
        assert member is not None
        assert member.status == MemberStatus.ACTIVE
        commitment = await session.scalar(
            select(Commitment).where(Commitment.author_id == member.id)
        )
        account = await session.scalar(
            select(ChannelAccount).where(ChannelAccount.member_id == member.id)
        )
    assert commitment is not None
    assert commitment.status == CommitmentStatus.REGISTERED
    assert account is not None
    assert (account.channel, account.external_id) == ("zalo", "e4ea2cd5189df1c3a88c")
    # Every text fits Zalo's 2,000 characters; the bot showed it was typing.
    assert all(1 <= len(m.text) <= 2000 for m in thu.inbox)
    assert ("e4ea2cd5189df1c3a88c", "typing") in zbot.zalo.chat_actions

    profile = await thu.send("/toi")
    assert "Zalo" in profile[0].text

    # An initiative, typed step by step, with a photo, every choice answered by its number.
    await thu.send("/sangkien")
    await thu.send("Cải tiến bàn cắt vải bằng cữ gá")
    await thu.send("Căn vải bằng tay mất 40 phút mỗi ca.")
    await thu.send("Làm cữ gá định vị bằng thép tấm.")
    value = await thu.send("Tiết kiệm 40 phút mỗi ca, giảm vải hỏng.")
    assert numbered(value[-1].text) == ["Bỏ qua"]
    field = await thu.send("30 triệu")
    assert numbered(field[-1].text) == ["Lĩnh vực khác"]
    coauthors = await thu.send("1")
    assert numbered(coauthors[-1].text) == ["✅ Xong"]
    files = await thu.send("1")
    assert "Gửi ảnh hoặc tệp minh chứng" in files[-1].text
    got = await thu.deliver(
        thu.user.update("", event=IMAGE, photo_url="https://z.example/cu-ga.jpg")
    )
    assert got[-1].text.startswith("Đã nhận ảnh (1/5).")
    summary = await thu.send("1")
    assert "Giá trị làm lợi ước tính: 30.000.000 đồng" in summary[-1].text
    assert numbered(summary[-1].text)[0] == "📤 Gửi sáng kiến"
    receipt = await thu.send("1")
    assert "Đã gửi sáng kiến SK-2023-000001" in receipt[-1].text
    async with sessions() as session:
        initiative = await session.scalar(select(Initiative))
    assert initiative is not None
    assert initiative.attachments[0]["file_ref"] == "https://z.example/cu-ga.jpg"


async def test_join_by_search_approved_by_an_officer_on_telegram(
    zbot: ZaloBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    tam = zbot.zalo_user("6ede9afa66b88fe6d6a9", "Tâm")
    await tam.send("/start")
    found = await tam.send("cong ty may")
    assert numbered(found[-1].text) == [f"{MAYNT} (CDCS-MAYNT)"]
    asked = await tam.send("1")
    assert "họ và tên" in asked[-1].text
    await tam.send("Lê Văn Tâm")
    sent = await tam.send("Tôi đồng ý")
    assert f"Đã gửi yêu cầu tham gia {MAYNT}" in sent[-1].text

    # The officer (on Telegram) gets buttons, presses one; the answer reaches Zalo.
    telegram = zbot.telegram
    minh = telegram.user(9001, "Minh")
    request = (await minh.wait_for(1))[-1]
    assert "Lê Văn Tâm" in request.text
    before = len(tam.inbox)  # counted first: the news may come before the press returns
    await minh.press("Duyệt", request)
    approved = await tam.wait_for(before + 1)
    assert f"Yêu cầu tham gia {MAYNT} của bạn đã được duyệt" in approved[-1].text
    async with sessions() as session:
        member = await session.scalar(select(Member).where(Member.full_name == "Lê Văn Tâm"))
    assert member is not None
    assert member.status == MemberStatus.ACTIVE


# --- the webhook ------------------------------------------------------------------------------


async def test_wrong_or_missing_secret_is_refused_and_nothing_stored(
    zbot: ZaloBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    update = {"ok": True, "result": zbot.zalo_user("u1", "Mallory").user.update("/start")}
    assert await zbot.post_zalo(update, secret="wrong-secret-value") == 403
    assert await zbot.post_zalo(update, secret=None) == 403
    assert await zbot.post_zalo(update, secret="") == 403
    # The secret is checked before the body is read: a bad body with a bad secret is a 403.
    assert await zbot.post_zalo(b"{not json", secret="wrong-secret-value") == 403
    assert await zbot.post_zalo(b"{not json") == 400
    assert await zbot.post_zalo({"ok": True, "result": {"event_name": "x"}}) == 400
    assert await count(sessions, InboundUpdate) == 0
    assert await count(sessions, ChannelAccount) == 2  # the two people of `org`
    assert zbot.zalo.sent == []


async def test_wrapped_and_bare_bodies_and_a_repeat_handled_once(
    zbot: ZaloBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    wrapped = zbot.zalo_user("a1", "An")
    bare = zbot.zalo_user("b2", "Bình")
    bare.wrap = False
    assert len(await wrapped.send("/help")) == 1
    assert len(await bare.send("/help")) == 1

    update = bare.user.update("/help", message_id="2d758cb5e222177a4e35")
    await bare.deliver(update)
    # Zalo retries: the same message_id, bare and wrapped, even at once.
    statuses = await asyncio.gather(
        zbot.post_zalo(update), zbot.post_zalo({"ok": True, "result": update})
    )
    assert statuses == [200, 200]
    assert await zbot.post_zalo(update) == 200
    # A later message is answered after anything the repeats could have queued before it.
    await bare.send("/help")
    await _quiet(zbot)
    assert len(bare.inbox) == 3  # one answer per distinct message
    async with sessions() as session:
        stored = await session.scalar(
            select(func.count())
            .select_from(InboundUpdate)
            .where(InboundUpdate.update_key == "2d758cb5e222177a4e35")
        )
    assert stored == 1


async def test_stickers_and_unsupported_messages_get_a_polite_answer(
    zbot: ZaloBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    hoa = zbot.zalo_user("c3", "Hoa")
    for event in ("message.sticker.received", "message.unsupported.received"):
        answer = await hoa.deliver(hoa.user.update(event=event))
        assert [m.text for m in answer] == [
            "Xin lỗi, trợ lý chưa đọc được loại tin nhắn này (nhãn dán, tin nhắn thoại…). "
            "Bạn vui lòng gõ chữ, hoặc gõ /help để xem các lệnh."
        ]
    # The person is known (a later push may reach them) though the core saw nothing.
    async with sessions() as session:
        account = await session.scalar(
            select(ChannelAccount).where(ChannelAccount.external_id == "c3")
        )
    assert account is not None
    assert account.channel == "zalo"


async def _quiet(zbot: ZaloBot, within: float = 5.0) -> None:
    """Wait until every stored Zalo update has been handled."""
    deadline = time.monotonic() + within
    while True:
        async with zbot.runtime.sessions() as session:
            waiting = await session.scalar(
                select(func.count())
                .select_from(InboundUpdate)
                .where(InboundUpdate.processed_at.is_(None))
            )
        if not waiting:
            return
        assert time.monotonic() < deadline, f"{waiting} updates not handled"
        await asyncio.sleep(0.02)


# --- long polling -----------------------------------------------------------------------------


async def test_long_polling_takes_408_as_nothing_arrived(
    database_url: str,
    clock: ManualClock,
    org: dict[str, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with running_zalo_bot(database_url, clock, webhook=False) as zbot:
        assert zbot.zalo.method_counts["deleteWebhook"] == 1
        assert zbot.zalo.webhook is None
        deadline = time.monotonic() + 10
        while zbot.zalo.idle_answers < 3:
            assert time.monotonic() < deadline, "the bot stopped polling after a 408"
            await asyncio.sleep(0.02)
        answer = await zbot.zalo_user("d4", "Dũng").send("/help")
        assert "/start" in answer[0].text
        assert zbot.zalo.idle_answers >= 3
    # An idle poll is not a failure: nothing about it was logged as a problem.
    problems = [r for r in caplog.records if r.name.startswith("bot.") and r.levelno >= 30]
    assert problems == []
    assert ZALO_TOKEN not in caplog.text


async def test_network_errors_never_show_the_token() -> None:
    client = ZaloBotClient(ZALO_TOKEN, "http://127.0.0.1:9")  # nothing listens there
    try:
        with pytest.raises(ZaloNetworkError) as raised:
            await client.send_message("x", "hello")
    finally:
        await client.close()
    assert ZALO_TOKEN.split(":")[1] not in str(raised.value)
    assert "sendMessage" in str(raised.value)


async def test_settings_need_a_secret_for_the_webhook() -> None:
    from bot.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="ZALO_WEBHOOK_SECRET"):
        load_settings(
            _env_file=None,
            zalo_bot_token=ZALO_TOKEN,
            zalo_webhook_url="https://thidua.example/zalo/webhook",
        )
    with pytest.raises(SettingsError, match=r"^ZALO_WEBHOOK_SECRET: "):
        load_settings(_env_file=None, zalo_webhook_secret="short")
    with pytest.raises(SettingsError, match="ZALO_OA_REFRESH_TOKEN"):
        load_settings(_env_file=None, zalo_oa_app_id="1", zalo_oa_secret_key="k")


def test_replies_become_numbered_texts_pictures_and_notes() -> None:
    texts = Catalogue.load()
    reply = Reply(
        "Chọn một:\n" + "x" * 2500,
        choices=(Choice("✅ Duyệt", "a:1"), Choice("❌ Từ chối", "a:2")),
        attachments=(
            Attachment("photo", "https://z.example/a.jpg"),
            Attachment("photo", "AgACAgIAAxkBAAIB-telegram-file-id"),
            Attachment("document", "https://z.example/b.pdf", name="b.pdf"),
        ),
    )
    sends = convert.calls(reply, texts)
    assert [kind for kind, _ in sends] == ["text", "text", "photo", "text", "text"]
    assert all(len(value) <= 2000 for _, value in sends)
    assert sends[1][1].endswith(f"1. ✅ Duyệt\n2. ❌ Từ chối\n\n{CHOOSE}")
    assert sends[2][1] == "https://z.example/a.jpg"
    assert sends[3][1] == (
        "📎 Kèm theo: ảnh. Tệp này không gửi được qua Zalo, bạn có thể xem trên Telegram."
    )
    assert sends[4][1] == "📎 b.pdf: https://z.example/b.pdf"


def test_an_image_reaches_the_core_as_a_photo_by_url() -> None:
    update = ZaloBotUser("u9", "Chín").update(
        "Ảnh công trình", event=IMAGE, photo_url="https://z.example/p.jpg"
    )
    event = convert.bot_event(convert.unwrap_bot_update({"ok": True, "result": update}))
    assert event is not None
    assert event.kind == "message"
    assert event.incoming.text == "Ảnh công trình"
    assert event.incoming.attachments == (Attachment("photo", "https://z.example/p.jpg"),)
    group = ZaloBotUser("u9", "Chín").update("hi")
    group["message"]["chat"]["chat_type"] = "GROUP"
    assert convert.bot_event(group) is None
