"""Join requests by search: who is asked, deciding them once, and what the applicant can do."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select, text, update

from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import ChannelAccount, Member, MemberStatus, OutboxMessage, Role, Unit
from tests.builders import add_member, add_unit, invitation_code
from tests.telegram_harness import TelegramBot, TelegramUser


async def _request_to_join(newcomer: TelegramUser, name: str) -> list[Any]:
    """Find the garment company's CĐCS, give a name, accept: a pending request."""
    await newcomer.send("/start")
    await newcomer.send("cong ty may")
    await newcomer.press("May Ninh Thuận")
    await newcomer.send(name)
    return await newcomer.press("Tôi đồng ý")


async def _member_named(sessions: SessionFactory, name: str) -> Member | None:
    async with sessions() as session:
        return await session.scalar(select(Member).where(Member.full_name == name))


async def _add_officer(
    sessions: SessionFactory, unit_id: int, name: str, telegram_id: int, *, reachable: bool = True
) -> None:
    async with sessions() as session, session.begin():
        unit = await session.get(Unit, unit_id)
        assert unit is not None
        member = await add_member(session, unit, name, role=Role.OFFICER, telegram_id=telegram_id)
        await session.execute(
            update(ChannelAccount)
            .where(ChannelAccount.member_id == member.id)
            .values(reachable=reachable)
        )


async def _messages_queued_to(sessions: SessionFactory, telegram_id: int) -> int:
    """Count the messages pushed (queued, sent or failed) to a Telegram user."""
    async with sessions() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .join(ChannelAccount, ChannelAccount.id == OutboxMessage.account_id)
                .where(ChannelAccount.external_id == str(telegram_id))
            )
            or 0
        )


