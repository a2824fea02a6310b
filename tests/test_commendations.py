"""Commendations on Telegram: recorded by an officer of the branch, announced, listed in /cuatoi."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from storage.engine import SessionFactory
from storage.models import Broadcast, Commendation, Member, Phase, Role, Unit
from tests.builders import add_campaign, add_member
from tests.telegram_harness import TelegramBot, TelegramUser

MINH, LAN, TU, HOA, CUC, THU, SON = 9001, 1001, 1002, 9002, 1003, 9003, 1004
MAYNT = "Công đoàn cơ sở Công ty TNHH May Ninh Thuận"
MUOI = "Công đoàn cơ sở Công ty Cổ phần Muối Ninh Thuận"
REASON = "Hoàn thành vượt 120% định mức, không có sản phẩm lỗi trong quý I."


@pytest.fixture
async def people(sessions: SessionFactory, org: dict[str, int]) -> dict[str, int]:
    """Besides Minh (officer, CD-KCN) and Lan (CDCS-MAYNT): Tư, Lan's colleague; Hoa, officer
    of CDCS-MAYNT; Sơn of CDCS-MUOI; Cúc (CDCS-CVA) and Thu, officer of CD-GD, elsewhere."""
    async with sessions() as session, session.begin():
        units = {code: await session.get(Unit, unit_id) for code, unit_id in org.items()}
        root, maynt, muoi, cva, gd = (
            units[c] for c in ("LDLD-NT", "CDCS-MAYNT", "CDCS-MUOI", "CDCS-CVA", "CD-GD")
        )
        assert root is not None
        assert maynt is not None
        assert muoi is not None
        assert cva is not None
        assert gd is not None
        campaign = await add_campaign(session, root)
        await add_member(session, maynt, "Lê Văn Tư", telegram_id=TU)
        await add_member(session, maynt, "Đỗ Thị Hoa", role=Role.OFFICER, telegram_id=HOA)
        await add_member(session, muoi, "Hồ Văn Sơn", telegram_id=SON)
        await add_member(session, cva, "Võ Thị Cúc", telegram_id=CUC)
        await add_member(session, gd, "Trần Thị Thu", role=Role.OFFICER, telegram_id=THU)
        return {"campaign": campaign.id, **org}


async def stored(sessions: SessionFactory) -> list[Commendation]:
    async with sessions() as session:
        rows = await session.scalars(select(Commendation).order_by(Commendation.id))
        return list(rows.all())


async def member_id(sessions: SessionFactory, name: str) -> int:
    async with sessions() as session:
        found = await session.scalar(select(Member.id).where(Member.full_name == name))
        assert found is not None
        return found


def nonce_of(user: TelegramUser) -> str:
    """The nonce of the step the user's conversation is in, read off their last buttons."""
    return user.last_with_buttons().buttons[0][0]["callback_data"].split(":")[1]


