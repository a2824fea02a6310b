"""Pacts (giao ước thi đua) on Telegram: proposing, accepting, declining, expiring, forging."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from scheduler.pacts import expire_pacts
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import (
    ChannelAccount,
    Member,
    OutboxMessage,
    Pact,
    PactStatus,
    Role,
    Unit,
)
from tests.builders import add_campaign, add_member
from tests.fakes.telegram_api import SentMessage
from tests.telegram_harness import TelegramBot, TelegramUser

MAYNT = "Công đoàn cơ sở Công ty TNHH May Ninh Thuận"
MUOI = "Công đoàn cơ sở Công ty Cổ phần Muối Ninh Thuận"
HUNG = f"Phạm Văn Hùng – {MUOI}"
DENIED = "Bạn không có quyền thực hiện thao tác này."
INVALID = "Lựa chọn không hợp lệ, không có thay đổi nào."


@pytest.fixture
async def people(sessions: SessionFactory, org: dict[str, int]) -> dict[str, int]:
    """The campaign, and the member ids of everyone the tests talk as."""
    async with sessions() as session, session.begin():
        units = {code: await session.get(Unit, unit_id) for code, unit_id in org.items()}
        root = units["LDLD-NT"]
        assert root is not None
        await add_campaign(session, root, pact_expiry_days=7)
        muoi, maynt, cva = units["CDCS-MUOI"], units["CDCS-MAYNT"], units["CDCS-CVA"]
        assert muoi is not None
        assert maynt is not None
        assert cva is not None
        hung = await add_member(session, muoi, "Phạm Văn Hùng", telegram_id=1002)
        tu = await add_member(session, maynt, "Lê Văn Tư", telegram_id=1003)
        cuc = await add_member(session, cva, "Võ Thị Cúc", telegram_id=1004)
        hoa = await add_member(session, maynt, "Đỗ Thị Hoa", role=Role.OFFICER, telegram_id=9002)
        others = {
            m.full_name: m.id
            for m in (await session.scalars(select(Member).where(Member.unit_id.in_(org.values()))))
        }
        return {
            "lan": others["Nguyễn Thị Lan"],
            "minh": others["Trần Văn Minh"],
            "hung": hung.id,
            "tu": tu.id,
            "cuc": cuc.id,
            "hoa": hoa.id,
        }


async def the_pact(sessions: SessionFactory) -> Pact:
    async with sessions() as session:
        pacts = (await session.scalars(select(Pact))).all()
    assert len(pacts) == 1
    return pacts[0]


async def register_with_pact(
    user: TelegramUser,
    content: str,
    search: str,
    pick: str,
    *,
    unit: str | None = None,
) -> list[SentMessage]:
    """Register with a pact: individually, or for `unit` when an officer gives one."""
    await user.send("/dangky")
    await user.press("Lao động giỏi")
    if unit is not None:
        await user.press("Tập thể")
        await user.press(unit)
    await user.send(content)
    await user.press("Bỏ qua")
    await user.press("Giao ước")
    await user.send(search)
    await user.press(pick)
    return await user.press("Gửi đăng ký")


async def lan_proposes_to_hung(bot: TelegramBot) -> SentMessage:
    """Lan registers with a pact with Hùng; return the prompt Hùng receives."""
    await register_with_pact(
        bot.user(1001, "Lan"), "Đề xuất một sáng kiến cải tiến chuyền may", "hung", "Phạm Văn Hùng"
    )
    return (await bot.user(1002, "Hùng").wait_for(1))[-1]


async def test_individual_pact_accepted(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    lan, hung = bot.user(1001, "Lan"), bot.user(1002, "Hùng")
    await lan.send("/dangky")
    await lan.press("Lao động giỏi")
    await lan.send("Đề xuất một sáng kiến cải tiến chuyền may")
    await lan.press("Bỏ qua")
    asked = await lan.press("Giao ước với đoàn viên khác")
    assert "cùng công đoàn cấp trên với bạn" in asked[-1].text
    too_short = await lan.send("h")
    assert "ít nhất 2 ký tự" in too_short[-1].text
    nobody = await lan.send("cuc")  # Cúc is under another upper-level union
    assert 'Không tìm thấy ai khớp với "cuc"' in nobody[-1].text
    found = (await lan.send("hung"))[-1]
    assert found.labels == [HUNG]
    summary = (await lan.press("Phạm Văn Hùng"))[-1]
    assert f"Giao ước với: {HUNG}" in summary.text
    sent = await lan.press("Gửi đăng ký")
    assert "DK-2023-000001" in sent[0].text
    assert f"Đã gửi đề nghị giao ước tới {HUNG}" in sent[-1].text
    assert "trước 08/03/2023" in sent[-1].text

    prompt = (await hung.wait_for(1))[-1]
    assert f"Nguyễn Thị Lan ({MAYNT}) đề nghị giao ước thi đua với bạn" in prompt.text
    assert "Phong trào: Lao động giỏi, lao động sáng tạo" in prompt.text
    assert "Mã: DK-2023-000001" in prompt.text
    assert "Vui lòng trả lời trước 08/03/2023" in prompt.text
    assert prompt.labels == ["🤝 Chấp nhận", "Từ chối"]

    waiting = (await hung.send("/cuatoi"))[-1]
    assert "Đề nghị giao ước chờ bạn trả lời" in waiting.text
    assert "• DK-2023-000001: Đề xuất một sáng kiến" in waiting.text
    assert waiting.labels == ["🤝 Nhận DK-2023-000001", "Từ chối DK-2023-000001"]
    assert "Giao ước: đang chờ bên kia trả lời" in (await lan.send("/cuatoi"))[-1].text

    told_before = len(lan.inbox)
    accepted = await hung.press("Chấp nhận", prompt)
    assert "Bạn đã chấp nhận giao ước thi đua DK-2023-000001" in accepted[-1].text
    assert prompt.buttons == []
    told = (await lan.wait_for(told_before + 1))[told_before]
    assert told.text == (
        "🤝 Phạm Văn Hùng đã chấp nhận giao ước thi đua với đăng ký DK-2023-000001 của bạn."
    )

    pact = await the_pact(sessions)
    assert pact.status == PactStatus.ACCEPTED
    assert pact.proposer_id == people["lan"]
    assert pact.counterpart_member_id == people["hung"]
    assert pact.counterpart_unit_id is None
    assert pact.responded_by_id == people["hung"]
    assert pact.responded_at == clock.now()
    assert pact.expires_at == clock.now() + timedelta(days=7)

    assert "Giao ước: đã được chấp nhận" in (await lan.send("/cuatoi"))[-1].text
    after = (await hung.send("/cuatoi"))[-1]
    assert "chờ bạn trả lời" not in after.text
    assert after.labels == []

    # The second button of the spent prompt, pressed anyway: nothing changes.
    again = await hung.press_data(f"a:pact:{pact.id}:n")
    assert again[-1].text == "Đề nghị giao ước này đã được chấp nhận trước đó."
    assert (await the_pact(sessions)).status == PactStatus.ACCEPTED


async def test_individual_pact_declined_from_mine(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    lan, hung = bot.user(1001, "Lan"), bot.user(1002, "Hùng")
    await lan_proposes_to_hung(bot)
    await hung.send("/cuatoi")
    told_before = len(lan.inbox)
    declined = await hung.press("Từ chối DK-2023-000001")
    assert "Bạn đã từ chối đề nghị giao ước DK-2023-000001" in declined[-1].text
    told = (await lan.wait_for(told_before + 1))[told_before]
    assert told.text == (
        "Phạm Văn Hùng đã từ chối đề nghị giao ước với đăng ký DK-2023-000001 của bạn."
    )

    pact = await the_pact(sessions)
    assert pact.status == PactStatus.DECLINED
    assert pact.responded_by_id == people["hung"]
    assert "Giao ước: bị từ chối" in (await lan.send("/cuatoi"))[-1].text
    assert "chờ bạn trả lời" not in (await hung.send("/cuatoi"))[-1].text


async def test_unanswered_pact_expires_and_the_proposer_is_told_once(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    lan, hung = bot.user(1001, "Lan"), bot.user(1002, "Hùng")
    prompt = await lan_proposes_to_hung(bot)
    runtime = bot.runtime

    clock.advance(timedelta(days=7) - timedelta(minutes=1))
    assert await expire_pacts(runtime.sessions, clock, runtime.texts) == 0
    assert (await the_pact(sessions)).status == PactStatus.PROPOSED

    clock.advance(timedelta(days=1))  # 8 days after the proposal
    told_before = len(lan.inbox)
    assert await expire_pacts(runtime.sessions, clock, runtime.texts) == 1
    runtime.deliverer.wake()
    told = (await lan.wait_for(told_before + 1))[told_before]
    assert "Đề nghị giao ước với đăng ký DK-2023-000001 của bạn đã hết hạn" in told.text
    assert "Đăng ký của bạn vẫn được giữ nguyên" in told.text
    assert await expire_pacts(runtime.sessions, clock, runtime.texts) == 0  # not twice

    late = await hung.press("Chấp nhận", prompt)
    assert late[-1].text == "Đề nghị giao ước này đã hết hạn."
    pact = await the_pact(sessions)
    assert pact.status == PactStatus.EXPIRED
    assert pact.responded_by_id is None
    assert pact.responded_at is None

    assert "Giao ước: hết hạn, chưa được trả lời" in (await lan.send("/cuatoi"))[-1].text
    assert "chờ bạn trả lời" not in (await hung.send("/cuatoi"))[-1].text
    assert len(lan.inbox) == told_before + 2  # the notice and /cuatoi, nothing more


async def test_proposer_is_told_even_when_the_counterpart_pressed_after_expiry(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    hung = bot.user(1002, "Hùng")
    prompt = await lan_proposes_to_hung(bot)
    clock.advance(timedelta(days=8))

    late = await hung.press("Chấp nhận", prompt)  # before the expiry job came round
    assert late[-1].text == "Đề nghị giao ước này đã hết hạn."
    assert (await the_pact(sessions)).status == PactStatus.EXPIRED
    await expire_pacts(bot.runtime.sessions, clock, bot.runtime.texts)

    async with sessions() as session:
        texts = (
            await session.scalars(
                select(OutboxMessage.payload)
                .join(ChannelAccount, ChannelAccount.id == OutboxMessage.account_id)
                .where(ChannelAccount.member_id == people["lan"])
            )
        ).all()
    assert any("đã hết hạn mà chưa được trả lời" in payload["text"] for payload in texts)


async def test_nobody_else_can_answer_an_individual_pact(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    prompt = await lan_proposes_to_hung(bot)
    accept = prompt.callback_data("Chấp nhận")
    # A colleague, the officer above both, and the proposer herself.
    for user in (bot.user(1003, "Tư"), bot.user(9001, "Minh"), bot.user(1001, "Lan")):
        refused = await user.press_data(accept)
        assert refused[-1].text == DENIED
    forged = await bot.user(1003, "Tư").press_data("a:pact:99999:y")
    assert forged[-1].text == INVALID
    pact = await the_pact(sessions)
    assert pact.status == PactStatus.PROPOSED
    assert pact.responded_by_id is None

    accepted = await bot.user(1002, "Hùng").press("Chấp nhận", prompt)
    assert "Bạn đã chấp nhận" in accepted[-1].text


async def test_a_forged_counterpart_outside_the_upper_level_union_is_refused(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    lan = bot.user(1001, "Lan")
    await lan.send("/dangky")
    await lan.press("Lao động giỏi")
    await lan.send("Đề xuất một sáng kiến cải tiến chuyền may")
    await lan.press("Bỏ qua")
    await lan.press("Giao ước với đoàn viên khác")
    found = (await lan.send("hung"))[-1]
    nonce_part = found.callback_data("Phạm Văn Hùng").rsplit(":", 1)[0]
    forged = await lan.press_data(f"{nonce_part}:p{people['cuc']}")
    assert forged[-1].text == INVALID
    assert "Võ Thị Cúc" not in forged[-1].text


async def test_member_without_a_channel_is_recorded_but_not_reached(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory, org: dict[str, int]
) -> None:
    async with sessions() as session, session.begin():
        muoi = await session.get(Unit, org["CDCS-MUOI"])
        assert muoi is not None
        await add_member(session, muoi, "Trương Văn Khoa")
    sent = await register_with_pact(
        bot.user(1001, "Lan"),
        "Đề xuất một sáng kiến cải tiến chuyền may",
        "khoa",
        "Trương Văn Khoa",
    )
    assert "chưa liên lạc được với họ" in sent[-1].text
    assert "hết hạn ngày 08/03/2023" in sent[-1].text
    assert (await the_pact(sessions)).status == PactStatus.PROPOSED


async def test_collective_pact_answered_by_the_nearest_officers(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory, org: dict[str, int]
) -> None:
    hoa, minh = bot.user(9002, "Hoa"), bot.user(9001, "Minh")
    await hoa.send("/dangky")
    await hoa.press("Lao động giỏi")
    units = (await hoa.press("Tập thể"))[-1]
    assert units.labels == [f"{MAYNT} (CDCS-MAYNT)"]  # her own CĐCS has nothing below
    await hoa.press("CDCS-MAYNT")
    await hoa.send("Toàn đơn vị đạt danh hiệu tập thể lao động xuất sắc")
    question = (await hoa.press("Bỏ qua"))[-1]
    assert question.labels == ["Không giao ước", "🤝 Giao ước với đơn vị khác"]
    await hoa.press("Giao ước với đơn vị khác")
    itself = await hoa.send("may ninh thuan")  # her own unit is no counterpart
    assert "Không tìm thấy ai khớp" in itself[-1].text
    found = (await hoa.send("muoi"))[-1]
    assert found.labels == [f"{MUOI} (CDCS-MUOI)"]
    nonce_part = found.callback_data("CDCS-MUOI").rsplit(":", 1)[0]
    own = await hoa.press_data(f"{nonce_part}:t{org['CDCS-MAYNT']}")
    assert own[-1].text == INVALID
    summary = (await hoa.press("CDCS-MUOI", found))[-1]
    assert f"Giao ước với: {MUOI}" in summary.text
    sent = await hoa.press("Gửi đăng ký")
    assert "DK-2023-000001" in sent[0].text
    assert f"Đã gửi đề nghị giao ước tới {MUOI}" in sent[-1].text

    # CDCS-MUOI has no officer of its own: the officer of CD-KCN above it is asked.
    prompt = (await minh.wait_for(1))[-1]
    assert f"Đỗ Thị Hoa ({MAYNT}) đề nghị giao ước thi đua với bạn" in prompt.text
    assert "Toàn đơn vị đạt danh hiệu" in prompt.text
    for other in (bot.user(1001, "Lan"), hoa, bot.user(1002, "Hùng")):
        refused = await other.press_data(prompt.callback_data("Chấp nhận"))
        assert refused[-1].text == DENIED
    assert (await the_pact(sessions)).status == PactStatus.PROPOSED

    told_before = len(hoa.inbox)
    accepted = await minh.press("Chấp nhận", prompt)
    assert "Bạn đã chấp nhận giao ước thi đua DK-2023-000001" in accepted[-1].text
    told = (await hoa.wait_for(told_before + 1))[told_before]
    assert "Trần Văn Minh đã chấp nhận giao ước thi đua với đăng ký DK-2023-000001" in told.text

    pact = await the_pact(sessions)
    assert pact.status == PactStatus.ACCEPTED
    assert pact.counterpart_unit_id == org["CDCS-MUOI"]
    assert pact.counterpart_member_id is None
    assert pact.proposer_id == people["hoa"]
    assert pact.responded_by_id == people["minh"]
    assert "Giao ước: đã được chấp nhận" in (await hoa.send("/cuatoi"))[-1].text


async def test_officer_asked_for_a_unit_below_sees_the_proposal_in_mine(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    minh = bot.user(9001, "Minh")
    await register_with_pact(
        bot.user(9002, "Hoa"),
        "Toàn đơn vị đạt danh hiệu tập thể lao động xuất sắc",
        "muoi",
        "CDCS-MUOI",
        unit="CDCS-MAYNT",
    )
    await minh.wait_for(1)
    waiting = (await minh.send("/cuatoi"))[-1]
    assert "Đề nghị giao ước chờ bạn trả lời" in waiting.text
    assert "🤝 Nhận DK-2023-000001" in waiting.labels


async def test_an_officer_cannot_answer_his_own_proposal(
    bot: TelegramBot, people: dict[str, int], sessions: SessionFactory
) -> None:
    # Minh, above both CĐCS, proposes a pact from CDCS-MAYNT to CDCS-MUOI, which has no
    # officer of its own: the prompt would come back to him, so it goes to nobody.
    minh = bot.user(9001, "Minh")
    sent = await register_with_pact(
        minh,
        "Toàn đơn vị đạt danh hiệu tập thể lao động xuất sắc",
        "muoi",
        "CDCS-MUOI",
        unit="CDCS-MAYNT",
    )
    assert "chưa liên lạc được" in sent[-1].text
    assert not any("đề nghị giao ước thi đua với bạn" in m.text for m in minh.inbox)

    pact = await the_pact(sessions)
    forged = await minh.press_data(f"a:pact:{pact.id}:y")
    assert forged[-1].text == DENIED
    assert (await the_pact(sessions)).status == PactStatus.PROPOSED


async def test_the_counterpart_sees_the_pact_after_answering(
    bot: TelegramBot, people: dict[str, int]
) -> None:
    prompt = await lan_proposes_to_hung(bot)
    hung = bot.user(1002, "Hùng")
    await hung.press("Chấp nhận", prompt)
    mine = (await hung.send("/cuatoi"))[-1].text
    assert "Giao ước thi đua với bạn" in mine
    assert "DK-2023-000001 – Nguyễn Thị Lan: đã chấp nhận" in mine