async def _until_backends_wait_for_locks(sessions: SessionFactory, count: int) -> None:
    """Wait until `count` PostgreSQL backends of this database wait for a lock."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        # A transaction sees one snapshot of pg_stat_activity: each look is its own.
        async with sessions() as session:
            if (await session.scalar(query) or 0) >= count:
                return
        assert asyncio.get_running_loop().time() < deadline, "the presses never met the lock"
        await asyncio.sleep(0.01)


async def test_two_officers_deciding_one_request_at_once_decide_it_once(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    await _add_officer(sessions, org["CD-KCN"], "Đặng Thu Hà", 9002)
    minh, ha = bot.user(9001, "Minh"), bot.user(9002, "Hà")
    newcomer = bot.user(1030, "Tâm")
    await _request_to_join(newcomer, "Lê Văn Tâm")
    to_minh = (await minh.wait_for(1))[-1]
    to_ha = (await ha.wait_for(1))[-1]
    applicant = await _member_named(sessions, "Lê Văn Tâm")
    assert applicant is not None
    told_before = len(newcomer.inbox)

    async with sessions() as holder, holder.begin():
        postgres = holder.get_bind().dialect.name == "postgresql"
        if postgres:
            # Both presses read the request while a third transaction holds its row: both
            # then go on together when it lets go, the moment two decisions could collide.
            await holder.execute(
                select(Member.id).where(Member.id == applicant.id).with_for_update()
            )
        presses = asyncio.gather(minh.press("Duyệt", to_minh), ha.press("Từ chối", to_ha))
        if postgres:
            await _until_backends_wait_for_locks(sessions, 2)
    answers = [replies[-1].text for replies in await presses]

    decided = [a for a in answers if a.startswith(("Đã duyệt", "Đã từ chối"))]
    refused = [a for a in answers if "đã được xử lý trước đó" in a]
    assert len(decided) == 1, answers
    assert len(refused) == 1, answers
    await newcomer.wait_for(told_before + 1)
    assert await _messages_queued_to(sessions, 1030) == 1  # one verdict, not both
    final = await _member_named(sessions, "Lê Văn Tâm")
    assert final is not None
    expected = MemberStatus.ACTIVE if decided[0].startswith("Đã duyệt") else MemberStatus.REJECTED
    assert final.status == expected


async def test_a_request_goes_up_past_officers_the_bot_cannot_reach(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    # The CĐCS's own officer blocked the bot: the request goes one level up, to Minh.
    await _add_officer(sessions, org["CDCS-MAYNT"], "Phan Văn Sơn", 9003, reachable=False)
    minh = bot.user(9001, "Minh")
    sent = await _request_to_join(bot.user(1031, "Bé"), "Lê Thị Bé")
    assert "Đã gửi yêu cầu" in sent[-1].text
    prompt = (await minh.wait_for(1))[-1]
    assert "Lê Thị Bé" in prompt.text
    assert await _messages_queued_to(sessions, 9003) == 0


async def test_a_request_nobody_can_receive_is_not_sent_and_not_kept(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(update(ChannelAccount).values(reachable=False))
    answer = await _request_to_join(bot.user(1032, "Cúc"), "Trần Thị Cúc")
    assert "chưa được gửi" in answer[-1].text
    assert "mã mời" in answer[-1].text
    assert await _member_named(sessions, "Trần Thị Cúc") is None


async def test_a_pending_applicant_given_a_code_joins_with_it(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    newcomer = bot.user(1033, "Dũng")
    await _request_to_join(newcomer, "Hồ Văn Dũng")
    prompt = (await bot.user(9001, "Minh").wait_for(1))[-1]
    pending = await _member_named(sessions, "Hồ Văn Dũng")
    assert pending is not None
    assert pending.status == MemberStatus.PENDING

    code = await invitation_code(sessions, org["CDCS-MUOI"], clock.now())
    invited = await newcomer.send(f"/start {code}")
    assert "Muối Ninh Thuận" in invited[0].text
    await newcomer.send("Hồ Văn Dũng")
    joined = await newcomer.press("Tôi đồng ý")
    assert "Chào mừng Hồ Văn Dũng" in joined[-1].text

    member = await _member_named(sessions, "Hồ Văn Dũng")
    assert member is not None
    assert (member.id, member.status, member.unit_id) == (
        pending.id,  # the request became the membership: one record, not two
        MemberStatus.ACTIVE,
        org["CDCS-MUOI"],
    )
    late = await bot.user(9001, "Minh").press_data(prompt.callback_data("Từ chối"))
    assert "đã được xử lý trước đó" in late[-1].text
    member = await _member_named(sessions, "Hồ Văn Dũng")
    assert member is not None
    assert member.status == MemberStatus.ACTIVE


async def test_a_pending_applicant_can_withdraw_the_request(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    newcomer = bot.user(1034, "Em")
    await _request_to_join(newcomer, "Đỗ Thị Em")
    prompt = (await bot.user(9001, "Minh").wait_for(1))[-1]

    asked = await newcomer.send("/start")
    assert "đang chờ cán bộ công đoàn duyệt" in asked[-1].text
    assert asked[-1].labels == ["Giữ yêu cầu", "Rút yêu cầu"]
    withdrawn = await newcomer.press("Rút yêu cầu")
    assert "Đã rút yêu cầu" in withdrawn[-1].text
    assert await _member_named(sessions, "Đỗ Thị Em") is None

    # The next request must not be decided by the withdrawn one's old buttons.
    await _request_to_join(bot.user(1041, "Phúc"), "Kiều Văn Phúc")
    late = await bot.user(9001, "Minh").press_data(prompt.callback_data("Duyệt"))
    assert "không còn nữa" in late[-1].text
    next_one = await _member_named(sessions, "Kiều Văn Phúc")
    assert next_one is not None
    assert next_one.status == MemberStatus.PENDING
    again = await newcomer.send("/start")
    assert "gõ tên hoặc mã công đoàn cơ sở" in again[-1].text  # a newcomer once more


async def test_an_officer_lists_waiting_requests_of_their_branch_and_decides_them(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    await _add_officer(sessions, org["CD-GD"], "Vũ Thị Giang", 9004)
    minh, giang = bot.user(9001, "Minh"), bot.user(9004, "Giang")
    first, second = bot.user(1035, "Gấm"), bot.user(1036, "Hải")
    await _request_to_join(first, "Lý Thị Gấm")
    await _request_to_join(second, "Mai Văn Hải")
    await minh.wait_for(2)  # both prompts pushed, so the list's answers come alone

    listed = await minh.send("/yeucau")
    assert "(2)" in listed[0].text
    assert "Lý Thị Gấm xin tham gia Công đoàn cơ sở Công ty TNHH May" in listed[1].text
    assert "Mai Văn Hải" in listed[2].text
    assert listed[2].labels == ["✅ Duyệt", "❌ Từ chối"]
    decided = await minh.press("Duyệt", listed[2])
    assert "Đã duyệt: Mai Văn Hải" in decided[-1].text

    left = await minh.send("/yeucau")
    assert "(1)" in left[0].text
    assert "Lý Thị Gấm" in left[1].text
    # Another branch's officer sees none of them; a member may not look.
    elsewhere = await giang.send("/yeucau")
    assert "Không có yêu cầu tham gia nào" in elsewhere[-1].text
    refused = await bot.user(1001, "Lan").send("/yeucau")
    assert "cán bộ" in refused[-1].text


async def test_rejected_and_departed_people_are_told_where_they_stand(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    newcomer = bot.user(1037, "Khánh")
    await _request_to_join(newcomer, "Ngô Văn Khánh")
    minh = bot.user(9001, "Minh")
    await minh.press("Từ chối", (await minh.wait_for(1))[-1])

    for command in ("/dangky", "/lienket", "xin chào"):
        answer = await newcomer.send(command)
        assert "chưa được chấp nhận" in answer[-1].text, command
    helped = await newcomer.send("/help")
    assert "/start – tham gia công đoàn cơ sở" in helped[0].text
    assert "/dangky" not in helped[0].text
    assert "chưa được chấp nhận" in helped[-1].text

    async with sessions() as session, session.begin():
        lan = await session.scalar(select(Member).where(Member.full_name == "Nguyễn Thị Lan"))
        assert lan is not None
        lan.status = MemberStatus.LEFT
    answer = await bot.user(1001, "Lan").send("/dangky")
    assert "không còn là đoàn viên" in answer[-1].text


async def test_names_are_letters_and_consent_can_be_typed(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    code = await invitation_code(sessions, org["CDCS-MAYNT"], clock.now())
    user = bot.user(1038, "Lộc")
    await user.send(f"/start {code}")
    for name, said in (
        ("Phạm Văn 2", "(bạn đã gửi 2)"),
        ("Phạm 😀 Lộc", "(bạn đã gửi 😀)"),
        ("Phạm Văn Lộc\n\nphòng kỹ thuật", "trên một dòng"),
    ):
        answer = await user.send(name)
        assert said in answer[-1].text, name
    consent = await user.send("H'Lộc Niê-Phạm")
    assert "Nghị định 13/2023/NĐ-CP" in consent[-1].text
    joined = await user.send("Đồng ý.")
    assert "Chào mừng H'Lộc Niê-Phạm" in joined[-1].text


async def test_a_code_typed_alone_or_at_the_unit_search_is_taken_as_the_invitation(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    code = await invitation_code(sessions, org["CDCS-MUOI"], clock.now())
    user = bot.user(1039, "Mơ")
    await user.send("/start")
    answer = await user.send(code.lower())
    assert "Bạn được mời tham gia Công đoàn cơ sở Công ty Cổ phần Muối" in answer[0].text

    # Typed on its own, as a code passed on by word of mouth or over Zalo arrives.
    alone = await bot.user(1042, "Nhàn").send(f" {code} ")
    assert "Bạn được mời tham gia Công đoàn cơ sở Công ty Cổ phần Muối" in alone[0].text
    # Anything else a newcomer types still gets the hint, and a member's text is no code.
    hint = await bot.user(1043, "Oanh").send("ABCDEFGH")
    assert "Bạn chưa tham gia công đoàn" in hint[-1].text
    member = await bot.user(1001, "Lan").send(code)
    assert "Tôi chưa hiểu tin nhắn này" in member[-1].text


async def test_a_broad_search_says_there_are_more_units(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    async with sessions() as session, session.begin():
        parent = await session.get(Unit, org["CD-KCN"])
        assert parent is not None
        for n in range(9):
            await add_unit(
                session, f"CDCS-X{n}", f"Công đoàn cơ sở Công ty Xây dựng số {n}", parent=parent
            )
    user = bot.user(1040, "Na")
    await user.send("/start")
    answer = await user.send("xay dung")
    assert "Có hơn 8 công đoàn cơ sở khớp" in answer[-1].text
    assert len(answer[-1].labels) == 8
