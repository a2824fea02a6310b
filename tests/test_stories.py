"""Exemplar stories on Telegram: nominated, reviewed in the branch, published, listed, rounded
up once a week."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import (
    ChannelAccount,
    Member,
    OutboxMessage,
    Role,
    ScheduleRun,
    Story,
    StoryStatus,
    Unit,
)
from tests.builders import add_campaign, add_member
from tests.cli_runner import thidua
from tests.factories import document_update, photo_update
from tests.telegram_harness import TelegramBot, TelegramUser
from tests.waits import settled

HANOI = ZoneInfo("Asia/Ho_Chi_Minh")
ROOT = Path(__file__).resolve().parent.parent
MINH, LAN, TU, HOA, CUC, THU, SON = 9001, 1001, 1002, 9002, 1003, 9003, 1004
KCN_CHANNEL, PROVINCE_CHANNEL = -1001111111111, -1002222222222
MAYNT = "Công đoàn cơ sở Công ty TNHH May Ninh Thuận"
CVA = "Công đoàn cơ sở Trường THPT Chu Văn An"
STORY = (
    "Anh Tư nhặt được chiếc ví có 12 triệu đồng ở nhà xe công ty và đã tìm trả lại "
    "cho chị công nhân tổ cắt ngay trong ca làm việc."
)


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=HANOI).astimezone(UTC)


@pytest.fixture
async def people(sessions: SessionFactory, org: dict[str, int]) -> dict[str, int]:
    """Besides Minh (officer, CD-KCN) and Lan (CDCS-MAYNT): Tư, Lan's colleague; Hoa, officer
    of CDCS-MAYNT; Sơn of CDCS-MUOI; Cúc (CDCS-CVA) and Thu, officer of CD-GD, elsewhere.
    CD-KCN publishes to a Telegram channel; CDCS-MAYNT has none of its own."""
    async with sessions() as session, session.begin():
        units = {code: await session.get(Unit, unit_id) for code, unit_id in org.items()}
        root, kcn, maynt, muoi, cva, gd = (
            units[c] for c in ("LDLD-NT", "CD-KCN", "CDCS-MAYNT", "CDCS-MUOI", "CDCS-CVA", "CD-GD")
        )
        assert root is not None
        assert kcn is not None
        assert maynt is not None
        assert muoi is not None
        assert cva is not None
        assert gd is not None
        kcn.publish_chat = str(KCN_CHANNEL)
        campaign = await add_campaign(session, root)
        await add_member(session, maynt, "Lê Văn Tư", telegram_id=TU)
        await add_member(session, maynt, "Đỗ Thị Hoa", role=Role.OFFICER, telegram_id=HOA)
        await add_member(session, muoi, "Hồ Văn Sơn", telegram_id=SON)
        await add_member(session, cva, "Võ Thị Cúc", telegram_id=CUC)
        await add_member(session, gd, "Trần Thị Thu", role=Role.OFFICER, telegram_id=THU)
        return {"campaign": campaign.id, **org}


async def stored(sessions: SessionFactory) -> list[Story]:
    async with sessions() as session:
        return list((await session.scalars(select(Story).order_by(Story.id))).all())


async def member_id(sessions: SessionFactory, name: str) -> int:
    async with sessions() as session:
        found = await session.scalar(select(Member.id).where(Member.full_name == name))
        assert found is not None
        return found


async def pushed(user: TelegramUser, start: str) -> str:
    """Wait for a message to `user` that starts with `start`, pushed by the delivery engine."""
    for _ in range(100):
        for message in reversed(user.inbox):
            if message.text.startswith(start):
                return message.text
        await asyncio.sleep(0.05)
    raise AssertionError(f"no message starting {start!r}: {[m.text[:60] for m in user.inbox]}")


async def nominate_tu(lan: TelegramUser) -> None:
    """Lan nominates her colleague Tư, found by name, with one photo."""
    menu = await lan.send("/guongsang")
    assert menu[-1].labels == ["✍️ Giới thiệu gương sáng", "📖 Xem gương sáng"]
    asked = await lan.press("Giới thiệu")
    assert asked[-1].labels == ["👤 Một người", "👥 Một tập thể"]
    await lan.press("Một người")
    found = await lan.send("le van tu")
    assert found[-1].labels == [f"Lê Văn Tư – {MAYNT}", "✍️ Giữ tên “le van tu”"]
    asked = await lan.press("Lê Văn Tư")
    assert asked[-1].text.startswith("Kể về việc tốt, thành tích của Lê Văn Tư")
    short = await lan.send("Anh Tư tốt")
    assert short[-1].text == ("Câu chuyện cần 20–2000 ký tự (bạn gửi 10 ký tự). Vui lòng gửi lại.")
    too_long = await lan.send("Rất tốt. " * 300)
    assert too_long[-1].text.startswith("Câu chuyện cần 20–2000 ký tự (bạn gửi 2699 ký tự)")
    asked = await lan.send(STORY)
    assert asked[-1].text.startswith("📷 Gửi ảnh minh họa (tối đa 3 ảnh, mỗi ảnh tối đa 10 MB)")
    got = await lan.send_update(photo_update(lan.tg, "photo-vi"))
    assert got[-1].text == "Đã nhận ảnh (1/3). Gửi thêm hoặc bấm Xong."
    big = await lan.send_update(photo_update(lan.tg, "photo-big", size=12 * 1024 * 1024))
    assert big[-1].text == "Tệp ảnh nặng 12.0 MB, vượt giới hạn 10 MB; tệp này không được thêm."
    pdf = await lan.send_update(document_update(lan.tg, "doc", "bien-ban.pdf", "application/pdf"))
    assert pdf[-1].text == "bien-ban.pdf không phải là ảnh; chỉ nhận ảnh cho gương sáng."
    summary = await lan.press("Xong")
    assert summary[-1].text == (
        "🌟 Xem lại trước khi gửi:\n"
        f"Giới thiệu: Lê Văn Tư (👤 Một người, {MAYNT})\n"
        f"Câu chuyện: {STORY}\nẢnh: 1"
    )
    sent = await lan.press("Gửi giới thiệu")
    assert sent[-1].text.startswith("✅ Đã gửi giới thiệu gương sáng về Lê Văn Tư.")


async def test_a_story_approved_in_the_branch_is_published_to_the_nearest_channel(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    lan, hoa = bot.user(LAN, "Lan"), bot.user(HOA, "Hoa")
    await nominate_tu(lan)
    (story,) = await stored(sessions)
    assert story.status == StoryStatus.SUBMITTED
    assert story.subject_member_id == await member_id(sessions, "Lê Văn Tư")
    assert story.unit_id == people["CDCS-MAYNT"]
    assert [p["file_ref"] for p in story.photos] == ["photo-vi"]

    # Hoa, the officer of the CĐCS, is told, with a button to open it.
    notice = (await hoa.wait_for(1))[-1]
    assert notice.text == (
        f"🌟 Gương sáng mới chờ duyệt: Lê Văn Tư ({MAYNT}), do Nguyễn Thị Lan giới thiệu."
    )
    shown = await hoa.press("Xem và duyệt", notice)
    assert [m.method for m in shown] == ["sendMessage", "sendPhoto", "sendMessage"]
    assert shown[1].file_id == "photo-vi"
    assert shown[-1].text.startswith(
        f"🌟 Gương sáng chờ duyệt (1/1)\nGiới thiệu: Lê Văn Tư (👤 Một người, {MAYNT})\n"
        "Người giới thiệu: Nguyễn Thị Lan, lúc 01/03/2023 08:00"
    )
    assert shown[-1].labels == ["✅ Duyệt và đăng", "❌ Không duyệt", "⏭ Để sau"]
    done = await hoa.press("Duyệt và đăng")
    assert done[0].text.startswith("✅ Đã duyệt gương sáng về Lê Văn Tư; bài đang được đăng lên")
    assert done[-1].text == f"Không có gương sáng nào chờ duyệt trong {MAYNT}. 👍"

    # CDCS-MAYNT has no channel: CD-KCN's, the nearest above, gets the story and its photo.
    await bot.runtime.deliverer.drain()
    published = await bot.api.wait_for_messages(KCN_CHANNEL, 2)
    assert published[0].text == f"🌟 GƯƠNG NGƯỜI TỐT, VIỆC TỐT\nLê Văn Tư – {MAYNT}\n\n{STORY}"
    assert (published[1].method, published[1].file_id) == ("sendPhoto", "photo-vi")
    await pushed(lan, "🎉 Câu chuyện bạn giới thiệu về Lê Văn Tư đã được duyệt và đăng")
    (story,) = await stored(sessions)
    assert story.status == StoryStatus.APPROVED
    assert story.reviewer_id == await member_id(sessions, "Đỗ Thị Hoa")
    assert story.published_at is not None
    async with sessions() as session:
        account = await session.scalar(
            select(ChannelAccount).where(ChannelAccount.chat_id == str(KCN_CHANNEL))
        )
        assert account is not None
        assert account.member_id is None  # nobody's: no broadcast ever reaches it

    # Pressing the notice again changes nothing.
    again = await hoa.press("Xem và duyệt", notice)
    assert again[-1].text == "Câu chuyện này đã được duyệt hoặc từ chối trước đó."

    # Members of the branch read it; the whole story with its photo on request.
    tu = bot.user(TU, "Tư")
    await tu.send("/story")
    page = (await tu.press("Xem gương sáng"))[-1]
    assert page.text.startswith(f"📖 Gương người tốt, việc tốt ({MAYNT}) – trang 1/1:\n\n1. 🌟")
    assert page.labels == ["📖 1. Lê Văn Tư"]
    read = await tu.press("1. Lê Văn Tư")
    assert read[0].text == f"🌟 Lê Văn Tư – {MAYNT} (01/03/2023)\n\n{STORY}"
    assert read[1].file_id == "photo-vi"


async def test_a_rejected_story_is_not_published_and_the_nominator_reads_why(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    async with sessions() as session, session.begin():
        root = await session.get(Unit, people["LDLD-NT"])
        assert root is not None
        root.publish_chat = str(PROVINCE_CHANNEL)  # it would be published there
    cuc, thu, minh = bot.user(CUC, "Cúc"), bot.user(THU, "Thu"), bot.user(MINH, "Minh")
    await cuc.send("/guongsang")
    await cuc.press("Giới thiệu")
    await cuc.press("Một tập thể")
    await cuc.send("Tổ Toán – Tin học")
    await cuc.send("Tổ Toán dạy bồi dưỡng miễn phí cho học sinh khó khăn suốt năm học.")
    await cuc.press("Xong")
    await cuc.press("Gửi giới thiệu")
    (story,) = await stored(sessions)
    assert story.collective
    assert story.unit_id == people["CDCS-CVA"]

    # CDCS-CVA has no officer: Thu, of CD-GD above it, is told.
    notice = (await thu.wait_for(1))[-1]
    assert notice.text.startswith("🌟 Gương sáng mới chờ duyệt: Tổ Toán – Tin học")
    # Minh, of another branch, forges the notice's button: refused, and sees no queue.
    forged = await minh.press_data(notice.callback_data("Xem và duyệt"))
    assert forged[-1].text == "Bạn không có quyền thực hiện thao tác này."
    forged = await minh.press_data(f"a:story:{story.id}:x")
    assert forged[-1].text == "Lựa chọn không hợp lệ, không có thay đổi nào."
    menu = await minh.send("/guongsang")
    assert all("Duyệt" not in label for label in menu[-1].labels)

    menu = await thu.send("/guongsang")
    assert menu[-1].labels[-1] == "🗂 Duyệt gương sáng (1 chờ duyệt)"
    await thu.press("Duyệt gương sáng")
    await thu.press("Không duyệt")
    refused = await thu.send("ok")
    assert refused[-1].text.startswith("Lý do cần 5–1000 ký tự (bạn gửi 2 ký tự).")
    assert (await stored(sessions))[0].status == StoryStatus.SUBMITTED
    done = await thu.send("Cần ghi rõ thời gian và kết quả cụ thể của việc bồi dưỡng.")
    assert done[0].text.startswith("❌ Đã ghi không duyệt gương sáng về Tổ Toán – Tin học")

    told = await pushed(cuc, "Câu chuyện bạn giới thiệu")
    assert told == (
        "Câu chuyện bạn giới thiệu về Tổ Toán – Tin học chưa được duyệt.\n"
        "Lý do: Cần ghi rõ thời gian và kết quả cụ thể của việc bồi dưỡng."
    )
    (story,) = await stored(sessions)
    assert story.status == StoryStatus.REJECTED
    assert story.published_at is None
    await bot.runtime.deliverer.drain()
    assert bot.api.messages_to(PROVINCE_CHANNEL) == []
    async with sessions() as session:
        publish_rows = await session.scalar(
            select(func.count(OutboxMessage.id))
            .join(ChannelAccount, ChannelAccount.id == OutboxMessage.account_id)
            .where(ChannelAccount.member_id.is_(None))
        )
        assert publish_rows == 0
    await cuc.send("/guongsang")
    empty = await cuc.press("Xem gương sáng")
    assert empty[-1].text.startswith(f"Chưa có gương sáng nào được duyệt trong {CVA}.")


async def add_approved(
    sessions: SessionFactory, people: dict[str, int], unit_code: str, name: str, at: datetime
) -> int:
    async with sessions() as session, session.begin():
        author = await session.scalar(select(Member).where(Member.full_name == "Lê Văn Tư"))
        assert author is not None
        story = Story(
            campaign_id=people["campaign"],
            author_id=author.id,
            unit_id=people[unit_code],
            subject_name=name,
            story=f"Câu chuyện về {name}: " + "việc tốt được mọi người ghi nhận. " * 3,
            photos=[],
            status=StoryStatus.APPROVED,
            reviewed_at=at,
            created_at=at,
        )
        session.add(story)
        await session.flush()
        return story.id


async def test_members_page_through_the_stories_of_their_branch_only(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    start = local("2023-02-20 09:00")
    for day in range(6):
        moment = start + timedelta(days=day)
        await add_approved(sessions, people, "CDCS-MAYNT", f"Người {day + 1}", moment)
    await add_approved(sessions, people, "CD-KCN", "Ban nữ công", start + timedelta(days=7))
    school = await add_approved(sessions, people, "CDCS-CVA", "Cô giáo Mai", start)
    lan = bot.user(LAN, "Lan")
    await lan.send("/guongsang")
    first = (await lan.press("Xem gương sáng"))[-1]
    assert first.text.startswith(f"📖 Gương người tốt, việc tốt ({MAYNT}) – trang 1/2:")
    # Newest first; the upper union's story concerns Lan too; the school's does not.
    assert first.labels == [
        "📖 1. Ban nữ công",
        "📖 2. Người 6",
        "📖 3. Người 5",
        "📖 4. Người 4",
        "📖 5. Người 3",
        "➡️ Trang sau",
    ]
    second = (await lan.press("Trang sau"))[-1]
    assert second.labels == ["📖 6. Người 2", "📖 7. Người 1", "⬅️ Trang trước"]
    assert "Cô giáo Mai" not in second.text
    forged = await lan.press_data(
        f"c:{second.buttons[0][0]['callback_data'].split(':')[1]}:r{school}"
    )
    assert forged[-1].text == "Lựa chọn không hợp lệ, không có thay đổi nào."


async def test_no_channel_anywhere_means_approved_and_listed_but_not_published(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    async with sessions() as session, session.begin():
        kcn = await session.get(Unit, people["CD-KCN"])
        assert kcn is not None
        kcn.publish_chat = None
    lan, hoa = bot.user(LAN, "Lan"), bot.user(HOA, "Hoa")
    await nominate_tu(lan)
    # Hoa's notice is pushed in the background: once it is in, the list's buttons come last.
    await hoa.wait_for(1)
    await hoa.send("/guongsang")
    await hoa.press("Duyệt gương sáng")
    done = await hoa.press("Duyệt và đăng")
    assert done[0].text.startswith(
        f"✅ Đã duyệt gương sáng về Lê Văn Tư. {MAYNT} và các cấp trên chưa đặt kênh đăng bài"
    )
    (story,) = await stored(sessions)
    assert story.status == StoryStatus.APPROVED
    assert story.published_at is None
    told = await pushed(lan, "🎉 Câu chuyện bạn giới thiệu về Lê Văn Tư đã được duyệt")
    assert "mọi người đọc được trong /guongsang" in told


async def roundups(sessions: SessionFactory) -> dict[str, str]:
    async with sessions() as session:
        rows = await session.execute(select(ScheduleRun.key, ScheduleRun.status))
        return {k: status.value for k, status in rows.all() if k.startswith("stories:")}


async def test_the_weekly_roundup_reaches_the_campaign_once_and_only_after_a_week_with_stories(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    lan, hoa = bot.user(LAN, "Lan"), bot.user(HOA, "Hoa")
    await nominate_tu(lan)
    # Hoa's notice is pushed in the background: once it is in, the list's buttons come last.
    await hoa.wait_for(1)
    await hoa.send("/guongsang")
    await hoa.press("Duyệt gương sáng")
    await hoa.press("Duyệt và đăng")  # Wednesday 01/03 08:00
    # Approved the week before: that Friday's roundup (24/02) is long past when the bot runs.
    await add_approved(sessions, people, "CDCS-CVA", "Cô giáo Mai", local("2023-02-23 09:00"))
    await bot.runtime.deliverer.drain()
    await settled(sessions)  # the author's notice may have been in flight in the background

    roundup = (
        "🌟 Gương người tốt, việc tốt tuần qua (1 câu chuyện):\n"
        f"• Lê Văn Tư – {MAYNT}\n"
        "Gõ /guongsang để đọc và giới thiệu thêm."
    )
    key = f"stories:{people['campaign']}@2023-03-03"
    minh = bot.user(MINH, "Minh")
    listed = (await minh.send("/lichgui"))[-1].text
    # Shown once a story is waiting for it: to everyone of CD-KCN, officer included.
    assert "• 08:00 03/03/2023 – Điểm tin gương người tốt, việc tốt trong tuần → 5 người nhận" in (
        listed
    )
    before = {chat: len(bot.api.messages_to(chat)) for chat in (LAN, CUC, MINH, THU)}

    clock.set(local("2023-03-03 07:59"))
    await bot.runtime.scheduler.tick()
    clock.set(local("2023-03-03 08:00"))  # Friday
    await bot.runtime.scheduler.tick()
    # Sent before the clock moves on: a jump past the claims' lease while the roundup is on
    # its way would let the drain below claim it a second time.
    await bot.runtime.deliverer.drain()
    await settled(sessions)
    clock.set(local("2023-03-03 08:05"))
    await bot.runtime.scheduler.tick()  # again: nothing more
    await bot.runtime.deliverer.drain()
    await settled(sessions)
    for chat in (LAN, CUC, MINH, THU):
        got = [m.text for m in bot.api.messages_to(chat)[before[chat] :]]
        assert got == [roundup], chat  # the whole campaign tree, once; last week's not again
    missed = f"stories:{people['campaign']}@2023-02-24"
    assert await roundups(sessions) == {missed: "skipped", key: "done"}

    # The week after has no new story: no roundup at all.
    clock.set(local("2023-03-10 08:00"))
    await bot.runtime.scheduler.tick()
    assert await roundups(sessions) == {missed: "skipped", key: "done"}


async def test_units_publish_sets_and_clears_a_units_channel(
    database_url: str, tmp_path: Path, sessions: SessionFactory, org: dict[str, int]
) -> None:
    env = {"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    status, out, err = await thidua(
        "units", "publish", "cdcs-maynt", "-1001234567890", env=env, cwd=tmp_path
    )
    assert status == 0, err
    assert out.startswith(
        f"Bài gương sáng được duyệt của {MAYNT} (CDCS-MAYNT) và các đơn vị cấp dưới"
    )
    async with sessions() as session:
        unit = await session.get(Unit, org["CDCS-MAYNT"])
        assert unit is not None
        assert unit.publish_chat == "-1001234567890"

    status, _, err = await thidua("units", "publish", "LDLD-NT", "kênh tỉnh", env=env, cwd=tmp_path)
    assert status == 2
    assert err.strip().startswith("“kênh tỉnh” không phải mã nhóm/kênh Telegram")
    status, _, err = await thidua("units", "publish", "NOPE", "@congdoan_nt", env=env, cwd=tmp_path)
    assert status == 1
    assert err.strip() == "Không có đơn vị mã NOPE."

    status, out, err = await thidua(
        "units", "publish", "CDCS-MAYNT", "--clear", env=env, cwd=tmp_path
    )
    assert status == 0, err
    async with sessions() as session:
        unit = await session.get(Unit, org["CDCS-MAYNT"])
        assert unit is not None
        assert unit.publish_chat is None
