"""Joining a union on Telegram: by invitation link, and by search with an officer's approval."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import Invitation, Member, MemberStatus
from tests.builders import invitation_code
from tests.telegram_harness import TelegramBot


async def test_member_joins_by_deep_link(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    code = await invitation_code(sessions, org["CDCS-MAYNT"], clock.now())
    thu = bot.user(3001, "Thu")

    answers = await thu.send(f"/start {code}")
    assert "Công ty TNHH May Ninh Thuận" in answers[0].text
    assert "họ và tên" in answers[-1].text

    consent = await thu.send("Nguyễn Thị Thu")
    assert "Nghị định 13/2023/NĐ-CP" in consent[-1].text
    assert consent[-1].labels == ["Tôi đồng ý", "Không đồng ý"]

    welcome = await thu.press("Tôi đồng ý")
    assert "Chào mừng Nguyễn Thị Thu" in welcome[-1].text

    async with sessions() as session:
        member = await session.scalar(select(Member).where(Member.full_name == "Nguyễn Thị Thu"))
    assert member is not None
    assert member.status == MemberStatus.ACTIVE
    assert member.unit_id == org["CDCS-MAYNT"]
    assert member.consent_at == clock.now()
    assert member.consent_version == "1"

    profile = await thu.send("/toi")
    assert "Nguyễn Thị Thu" in profile[0].text
    assert "Công ty TNHH May" in profile[0].text
    assert "Telegram" in profile[0].text


async def test_expired_and_used_up_codes_are_explained(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    expired = await invitation_code(sessions, org["CDCS-MAYNT"], clock.now(), days=1)
    single = await invitation_code(sessions, org["CDCS-MAYNT"], clock.now(), uses=1)
    clock.advance(timedelta(days=2))

    answer = await bot.user(1002, "Hùng").send(f"/start {expired}")
    assert "đã hết hạn" in answer[0].text

    first = bot.user(1003, "Mai")
    await first.send(f"/start {single}")
    await first.send("Lê Thị Mai")
    await first.press("Tôi đồng ý")
    answer = await bot.user(1004, "Tú").send(f"/start {single}")
    assert "đã được dùng hết lượt" in answer[0].text

    answer = await bot.user(1005, "Nam").send("/start KHONGCO1")
    assert "không đúng" in answer[0].text


async def test_declining_consent_stores_no_member(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    code = await invitation_code(sessions, org["CDCS-MAYNT"], clock.now())
    user = bot.user(1010, "Hà")
    await user.send(f"/start {code}")
    await user.send("Phạm Thu Hà")
    answer = await user.press("Không đồng ý")
    assert "chưa đồng ý" in answer[-1].text
    async with sessions() as session:
        count = await session.scalar(select(func.count()).select_from(Member))
    assert count == 2  # only the officer and the member built beforehand


async def test_join_by_search_with_officer_approval(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    officer = bot.user(9001, "Minh")
    newcomer = bot.user(1020, "Bình")

    await newcomer.send("/start")
    results = await newcomer.send("cong ty may")
    assert any("Công ty TNHH May Ninh Thuận" in label for label in results[-1].labels)

    await newcomer.press("May Ninh Thuận")
    await newcomer.send("Võ Văn Bình")
    requested = await newcomer.press("Tôi đồng ý")
    assert "Đã gửi yêu cầu" in requested[-1].text

    prompt = (await officer.wait_for(1))[-1]
    assert "Võ Văn Bình" in prompt.text
    stale_reject = prompt.callback_data("Từ chối")
    before = len(newcomer.inbox)  # counted first: the news may come before the press returns
    decided = await officer.press("Duyệt", prompt)
    assert "Đã duyệt" in decided[-1].text

    told = await newcomer.wait_for(before + 1)
    assert "đã được duyệt" in told[-1].text
    async with sessions() as session:
        member = await session.scalar(select(Member).where(Member.full_name == "Võ Văn Bình"))
    assert member is not None
    assert member.status == MemberStatus.ACTIVE

    # A second press on the same request changes nothing and says so.
    assert prompt.buttons == []  # the spent buttons were taken off the message
    again = await officer.press_data(stale_reject, prompt.message_id)
    assert "đã được xử lý" in again[-1].text
    async with sessions() as session:
        member = await session.scalar(select(Member).where(Member.full_name == "Võ Văn Bình"))
    assert member is not None
    assert member.status == MemberStatus.ACTIVE


async def test_an_officer_sizes_a_code_as_the_command_line_does(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    minh = bot.user(9001, "Minh")
    await minh.send("/moi 300 30")
    await minh.press("May Ninh Thuận")
    created = await minh.press("Đoàn viên")
    assert "Số lượt dùng: 300" in created[-1].text
    assert f"Hết hạn: {(clock.now() + timedelta(days=30)).strftime('%d/%m')}" in created[-1].text
    code = created[-1].text.split("\n")[0].removeprefix("🎟 Mã mời: ")
    async with sessions() as session:
        invitation = await session.scalar(select(Invitation).where(Invitation.code == code))
    assert invitation is not None
    assert invitation.uses_left == 300

    # Plain /moi keeps the defaults, and says how to ask for more.
    await minh.send("/moi")
    await minh.press("May Ninh Thuận")
    default = await minh.press("Đoàn viên")
    assert "Số lượt dùng: 50" in default[-1].text
    assert "/moi 300 30" in default[-1].text
    for wrong in ("/moi nhiều", "/moi 0", "/moi 300 99999", "/moi 1 2 3"):
        refused = await minh.send(wrong)
        assert "Gõ /moi, hoặc /moi kèm số lượt dùng (1 đến 100000)" in refused[-1].text, wrong
