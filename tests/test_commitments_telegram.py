"""Registering emulation commitments on Telegram: calendar, /dangky, /cuatoi, /donvi."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import Commitment, CommitmentKind, CommitmentStatus, Member, Unit
from tests.builders import add_campaign, add_member
from tests.fakes.telegram_api import SentMessage
from tests.telegram_harness import TelegramBot, TelegramUser

# 00:00 on 16/03/2023 in Hanoi: the first moment after the registration deadline.
AFTER_DEADLINE = datetime(2023, 3, 15, 17, 0, tzinfo=UTC)
MAYNT = "Công đoàn cơ sở Công ty TNHH May Ninh Thuận"
MUOI = "Công đoàn cơ sở Công ty Cổ phần Muối Ninh Thuận"
KCN = "Công đoàn các Khu công nghiệp tỉnh Ninh Thuận"
OUTSIDE_SUBTREE = "Bạn chỉ thao tác được với đơn vị của mình và các đơn vị cấp dưới."

# handlers/mine.py show() builds the commitment buttons with ctx.choice() and only then calls
# ctx.enter(FLOW, "pick"), which gives the conversation a new nonce: every button of /cuatoi
# carries the old nonce and is refused as stale ("Lựa chọn này đã cũ...").
# handlers/oversight.py: show() calls ctx.enter(FLOW, "list") after building the
# "Chưa đăng ký – …" buttons, and resume() calls ctx.goto("list") after building the page
# buttons; both rotate the nonce, so no list or page button of /donvi can be used.


async def start_campaign(
    sessions: SessionFactory, org: dict[str, int], *, late_registration: str = "allow"
) -> int:
    async with sessions() as session, session.begin():
        root = await session.get(Unit, org["LDLD-NT"])
        assert root is not None
        campaign = await add_campaign(session, root, late_registration=late_registration)
        return campaign.id


@pytest.fixture
async def campaign(sessions: SessionFactory, org: dict[str, int]) -> int:
    return await start_campaign(sessions, org)


async def stored(sessions: SessionFactory) -> list[Commitment]:
    async with sessions() as session:
        return list((await session.scalars(select(Commitment).order_by(Commitment.id))).all())


async def register(
    user: TelegramUser,
    movement: str,
    content: str,
    *,
    kind: str | None = None,
    unit: str | None = None,
    target: str | None = None,
) -> list[SentMessage]:
    """Go through /dangky without a pact; return the answers to "Gửi đăng ký"."""
    await user.send("/dangky")
    await user.press(movement)
    if kind is not None:  # officers are asked: individual or collective
        await user.press(kind)
    if unit is not None:
        await user.press(unit)
    await user.send(content)
    if target is None:
        await user.press("Bỏ qua")
    else:
        await user.send(target)
    await user.press("Không giao ước")
    return await user.press("Gửi đăng ký")


async def open_commitment(user: TelegramUser, reference: str) -> SentMessage:
    """Open /cuatoi and pick one commitment; return the card with its actions."""
    await user.send("/cuatoi")
    return (await user.press(reference))[-1]


# --- calendar and movements --------------------------------------------------------------


async def test_calendar_shows_phase_deadlines_and_milestones(
    bot: TelegramBot, org: dict[str, int], campaign: int
) -> None:
    [calendar] = await bot.user(1001, "Lan").send("/lich")
    text = calendar.text
    assert "Phong trào thi đua yêu nước năm 2023" in text
    assert "Đang diễn ra: Đợt I (01/02/2023 – 30/06/2023), còn 121 ngày." in text
    assert "• 15/03/2023 – Đăng ký thi đua gửi về LĐLĐ tỉnh (còn 14 ngày)" in text
    assert "• 19/05/2023 – Kỷ niệm 133 năm Ngày sinh Chủ tịch Hồ Chí Minh" in text
    assert text.index("Hạn sắp tới") < text.index("15/03/2023")
    assert text.index("Mốc sắp tới") < text.index("19/05/2023")


async def test_movements_put_the_members_sector_first(
    bot: TelegramBot, org: dict[str, int], campaign: int
) -> None:
    [answer] = await bot.user(1001, "Lan").send("/phongtrao")
    text = answer.text
    order = [
        "Dành cho khối của bạn",
        "Năng suất cao, chất lượng tốt",
        "Dành cho tất cả đoàn viên",
        "Lao động giỏi, lao động sáng tạo",
        "Dành cho khối khác",
        "Cán bộ, công chức, viên chức nói không với tiêu cực",
        "/dangky",
    ]
    positions = [text.index(part) for part in order]
    assert positions == sorted(positions)


# --- registering -------------------------------------------------------------------------


async def test_member_registers_an_individual_commitment(
    bot: TelegramBot,
    org: dict[str, int],
    campaign: int,
    sessions: SessionFactory,
    clock: ManualClock,
) -> None:
    lan = bot.user(1001, "Lan")

    movements = (await lan.send("/dangky"))[-1]
    assert "phong trào nào" in movements.text
    assert movements.labels[0] == "Năng suất cao, chất lượng tốt"  # her sector's first

    asked = (await lan.press("Lao động giỏi"))[-1]
    assert "Phong trào: Lao động giỏi, lao động sáng tạo" in asked.text
    assert "(10–1000 ký tự)" in asked.text
    assert asked.labels == []  # a plain member is not asked individual or collective
    assert not any("tập thể" in message.text for message in lan.inbox)

    too_short = await lan.send("Làm tốt")
    assert "ít nhất 10 ký tự (bạn gửi 7 ký tự)" in too_short[-1].text
    too_long = await lan.send("a" * 1001)
    assert "tối đa 1000 ký tự (bạn gửi 1001 ký tự)" in too_long[-1].text

    target_question = (await lan.send("Giảm 1,5 tấn vải vụn trong năm 2023"))[-1]
    assert "chỉ tiêu" in target_question.text
    assert target_question.labels == ["Bỏ qua"]
    unreadable = await lan.send("nhiều lắm")
    assert "Chưa đọc được chỉ tiêu" in unreadable[-1].text

    pact_question = (await lan.send("1,5 tấn"))[-1]
    assert pact_question.labels == ["Không giao ước", "🤝 Giao ước với đoàn viên khác"]

    summary = (await lan.press("Không giao ước"))[-1]
    assert "Phong trào: Lao động giỏi, lao động sáng tạo" in summary.text
    assert "Hình thức: cá nhân" in summary.text
    assert "Nội dung: Giảm 1,5 tấn vải vụn trong năm 2023" in summary.text
    assert "Chỉ tiêu: 1,5 tấn" in summary.text
    assert "nộp muộn" not in summary.text
    assert summary.labels == ["✅ Gửi đăng ký", "✏️ Sửa nội dung", "❌ Hủy"]

    receipt = (await lan.press("Gửi đăng ký"))[-1]
    assert "Đã ghi nhận đăng ký thi đua DK-2023-000001" in receipt.text
    assert "Lao động giỏi, lao động sáng tạo" in receipt.text

    second = await register(lan, "Năng suất cao", "Không để sản phẩm lỗi nào lọt qua khâu kiểm")
    assert "DK-2023-000002" in second[-1].text

    first, other = await stored(sessions)
    assert first.reference == "DK-2023-000001"
    assert first.kind == CommitmentKind.INDIVIDUAL
    assert first.unit_id == org["CDCS-MAYNT"]
    assert first.campaign_id == campaign
    assert first.content == "Giảm 1,5 tấn vải vụn trong năm 2023"
    assert first.target_value == 1.5
    assert first.target_unit == "tấn"
    assert first.status == CommitmentStatus.REGISTERED
    assert first.late is False
    assert first.progress_percent == 0
    assert first.created_at == clock.now()
    assert other.reference == "DK-2023-000002"
    assert other.target_value is None
    assert other.target_unit is None
    assert other.author_id == first.author_id


async def test_a_commitment_button_in_mine_opens_it(
    bot: TelegramBot, org: dict[str, int], campaign: int
) -> None:
    lan = bot.user(1001, "Lan")
    await register(lan, "Lao động giỏi", "Đề xuất một sáng kiến cải tiến chuyền may")
    mine = (await lan.send("/cuatoi"))[-1]
    assert "DK-2023-000001 (cá nhân) – Lao động giỏi, lao động sáng tạo" in mine.text
    assert "Trạng thái: đã đăng ký, tiến độ 0%" in mine.text
    assert mine.labels == ["DK-2023-000001"]
    card = (await lan.press("DK-2023-000001"))[-1]
    assert "Lựa chọn này đã cũ" not in card.text
    assert card.labels == ["📈 Cập nhật tiến độ", "✏️ Sửa nội dung", "🗑 Rút đăng ký"]


async def test_edit_and_withdraw_before_the_deadline(
    bot: TelegramBot, org: dict[str, int], campaign: int, sessions: SessionFactory
) -> None:
    lan = bot.user(1001, "Lan")
    await register(lan, "Lao động giỏi", "Đề xuất một sáng kiến cải tiến chuyền may")
    await register(lan, "Năng suất cao", "Giữ tỉ lệ hàng lỗi dưới một phần trăm")

    card = await open_commitment(lan, "DK-2023-000001")
    assert "Nội dung đầy đủ: Đề xuất một sáng kiến cải tiến chuyền may" in card.text
    assert card.labels == ["📈 Cập nhật tiến độ", "✏️ Sửa nội dung", "🗑 Rút đăng ký"]
    asked = await lan.press("Sửa nội dung")
    assert "(10–1000 ký tự)" in asked[-1].text
    short = await lan.send("ngắn")
    assert "ít nhất 10 ký tự" in short[-1].text
    edited = await lan.send("Đề xuất hai sáng kiến cải tiến chuyền may")
    assert "Đã sửa nội dung đăng ký DK-2023-000001" in edited[-1].text

    await open_commitment(lan, "DK-2023-000002")
    confirm = (await lan.press("Rút đăng ký"))[-1]
    assert "chắc chắn muốn rút đăng ký DK-2023-000002" in confirm.text
    kept = await lan.press("Giữ lại")
    assert "vẫn được giữ nguyên" in kept[-1].text
    assert (await stored(sessions))[1].status == CommitmentStatus.REGISTERED

    await open_commitment(lan, "DK-2023-000002")
    await lan.press("Rút đăng ký")
    withdrawn = await lan.press("Rút đăng ký")
    assert "Đã rút đăng ký DK-2023-000002" in withdrawn[-1].text

    first, second = await stored(sessions)
    assert first.content == "Đề xuất hai sáng kiến cải tiến chuyền may"
    assert first.status == CommitmentStatus.REGISTERED
    assert second.status == CommitmentStatus.WITHDRAWN

    mine = (await lan.send("/cuatoi"))[-1]
    withdrawn_part = mine.text[mine.text.index("DK-2023-000002") :]
    assert "Trạng thái: đã rút" in withdrawn_part
    assert "Đề xuất hai sáng kiến" in mine.text
    assert mine.labels == ["DK-2023-000001"]  # a withdrawn commitment cannot be picked


async def test_after_the_deadline_only_progress_can_change(
    bot: TelegramBot,
    org: dict[str, int],
    campaign: int,
    sessions: SessionFactory,
    clock: ManualClock,
) -> None:
    lan = bot.user(1001, "Lan")
    await register(lan, "Lao động giỏi", "Đề xuất một sáng kiến cải tiến chuyền may")
    clock.set(AFTER_DEADLINE)

    await open_commitment(lan, "DK-2023-000001")
    refused = await lan.press("Sửa nội dung")
    assert "Đã quá hạn đăng ký (15/03/2023) nên không sửa hoặc rút" in refused[-1].text
    await open_commitment(lan, "DK-2023-000001")
    refused = await lan.press("Rút đăng ký")
    assert "Đã quá hạn đăng ký (15/03/2023) nên không sửa hoặc rút" in refused[-1].text

    await open_commitment(lan, "DK-2023-000001")
    percent = (await lan.press("Cập nhật tiến độ"))[-1]
    assert percent.labels == ["25%", "50%", "75%", "✅ Hoàn thành"]
    note = (await lan.press("50%"))[-1]
    assert note.labels == ["Bỏ qua"]
    saved = await lan.send("Đã nộp bản thảo sáng kiến cho phòng kỹ thuật")
    assert "Đã cập nhật tiến độ DK-2023-000001: 50%" in saved[-1].text
    [commitment] = await stored(sessions)
    assert commitment.progress_percent == 50
    assert commitment.progress_note == "Đã nộp bản thảo sáng kiến cho phòng kỹ thuật"

    await open_commitment(lan, "DK-2023-000001")
    await lan.press("Cập nhật tiến độ")
    await lan.press("Hoàn thành")
    saved = await lan.press("Bỏ qua")
    assert "Đã cập nhật tiến độ DK-2023-000001: 100%" in saved[-1].text

    [commitment] = await stored(sessions)
    assert commitment.content == "Đề xuất một sáng kiến cải tiến chuyền may"
    assert commitment.status == CommitmentStatus.REGISTERED
    assert commitment.progress_percent == 100
    assert commitment.progress_note == "Đã nộp bản thảo sáng kiến cho phòng kỹ thuật"
    mine = (await lan.send("/cuatoi"))[-1]
    assert "Trạng thái: đã đăng ký, tiến độ 100%" in mine.text


async def test_a_typed_percentage_is_read_and_nonsense_is_refused(
    bot: TelegramBot, org: dict[str, int], campaign: int, sessions: SessionFactory
) -> None:
    lan = bot.user(1001, "Lan")
    await register(lan, "Lao động giỏi", "Đề xuất một sáng kiến cải tiến chuyền may")
    await open_commitment(lan, "DK-2023-000001")
    await lan.press("Cập nhật tiến độ")
    for nonsense in ("150", "một nửa"):
        answer = await lan.send(nonsense)
        assert "số từ 0 đến 100" in answer[-1].text
    await lan.send("40%")
    saved = await lan.press("Bỏ qua")
    assert "40%" in saved[-1].text
    [commitment] = await stored(sessions)
    assert commitment.progress_percent == 40
    assert commitment.progress_note is None


async def test_late_registration_is_accepted_and_marked_late(
    bot: TelegramBot,
    org: dict[str, int],
    campaign: int,
    sessions: SessionFactory,
    clock: ManualClock,
) -> None:
    clock.set(AFTER_DEADLINE)
    lan = bot.user(1001, "Lan")
    opening = await lan.send("/dangky")
    assert "Đã quá hạn đăng ký (15/03/2023)" in opening[0].text
    assert "nộp muộn" in opening[0].text
    await lan.press("Lao động giỏi")
    await lan.send("Đề xuất một sáng kiến cải tiến chuyền may")
    await lan.press("Bỏ qua")
    summary = (await lan.press("Không giao ước"))[-1]
    assert "Sau hạn 15/03/2023: sẽ ghi nhận là nộp muộn" in summary.text
    receipt = (await lan.press("Gửi đăng ký"))[-1]
    assert "DK-2023-000001" in receipt.text
    assert "nộp muộn sau hạn 15/03/2023" in receipt.text

    [commitment] = await stored(sessions)
    assert commitment.late is True
    mine = (await lan.send("/cuatoi"))[-1]
    assert "DK-2023-000001 (cá nhân) – Lao động giỏi, lao động sáng tạo – nộp muộn" in mine.text


async def test_late_registration_is_refused_when_the_campaign_says_so(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    await start_campaign(sessions, org, late_registration="refuse")
    lan = bot.user(1001, "Lan")

    # Started on time, sent after midnight: refused at the last step.
    clock.set(datetime(2023, 3, 15, 16, 50, tzinfo=UTC))
    await lan.send("/dangky")
    await lan.press("Lao động giỏi")
    await lan.send("Đề xuất một sáng kiến cải tiến chuyền may")
    await lan.press("Bỏ qua")
    await lan.press("Không giao ước")
    clock.set(AFTER_DEADLINE)
    refused = await lan.press("Gửi đăng ký")
    assert "Đã hết hạn đăng ký (15/03/2023)" in refused[-1].text
    assert "không nhận đăng ký sau hạn" in refused[-1].text

    # Starting after the deadline is refused at once, with no flow to continue.
    refused = await lan.send("/dangky")
    assert len(refused) == 1
    assert "Đã hết hạn đăng ký (15/03/2023)" in refused[0].text
    assert refused[0].labels == []
    assert await stored(sessions) == []


# --- officers: collective commitments ------------------------------------------------------


async def test_officer_registers_for_a_unit_below_and_not_outside(
    bot: TelegramBot, org: dict[str, int], campaign: int, sessions: SessionFactory
) -> None:
    minh = bot.user(9001, "Minh")
    await minh.send("/dangky")
    kind = (await minh.press("Lao động giỏi"))[-1]
    assert "cho cá nhân bạn hay cho tập thể" in kind.text
    assert kind.labels == ["👤 Cá nhân", "👥 Tập thể (đơn vị)"]

    units = (await minh.press("Tập thể"))[-1]
    assert sorted(units.labels) == sorted(
        [f"{KCN} (CD-KCN)", f"{MAYNT} (CDCS-MAYNT)", f"{MUOI} (CDCS-MUOI)"]
    )
    real = units.callback_data("(CDCS-MAYNT)")
    nonce_part = real.rsplit(":", 1)[0]
    for outside in ("CDCS-CVA", "CD-GD", "LDLD-NT"):
        forged = await minh.press_data(f"{nonce_part}:u{org[outside]}")
        assert forged[-1].text == OUTSIDE_SUBTREE
    searched = await minh.send("chu van an")
    assert "Không tìm thấy đơn vị nào thuộc phạm vi của bạn" in searched[-1].text
    assert await stored(sessions) == []

    asked = await minh.press_data(real, units.message_id)
    assert f"Đăng ký tập thể cho {MAYNT}" in asked[-1].text
    await minh.send("Toàn đơn vị đạt danh hiệu tập thể lao động xuất sắc")
    await minh.press("Bỏ qua")
    summary = (await minh.press("Không giao ước"))[-1]
    assert f"Hình thức: tập thể – {MAYNT}" in summary.text
    receipt = await minh.press("Gửi đăng ký")
    assert "DK-2023-000001" in receipt[-1].text

    [commitment] = await stored(sessions)
    assert commitment.kind == CommitmentKind.COLLECTIVE
    assert commitment.unit_id == org["CDCS-MAYNT"]
    async with sessions() as session:
        minh_id = await session.scalar(select(Member.id).where(Member.full_name == "Trần Văn Minh"))
    assert commitment.author_id == minh_id


async def test_officer_may_also_register_individually(
    bot: TelegramBot, org: dict[str, int], campaign: int, sessions: SessionFactory
) -> None:
    minh = bot.user(9001, "Minh")
    receipt = await register(
        minh, "Lao động giỏi", "Hướng dẫn mười đoàn viên viết sáng kiến", kind="Cá nhân"
    )
    assert "DK-2023-000001" in receipt[-1].text
    [commitment] = await stored(sessions)
    assert commitment.kind == CommitmentKind.INDIVIDUAL
    assert commitment.unit_id == org["CD-KCN"]


# --- officers: following registration -----------------------------------------------------


async def add_25_members_to_muoi(sessions: SessionFactory, org: dict[str, int]) -> None:
    async with sessions() as session, session.begin():
        muoi = await session.get(Unit, org["CDCS-MUOI"])
        assert muoi is not None
        for number in range(1, 26):
            await add_member(session, muoi, f"Đoàn viên {number:02d}")


async def test_units_overview_counts_registrations_per_grassroots_union(
    bot: TelegramBot, org: dict[str, int], campaign: int, sessions: SessionFactory
) -> None:
    await add_25_members_to_muoi(sessions, org)
    minh = bot.user(9001, "Minh")
    before = (await minh.send("/donvi"))[-1]
    assert f"• {MAYNT}: 0/1 đoàn viên đã đăng ký (0%)" in before.text

    await register(bot.user(1001, "Lan"), "Lao động giỏi", "Đề xuất một sáng kiến mới")
    overview = (await minh.send("/donvi"))[-1]
    assert f"Đơn vị: {KCN}" in overview.text
    assert f"• {MAYNT}: 1/1 đoàn viên đã đăng ký (100%)" in overview.text
    assert f"• {MUOI}: 0/25 đoàn viên đã đăng ký (0%)" in overview.text
    assert "Chu Văn An" not in overview.text
    assert "Giáo dục" not in overview.text
    # Only units with members still to register offer the list.
    assert overview.labels == [f"Chưa đăng ký – {MUOI}"]


async def test_members_not_registered_are_listed_in_pages(
    bot: TelegramBot, org: dict[str, int], campaign: int, sessions: SessionFactory
) -> None:
    await add_25_members_to_muoi(sessions, org)
    minh = bot.user(9001, "Minh")
    await minh.send("/donvi")

    page = (await minh.press("Chưa đăng ký"))[-1]
    assert f"Đoàn viên chưa đăng ký thi đua – {MUOI} (1–10/25):" in page.text
    assert "• Đoàn viên 01 – " in page.text
    assert "• Đoàn viên 10 – " in page.text
    assert "Đoàn viên 11" not in page.text
    assert page.labels == ["Trang sau ▶"]

    page = (await minh.press("Trang sau"))[-1]
    assert "(11–20/25)" in page.text
    assert "• Đoàn viên 11 – " in page.text
    assert "• Đoàn viên 20 – " in page.text
    assert "Đoàn viên 10 " not in page.text
    assert "Đoàn viên 21" not in page.text
    assert page.labels == ["Trang sau ▶", "◀ Trang trước"]

    # The same nonce with another subtree's unit: refused.
    nonce_part = page.callback_data("Trang sau").split(":")[1]
    for outside in ("CD-GD", "CDCS-CVA", "LDLD-NT"):
        forged = await minh.press_data(f"c:{nonce_part}:n{org[outside]}:0")
        assert forged[-1].text == OUTSIDE_SUBTREE

    last = (await minh.press("Trang sau"))[-1]
    assert "(21–25/25)" in last.text
    assert last.labels == ["◀ Trang trước"]


async def test_units_overview_is_for_officers_only(
    bot: TelegramBot, org: dict[str, int], campaign: int
) -> None:
    answer = await bot.user(1001, "Lan").send("/donvi")
    assert answer[-1].text == "Chức năng này chỉ dành cho cán bộ công đoàn."
    assert answer[-1].labels == []
    alias = await bot.user(1001, "Lan").send("/units")
    assert alias[-1].text == "Chức năng này chỉ dành cho cán bộ công đoàn."