async def test_an_officer_commends_a_member_who_is_announced_and_sees_it_in_mine(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    minh = bot.user(MINH, "Minh")
    asked = await minh.send("/khenthuong")
    assert asked[-1].text.startswith("🏅 Ghi nhận khen thưởng, biểu dương trong Công đoàn các Khu")
    assert asked[-1].labels == ["👤 Một đoàn viên", "🏢 Một đơn vị (tập thể)"]
    await minh.press("Một đoàn viên")
    found = await minh.send("nguyen thi lan")  # without accents
    assert found[-1].labels == [f"Nguyễn Thị Lan – {MAYNT}"]
    asked = await minh.press("Nguyễn Thị Lan")
    assert asked[-1].text.startswith("Danh hiệu hoặc hình thức khen thưởng cho Nguyễn Thị Lan?")
    assert asked[-1].labels[:3] == ["Lao động giỏi", "Lao động sáng tạo", "Chiến sĩ thi đua cơ sở"]
    await minh.press("Lao động giỏi")
    short = await minh.send("Giỏi")
    assert short[-1].text == ("Lý do cần 10–1000 ký tự (bạn gửi 4 ký tự). Vui lòng gửi lại.")
    asked = await minh.send(REASON)
    assert asked[-1].labels == ["Đợt I (đang diễn ra)", "Đợt II", "Không gắn với đợt nào"]
    summary = await minh.press("Đợt I")
    assert summary[-1].text == (
        "🏅 Xác nhận khen thưởng:\n"
        f"Đối tượng: đoàn viên Nguyễn Thị Lan ({MAYNT})\n"
        "Danh hiệu, hình thức: Lao động giỏi\n"
        f"Lý do: {REASON}\n"
        "Đợt thi đua: Đợt I\n"
        f"Thông báo sẽ được gửi tới đoàn viên của {MAYNT}."
    )
    done = await minh.press("Ghi nhận và thông báo")
    # Lan, Tư and Hoa are in Lan's CĐCS.
    assert done[-1].text.startswith(
        f"🏅 Đã ghi nhận Lao động giỏi cho đoàn viên Nguyễn Thị Lan ({MAYNT}). "
        f"Thông báo số 1 đang gửi tới 3 người trong {MAYNT}"
    )

    (commendation,) = await stored(sessions)
    assert commendation.member_id == await member_id(sessions, "Nguyễn Thị Lan")
    assert commendation.unit_id == people["CDCS-MAYNT"]
    assert commendation.awarded_by_id == await member_id(sessions, "Trần Văn Minh")
    assert (commendation.title, commendation.reason) == ("Lao động giỏi", REASON)
    async with sessions() as session:
        phase = await session.get(Phase, commendation.phase_id)
        assert phase is not None
        assert phase.name == "Đợt I"
        broadcast = await session.scalar(select(Broadcast))
        assert broadcast is not None
        assert broadcast.author_id == commendation.awarded_by_id
        assert broadcast.origin == f"commendation:{commendation.id}"

    await bot.runtime.deliverer.drain()
    announcement = (
        "🏅 KHEN THƯỞNG, BIỂU DƯƠNG\n"
        f"Biểu dương đoàn viên Nguyễn Thị Lan ({MAYNT}): Lao động giỏi – Đợt I.\n"
        f"Thành tích: {REASON}\n"
        "(Trần Văn Minh, Công đoàn các Khu công nghiệp tỉnh Ninh Thuận)"
    )
    lan = bot.user(LAN, "Lan")
    for user in (lan, bot.user(TU, "Tư"), bot.user(HOA, "Hoa")):
        assert (await user.wait_for(1))[-1].text == announcement
    # Outside Lan's CĐCS nobody is told, and the officer is not sent his own words.
    for chat in (SON, CUC, THU, MINH):
        assert all(m.text != announcement for m in bot.api.messages_to(chat))

    mine = (await lan.send("/cuatoi"))[-1].text
    assert f"🏅 Khen thưởng của bạn:\n• Lao động giỏi (01/03/2023, Đợt I): {REASON}" in mine
    assert "Khen thưởng" not in (await bot.user(TU, "Tư").send("/cuatoi"))[-1].text


async def test_an_officer_commends_a_unit_with_a_title_of_their_own(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    minh = bot.user(MINH, "Minh")
    await minh.send("/commend")
    listed = await minh.press("Một đơn vị")
    assert listed[-1].text == "Chọn đơn vị được khen thưởng, hoặc gõ tên/mã đơn vị để tìm:"
    assert f"{MUOI} (CDCS-MUOI)" in listed[-1].labels
    assert all("Giáo dục" not in label for label in listed[-1].labels)
    found = await minh.send("muoi")
    assert found[-1].labels == [f"{MUOI} (CDCS-MUOI)"]
    asked = await minh.press("Muối")
    assert asked[-1].labels[0] == "Tập thể lao động xuất sắc"
    again = await minh.send("7")  # a mistyped choice is not taken for a title
    assert again[-1].text.startswith("Danh hiệu cần 2–100 ký tự và có chữ (bạn gửi 1 ký tự).")
    assert again[-1].labels[0] == "Tập thể lao động xuất sắc"
    await minh.send("Đơn vị dẫn đầu khối thi đua")  # typed, not one of the choices
    await minh.send("Dẫn đầu phong trào Xanh, Sạch, Đẹp năm 2023.")
    summary = await minh.press("Không gắn với đợt nào")
    assert f"Đối tượng: tập thể {MUOI}\n" in summary[-1].text
    assert "Đợt thi đua: không gắn với đợt nào" in summary[-1].text
    done = await minh.press("Ghi nhận")
    assert "đang gửi tới 1 người trong" in done[-1].text

    (commendation,) = await stored(sessions)
    assert commendation.member_id is None
    assert commendation.unit_id == people["CDCS-MUOI"]
    assert commendation.title == "Đơn vị dẫn đầu khối thi đua"
    assert commendation.phase_id is None
    await bot.runtime.deliverer.drain()
    told = (await bot.user(SON, "Sơn").wait_for(1))[-1].text
    assert told.startswith(
        f"🏅 KHEN THƯỞNG, BIỂU DƯƠNG\nBiểu dương tập thể {MUOI}: Đơn vị dẫn đầu khối thi đua.\n"
    )
    assert bot.api.messages_to(LAN) == []


async def test_an_officer_cannot_commend_outside_their_branch_even_with_forged_presses(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    thu = bot.user(THU, "Thu")
    lan_id = await member_id(sessions, "Nguyễn Thị Lan")
    await thu.send("/khenthuong")
    await thu.press("Một đoàn viên")
    none = await thu.send("lan")
    assert none[-1].text == (
        "Không tìm thấy đoàn viên nào tên “lan” trong Công đoàn ngành Giáo dục tỉnh Ninh Thuận. "
        "Gõ tên khác để tìm lại."
    )
    found = await thu.send("cuc")
    assert found[-1].labels == ["Võ Thị Cúc – Công đoàn cơ sở Trường THPT Chu Văn An"]
    # A forged press with the step's valid nonce, naming Lan.
    refused = await thu.press_data(f"c:{nonce_of(thu)}:m{lan_id}")
    assert refused[-1].text == "Bạn chỉ thao tác được với đơn vị của mình và các đơn vị cấp dưới."

    await thu.send("/khenthuong")
    await thu.press("Một đơn vị")
    refused = await thu.press_data(f"c:{nonce_of(thu)}:u{people['CDCS-MAYNT']}")
    assert refused[-1].text == "Bạn chỉ thao tác được với đơn vị của mình và các đơn vị cấp dưới."
    refused = await thu.press_data(f"c:{nonce_of(thu)}:u{people['LDLD-NT']}")  # above her
    assert refused[-1].text == "Bạn chỉ thao tác được với đơn vị của mình và các đơn vị cấp dưới."
    found = await thu.send("MAYNT")
    assert found[0].text.startswith("Không tìm thấy đơn vị nào thuộc phạm vi của bạn")
    assert found[-1].labels[0] == "Công đoàn ngành Giáo dục tỉnh Ninh Thuận (CD-GD)"
    assert all("May" not in label for label in found[-1].labels)  # her own units offered again
    assert await stored(sessions) == []

    refused = await bot.user(LAN, "Lan").send("/khenthuong")
    assert refused[-1].text == "Chức năng này chỉ dành cho cán bộ công đoàn."


async def test_a_member_moved_out_of_the_branch_before_confirming_is_not_commended(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    minh = bot.user(MINH, "Minh")
    await minh.send("/khenthuong")
    await minh.press("Một đoàn viên")
    await minh.send("lan")
    await minh.press("Nguyễn Thị Lan")
    await minh.press("Giấy khen")
    await minh.send(REASON)
    await minh.press("Không gắn")
    async with sessions() as session, session.begin():
        lan = await session.get(Member, await member_id(sessions, "Nguyễn Thị Lan"))
        assert lan is not None
        lan.unit_id = people["CDCS-CVA"]  # moved to a school, outside Minh's branch
    refused = await minh.press("Ghi nhận")
    assert refused[-1].text == "Bạn chỉ thao tác được với đơn vị của mình và các đơn vị cấp dưới."
    assert await stored(sessions) == []
    async with sessions() as session:
        assert await session.scalar(select(Broadcast)) is None
