"""Congress works (công trình, sản phẩm chào mừng Đại hội) on Telegram: /congtrinh."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import CongressWork, CongressWorkUpdate, Role, Unit, WorkStatus
from tests.builders import add_campaign, add_member
from tests.factories import message_update
from tests.fakes.telegram_api import SentMessage
from tests.telegram_harness import TelegramBot, TelegramUser

MAYNT = "Công đoàn cơ sở Công ty TNHH May Ninh Thuận"
MUOI = "Công đoàn cơ sở Công ty Cổ phần Muối Ninh Thuận"
CVA = "Công đoàn cơ sở Trường THPT Chu Văn An"
GRASSROOTS_ONLY = (
    "Chức năng này dành cho cán bộ công đoàn cơ sở (CĐCS): mỗi CĐCS đăng ký một công trình, "
    "sản phẩm hoặc phần việc."
)
TITLE = "Sân chơi an toàn cho con công nhân"
DESCRIPTION = "Cải tạo khoảng sân trước nhà ăn thành sân chơi, xong trước tháng 10/2023."


@pytest.fixture
async def officers(sessions: SessionFactory, org: dict[str, int]) -> dict[str, int]:
    """The campaign, an officer of CDCS-MAYNT (Telegram 9002) and one of the province (9003)."""
    async with sessions() as session, session.begin():
        root = await session.get(Unit, org["LDLD-NT"])
        maynt = await session.get(Unit, org["CDCS-MAYNT"])
        assert root is not None
        assert maynt is not None
        await add_campaign(session, root)
        hoa = await add_member(session, maynt, "Đỗ Thị Hoa", role=Role.OFFICER, telegram_id=9002)
        chair = await add_member(
            session, root, "Nguyễn Văn Tỉnh", role=Role.OFFICER, telegram_id=9003
        )
        return {"hoa": hoa.id, "chair": chair.id}


async def works(sessions: SessionFactory) -> list[CongressWork]:
    async with sessions() as session:
        return list((await session.scalars(select(CongressWork).order_by(CongressWork.id))).all())


async def updates(sessions: SessionFactory) -> list[CongressWorkUpdate]:
    async with sessions() as session:
        statement = select(CongressWorkUpdate).order_by(CongressWorkUpdate.id)
        return list((await session.scalars(statement)).all())


async def send_photo(
    bot: TelegramBot, user: TelegramUser, caption: str, file_id: str
) -> list[SentMessage]:
    """Send a photo with a caption, as Telegram delivers it: several sizes, largest last."""
    update: dict[str, Any] = message_update(user.tg, "")
    message = update["message"]
    del message["text"]
    message["caption"] = caption
    message["photo"] = [
        {"file_id": f"{file_id}-small", "file_unique_id": "u-small", "width": 90, "height": 67},
        {
            "file_id": file_id,
            "file_unique_id": "u-large",
            "width": 1280,
            "height": 960,
            "file_size": 183_000,
        },
    ]
    before = len(user.inbox)
    await bot.deliver(update)
    return user.inbox[before:]


def unit_blocks(overview: str) -> dict[str, str]:
    """Split a /donvi answer into the lines about each unit, by unit name."""
    blocks = {}
    for block in overview.split("\n• ")[1:]:
        name, _, rest = block.partition(":")
        blocks[name] = rest
    return blocks


async def register_work(hoa: TelegramUser) -> list[SentMessage]:
    await hoa.send("/congtrinh")
    await hoa.send(TITLE)
    return await hoa.send(DESCRIPTION)


async def test_grassroots_officer_registers_and_reports_on_the_work(
    bot: TelegramBot,
    org: dict[str, int],
    officers: dict[str, int],
    sessions: SessionFactory,
    clock: ManualClock,
) -> None:
    hoa = bot.user(9002, "Hoa")
    asked = (await hoa.send("/congtrinh"))[-1]
    assert f"chào mừng Đại hội của {MAYNT}" in asked.text
    assert "Tên công trình (5–200 ký tự)?" in asked.text
    short = await hoa.send("Sân")
    assert short[-1].text == "Tên công trình cần 5–200 ký tự (bạn gửi 3 ký tự)."
    asked = (await hoa.send(TITLE))[-1]
    assert "(10–1000 ký tự)" in asked.text
    short = await hoa.send("Sân chơi")
    assert short[-1].text == "Mô tả cần 10–1000 ký tự (bạn gửi 8 ký tự)."
    too_long = await hoa.send("x" * 1001)
    assert too_long[-1].text == "Mô tả cần 10–1000 ký tự (bạn gửi 1001 ký tự)."
    receipt = await hoa.send(DESCRIPTION)
    assert receipt[-1].text == (
        f"✅ Đã đăng ký công trình CT-2023-000001 của {MAYNT}. Cập nhật tiến độ bằng /congtrinh."
    )

    [work] = await works(sessions)
    assert work.reference == "CT-2023-000001"
    assert work.unit_id == org["CDCS-MAYNT"]
    assert work.title == TITLE
    assert work.description == DESCRIPTION
    assert work.registered_by_id == officers["hoa"]
    assert work.status == WorkStatus.REGISTERED
    assert work.progress_percent == 0
    assert work.late is False

    # A second /congtrinh shows the work and explains there is one per CĐCS.
    again = await hoa.send("/congtrinh")
    card, one_per_unit = again
    assert f"Công trình CT-2023-000001: {TITLE}" in card.text
    assert "Trạng thái: đã đăng ký, tiến độ 0%" in card.text
    assert card.labels == ["📈 Cập nhật tiến độ", "✏️ Sửa"]
    assert "Mỗi công đoàn cơ sở đăng ký một công trình" in one_per_unit.text

    status = (await hoa.press("Cập nhật tiến độ"))[-1]
    assert status.labels == ["đang thực hiện", "đã hoàn thành"]
    asked = (await hoa.press("đang thực hiện"))[-1]
    assert "có thể gửi kèm ảnh" in asked.text
    saved = await send_photo(bot, hoa, "Đã san nền, đang lắp cầu trượt", "AgACAgIAAxk-photo-1")
    assert saved[-1].text == (
        "📈 Đã cập nhật công trình CT-2023-000001: đang thực hiện, kèm ảnh minh chứng."
    )

    [update] = await updates(sessions)
    assert update.status == WorkStatus.IN_PROGRESS
    assert update.note == "Đã san nền, đang lắp cầu trượt"
    assert update.photo is not None
    assert update.photo["kind"] == "photo"
    assert update.photo["file_ref"] == "AgACAgIAAxk-photo-1"  # the largest size
    assert update.author_id == officers["hoa"]
    assert update.created_at == clock.now()
    [work] = await works(sessions)
    assert work.status == WorkStatus.IN_PROGRESS
    assert 0 < work.progress_percent < 100

    await hoa.send("/congtrinh")
    await hoa.press("Cập nhật tiến độ")
    await hoa.press("đã hoàn thành")
    saved = await hoa.send("Khánh thành sân chơi ngày 28/7")
    assert saved[-1].text == "📈 Đã cập nhật công trình CT-2023-000001: đã hoàn thành."
    _first, second = await updates(sessions)
    assert second.status == WorkStatus.COMPLETED
    assert second.progress_percent == 100
    assert second.photo is None
    [work] = await works(sessions)
    assert work.status == WorkStatus.COMPLETED
    assert work.progress_percent == 100

    # A member of that CĐCS sees the unit's work in /cuatoi.
    mine = (await bot.user(1001, "Lan").send("/cuatoi"))[-1]
    assert f"Công trình của đơn vị: {TITLE} – đã hoàn thành, 100%" in mine.text


async def test_the_work_can_be_edited(
    bot: TelegramBot, org: dict[str, int], officers: dict[str, int], sessions: SessionFactory
) -> None:
    hoa = bot.user(9002, "Hoa")
    await register_work(hoa)
    await hoa.send("/congtrinh")
    await hoa.press("Sửa")
    await hoa.send("Sân chơi và thư viện cho con công nhân")
    edited = await hoa.send(DESCRIPTION)
    assert edited[-1].text == "✏️ Đã sửa công trình CT-2023-000001."
    [work] = await works(sessions)
    assert work.title == "Sân chơi và thư viện cho con công nhân"
    assert work.reference == "CT-2023-000001"


async def test_a_note_is_needed_for_an_update(
    bot: TelegramBot, org: dict[str, int], officers: dict[str, int], sessions: SessionFactory
) -> None:
    hoa = bot.user(9002, "Hoa")
    await register_work(hoa)
    await hoa.send("/congtrinh")
    await hoa.press("Cập nhật tiến độ")
    await hoa.press("đang thực hiện")
    too_long = await hoa.send("y" * 1001)
    assert too_long[-1].text == "Ghi chú dài tối đa 1000 ký tự (bạn gửi 1001 ký tự)."
    assert await updates(sessions) == []
    saved = await hoa.send("Đã san nền")
    assert saved[-1].text == "📈 Đã cập nhật công trình CT-2023-000001: đang thực hiện."


async def test_only_grassroots_officers_register_works(
    bot: TelegramBot, org: dict[str, int], officers: dict[str, int], sessions: SessionFactory
) -> None:
    for user in (bot.user(9001, "Minh"), bot.user(1001, "Lan"), bot.user(9003, "Tỉnh")):
        answer = await user.send("/congtrinh")
        assert [m.text for m in answer] == [GRASSROOTS_ONLY]
        # Typing on does not start a registration either.
        follow = await user.send(TITLE)
        assert "Đã đăng ký công trình" not in follow[-1].text
    assert await works(sessions) == []


async def test_units_overview_shows_which_grassroots_unions_have_no_work(
    bot: TelegramBot, org: dict[str, int], officers: dict[str, int]
) -> None:
    minh, chair = bot.user(9001, "Minh"), bot.user(9003, "Tỉnh")
    blocks = unit_blocks((await minh.send("/donvi"))[-1].text)
    assert sorted(blocks) == sorted([MAYNT, MUOI])
    assert all("🏗 Chưa đăng ký công trình" in block for block in blocks.values())

    await register_work(bot.user(9002, "Hoa"))
    overview = (await minh.send("/donvi"))[-1].text
    blocks = unit_blocks(overview)
    assert "🏗 Đã đăng ký công trình" in blocks[MAYNT]
    assert "🏗 Chưa đăng ký công trình" in blocks[MUOI]

    # From the province: one line per upper-level union naming its CĐCS without a work.
    overview = (await chair.send("/donvi"))[-1].text
    assert f"🏗 1 CĐCS chưa đăng ký công trình: {MUOI}" in overview
    assert f"🏗 1 CĐCS chưa đăng ký công trình: {CVA}" in overview
    assert f"chưa đăng ký công trình: {MAYNT}" not in overview
