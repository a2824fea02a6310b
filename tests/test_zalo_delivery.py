"""Pushed messages on Zalo: a broadcast reaching members on both messengers, the Zalo OA's
7-day window (reported, or reached on Telegram instead), and numbered menus that arrive by push."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from storage import outbox
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import (
    ChannelAccount,
    Conversation,
    Member,
    OutboxMessage,
    OutboxStatus,
    Role,
    Unit,
)
from tests.builders import add_campaign, add_member
from tests.waits import settled
from tests.zalo_harness import ZaloBot, running_zalo_bot

# Zalo ids (bot chat ids, OA user ids) and Telegram ids of the people below.
HOA, HUNG = "z-hoa-0001", "z-hung-0002"
TU, BAY, TAM = "oa-tu-0003", "oa-bay-0004", "oa-tam-0005"
MINH, LAN, BAY_TG = 9001, 1001, 1007
NOTICE = (
    "Kính gửi đoàn viên công đoàn,\n\n"
    + "Hạn đăng ký thi đua năm 2023 là ngày 15/3/2023. Đề nghị đoàn viên chưa đăng ký gõ /dangky. "
    * 30
    + "\n\nTrân trọng – Công đoàn các Khu công nghiệp."
)


async def add_account(
    session: object, member: Member, channel: str, external_id: str, seen: datetime
) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession

    assert isinstance(session, AsyncSession)
    session.add(
        ChannelAccount(
            channel=channel,
            external_id=external_id,
            chat_id=external_id,
            member_id=member.id,
            display_name=member.full_name,
            reachable=True,
            last_seen_at=seen,
            created_at=seen,
        )
    )
    await session.flush()


@pytest.fixture
async def people(sessions: SessionFactory, org: dict[str, int], clock: ManualClock) -> None:
    """Besides Minh (officer of CD-KCN) and Lan (CDCS-MAYNT), both on Telegram:

    Hoa, an officer of CD-KCN, and Hùng (CDCS-MUOI) on the Zalo bot; on the union's OA, Tư
    (wrote yesterday), Bảy (10 days ago, also on Telegram, last used a month ago) and Tám
    (8 days ago, nowhere else).
    """
    now = clock.now()
    async with sessions() as session, session.begin():
        units = {code: await session.get(Unit, unit_id) for code, unit_id in org.items()}
        root, kcn = units["LDLD-NT"], units["CD-KCN"]
        maynt, muoi = units["CDCS-MAYNT"], units["CDCS-MUOI"]
        assert root is not None
        assert kcn is not None
        assert maynt is not None
        assert muoi is not None
        await add_campaign(session, root)
        hoa = await add_member(session, kcn, "Đỗ Thị Hoa", role=Role.OFFICER)
        await add_account(session, hoa, "zalo", HOA, now - timedelta(hours=1))
        hung = await add_member(session, muoi, "Phạm Văn Hùng")
        await add_account(session, hung, "zalo", HUNG, now - timedelta(days=40))
        tu = await add_member(session, maynt, "Lê Văn Tư")
        await add_account(session, tu, "zalo_oa", TU, now - timedelta(days=1))
        bay = await add_member(session, maynt, "Ngô Văn Bảy", telegram_id=BAY_TG)
        await add_account(session, bay, "zalo_oa", BAY, now - timedelta(days=10))
        bay_telegram = await session.scalar(
            select(ChannelAccount).where(ChannelAccount.external_id == str(BAY_TG))
        )
        assert bay_telegram is not None
        bay_telegram.last_seen_at = now - timedelta(days=30)
        tam = await add_member(session, maynt, "Đặng Thị Tám")
        await add_account(session, tam, "zalo_oa", TAM, now - timedelta(days=8))


@pytest.fixture
async def zbot(database_url: str, clock: ManualClock) -> AsyncIterator[ZaloBot]:
    async with running_zalo_bot(database_url, clock) as bot:
        yield bot


def choice(text: str, label_part: str) -> str:
    """The number to type for the choice whose label contains `label_part`."""
    for line in text.split("\n"):
        number, dot, label = line.partition(". ")
        if dot and number.isdigit() and label_part in label:
            return number
    raise LookupError(f"no choice {label_part!r} in {text!r}")


async def menu_remembered(sessions: SessionFactory, external_id: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while True:
        async with sessions() as session:
            menu = await session.scalar(
                select(Conversation.menu)
                .join(ChannelAccount, ChannelAccount.id == Conversation.account_id)
                .where(ChannelAccount.external_id == external_id)
            )
        if menu:
            return
        assert time.monotonic() < deadline, "the pushed menu was not remembered"
        await asyncio.sleep(0.02)


async def account_of(sessions: SessionFactory, external_id: str) -> ChannelAccount:
    async with sessions() as session:
        account = await session.scalar(
            select(ChannelAccount).where(ChannelAccount.external_id == external_id)
        )
    assert account is not None
    return account


def joined(parts: list[str]) -> str:
    return " ".join(" ".join(parts).split())


async def test_a_broadcast_composed_on_zalo_reaches_both_messengers(
    zbot: ZaloBot, people: None, sessions: SessionFactory, clock: ManualClock
) -> None:
    hoa = zbot.zalo_user(HOA, "Hoa")
    menu = await hoa.send("/thongbao")
    asked = await hoa.send(choice(menu[-1].text, "Soạn thông báo mới"))
    assert "Gõ nội dung thông báo" in asked[-1].text
    preview = await hoa.send(NOTICE)
    assert len(NOTICE) > 2000
    assert all(len(m.text) <= 2000 for m in preview)
    audience = await hoa.send(choice(preview[-1].text, "Chọn người nhận"))
    counts = await hoa.send(choice(audience[-1].text, "Tất cả đoàn viên"))
    # The preview counts each member on the account sending now would use: Bảy, past the
    # OA's window, on Telegram; Tám, past it with no other messenger, still on the OA (the
    # window is applied again when each message is sent).
    assert counts[-1].text.startswith("Sẽ gửi tới 6 người (Telegram: 3, Zalo: 1, Zalo OA: 2).")
    sending = await hoa.send(choice(counts[-1].text, "Gửi ngay"))
    assert sending[-1].text.startswith("📤 Đang gửi thông báo #1 tới 6 người.")
    await settled(sessions)

    telegram = zbot.telegram_api
    for chat in (MINH, LAN, BAY_TG):
        assert [m.text for m in telegram.messages_to(chat)][-1] == NOTICE
    hung = [m.text for m in zbot.zalo.messages_to(HUNG)]
    tu = [m.text for m in zbot.oa.messages_to(TU)]
    for parts in (hung, tu):
        assert len(parts) == 2  # split under Zalo's 2,000 characters, at a sentence
        assert all(len(part) <= 2000 for part in parts)
        assert joined(parts) == joined([NOTICE])
    assert zbot.oa.messages_to(BAY) == []
    assert zbot.oa.messages_to(TAM) == []

    async with sessions() as session:
        rows = (
            await session.execute(
                select(ChannelAccount.external_id, OutboxMessage.status, OutboxMessage.last_error)
                .join(ChannelAccount, ChannelAccount.id == OutboxMessage.account_id)
                .where(OutboxMessage.broadcast_id.is_not(None))
            )
        ).all()
    statuses = {external: (OutboxStatus(status).value, error) for external, status, error in rows}
    assert statuses[TAM] == ("unreachable", "outside_window")
    assert statuses[str(BAY_TG)] == ("sent", None)
    assert statuses[HUNG] == ("sent", None)
    # Tám stays reachable: a word from her opens the window again.
    assert (await account_of(sessions, TAM)).reachable is True

    # The author is told on Zalo, and the report lists Tám with the reason.
    before = len(hoa.inbox)  # counted first: the message may come before the tick returns
    clock.advance(timedelta(minutes=1))
    await zbot.runtime.scheduler.tick()
    told = await hoa.wait_for(before + 1)
    assert told[-1].text.startswith(
        "📊 Thông báo #1 đã gửi xong: 5 người đã nhận, 0 lỗi, 1 không liên lạc được."
    )
    mine = await hoa.send("/thongbao")
    listing = await hoa.send(choice(mine[-1].text, "Thông báo của tôi"))
    report = await hoa.send(choice(listing[-1].text, "#1"))
    assert "Không liên lạc được: 1" in report[-1].text
    who = await hoa.send(choice(report[-1].text, "Ai chưa nhận được?"))
    assert (
        "• Đặng Thị Tám – Công đoàn cơ sở Công ty TNHH May Ninh Thuận "
        "(đã quá 7 ngày chưa nhắn tin cho Zalo OA, Zalo không cho gửi)"
    ) in who[-1].text


async def test_a_message_past_the_oa_window_goes_to_telegram_instead(
    zbot: ZaloBot, people: None, sessions: SessionFactory, clock: ManualClock
) -> None:
    bay = await account_of(sessions, BAY)
    tu = await account_of(sessions, TU)
    async with sessions() as session, session.begin():
        # Queued for the OA account (the one Bảy used last), as a notification would be.
        for account in (bay, tu):
            outbox.enqueue(
                session,
                account_id=account.id,
                channel="zalo_oa",
                payload={"text": "🔔 Nhắc hạn đăng ký thi đua"},
                now=clock.now(),
            )
    # Zalo itself refuses Tư: for its own reasons it counts him outside the window.
    zbot.oa.outside_window.add(TU)
    zbot.runtime.deliverer.wake()
    await settled(sessions)

    assert [m.text for m in zbot.telegram_api.messages_to(BAY_TG)] == [
        "🔔 Nhắc hạn đăng ký thi đua"
    ]
    assert zbot.oa.messages_to(BAY) == []
    assert zbot.oa.messages_to(TU) == []
    async with sessions() as session:
        rows = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
    moved, refused = rows
    assert (moved.channel, moved.status) == ("telegram", OutboxStatus.SENT)
    assert moved.account_id != bay.id
    assert (refused.status, refused.last_error) == (OutboxStatus.UNREACHABLE, "outside_window")
    assert (await account_of(sessions, TU)).reachable is True

    # Bảy writes to the OA again: the window is open, and the OA reaches him.
    await zbot.oa_user(BAY).send("/toi")
    async with sessions() as session, session.begin():
        outbox.enqueue(
            session,
            account_id=bay.id,
            channel="zalo_oa",
            payload={"text": "🔔 Lần nhắc thứ hai"},
            now=clock.now(),
        )
    zbot.runtime.deliverer.wake()
    await zbot.oa_user(BAY).wait_for(2)
    assert zbot.oa.messages_to(BAY)[-1].text == "🔔 Lần nhắc thứ hai"


async def test_an_officer_on_zalo_approves_a_pushed_request_by_number(
    zbot: ZaloBot, people: None, sessions: SessionFactory
) -> None:
    newcomer = zbot.telegram.user(3005, "Nam")
    await newcomer.send("/start")
    await newcomer.send("cong ty may")
    await newcomer.press("CDCS-MAYNT")
    await newcomer.send("Trần Văn Nam")
    await newcomer.press("Tôi đồng ý")

    hoa = zbot.zalo_user(HOA, "Hoa")
    request = (await hoa.wait_for(1))[-1]
    assert "Trần Văn Nam" in request.text
    # The menu is remembered once the delivery is recorded, some milliseconds after it
    # arrives; a person reads it first.
    await menu_remembered(sessions, HOA)
    approved = await hoa.send(choice(request.text, "Duyệt"))
    assert "Trần Văn Nam" in approved[-1].text
    async with sessions() as session:
        member = await session.scalar(select(Member).where(Member.full_name == "Trần Văn Nam"))
    assert member is not None
    assert member.status.value == "active"
