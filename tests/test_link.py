"""/lienket: one member on Telegram and Zalo, linked by a one-time code, never duplicated."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from storage import accounts
from storage.broadcasts import Audience, recipients
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import ChannelAccount, Member, Unit
from tests.telegram_harness import TelegramBot
from tests.zalo_harness import ZaloBot, running_zalo_bot

CODE = re.compile(r"/lienket ([A-Z0-9]{8})")
LAN = 1001  # the member Nguyễn Thị Lan on Telegram (the `org` fixture)


@pytest.fixture
async def zbot(database_url: str, clock: ManualClock) -> AsyncIterator[ZaloBot]:
    async with running_zalo_bot(database_url, clock) as bot:
        yield bot


def code_in(text: str) -> str:
    found = CODE.search(text)
    assert found, text
    return found.group(1)


async def member_count(sessions: SessionFactory) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Member)) or 0)


async def account(sessions: SessionFactory, channel: str, external_id: str) -> ChannelAccount:
    async with sessions() as session:
        found = await session.scalar(
            select(ChannelAccount).where(
                ChannelAccount.channel == channel, ChannelAccount.external_id == external_id
            )
        )
    assert found is not None
    return found


async def test_a_telegram_member_links_zalo_and_gets_reminders_there(
    zbot: ZaloBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    lan = zbot.telegram.user(LAN, "Lan")
    shown = await lan.send("/lienket")
    assert "• Telegram (Lan)" in shown[0].text
    assert "10 phút" in shown[0].text
    code = code_in(shown[0].text)
    before = await member_count(sessions)

    # A newcomer's Zalo account, which has no member yet: the code links it.
    zalo = zbot.zalo_user("5b1c0e2f9a7d4c3b2a10", "Lan Zalo")
    done = await zalo.send(f"/lienket {code.lower()}")
    assert "Đã liên kết tài khoản này với đoàn viên Nguyễn Thị Lan" in done[-1].text
    assert await member_count(sessions) == before
    telegram_account = await account(sessions, "telegram", str(LAN))
    zalo_account = await account(sessions, "zalo", "5b1c0e2f9a7d4c3b2a10")
    assert zalo_account.member_id == telegram_account.member_id is not None
    # The member hears of it on the other messenger.
    notice = await lan.wait_for(2)  # the code, then the notice
    assert "Zalo (Lan Zalo) vừa được liên kết" in notice[-1].text
    # Zalo now knows her as a member.
    profile = await zalo.send("/toi")
    assert "Nguyễn Thị Lan" in profile[0].text

    # The code was used up.
    other = zbot.zalo_user("77aa0e2f9a7d4c3b2a99", "Someone")
    assert "không đúng hoặc đã hết hạn" in (await other.send(f"/lienket {code}"))[-1].text

    # She picks Zalo for reminders.
    again = await lan.send("/lienket")
    assert "nhận nhắc việc và thông báo qua tài khoản nào" in again[-1].text
    picked = await lan.press("Zalo")
    assert "Từ nay nhắc việc và thông báo sẽ được gửi qua Zalo (Lan Zalo)" in picked[-1].text
    async with sessions() as session:
        member_id = zalo_account.member_id
        assert member_id is not None
        preferred = await accounts.preferred(session, member_id)
        assert preferred is not None
        assert preferred.id == zalo_account.id
        tg = await session.get(ChannelAccount, telegram_account.id)
        assert tg is not None
        assert not tg.preferred
        # A broadcast to her union reaches her on Zalo, though Telegram was used more lately.
        unit = await session.get(Unit, org["CDCS-MAYNT"])
        assert unit is not None
        rows = (
            await session.execute(recipients(unit, Audience("everyone"), exclude_member_id=None))
        ).all()
    assert zalo_account.id in {row.account_id for row in rows}
    assert telegram_account.id not in {row.account_id for row in rows}
    # Writing on Telegram later does not take the reminders back.
    await lan.send("/toi")
    async with sessions() as session:
        preferred = await accounts.preferred(session, member_id)
    assert preferred is not None
    assert preferred.channel == "zalo"

    # On Zalo the listing marks it; a third account's link is told on Zalo, her choice.
    listed = await zalo.send("/lienket")
    assert "Zalo (Lan Zalo) ⭐" in listed[0].text
    third = zbot.telegram.user(1002, "Lan 2")
    seen = len(zalo.inbox)
    await third.send(f"/lienket {code_in(listed[0].text)}")
    told = await zalo.wait_for(seen + 1)
    assert "Telegram (Lan 2) vừa được liên kết" in told[-1].text


async def test_expired_and_wrong_codes_are_refused_and_guessing_is_limited(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    lan = bot.user(LAN, "Lan")
    code = code_in((await lan.send("/lienket"))[0].text)
    clock.advance(timedelta(minutes=11))
    newcomer = bot.user(5555, "Mới")
    expired = await newcomer.send(f"/lienket {code}")
    assert "không đúng hoặc đã hết hạn" in expired[-1].text
    assert (await account(sessions, "telegram", "5555")).member_id is None

    fresh = code_in((await lan.send("/lienket"))[0].text)
    for wrong in ("ABCDEFGH", "XYZ", "22222222", "HHHHHHHH"):
        answer = await newcomer.send(f"/lienket {wrong}")
        assert "không đúng hoặc đã hết hạn" in answer[-1].text
    # The fifth wrong one, then even the right code is refused for a while.
    await newcomer.send("/lienket QQQQQQQQ")
    blocked = await newcomer.send(f"/lienket {fresh}")
    assert "sai mã liên kết quá nhiều lần" in blocked[-1].text
    assert (await account(sessions, "telegram", "5555")).member_id is None

    clock.advance(timedelta(minutes=10))
    fresh = code_in((await lan.send("/lienket"))[0].text)
    linked = await newcomer.send(f"/lienket {fresh}")
    assert "Đã liên kết tài khoản này" in linked[-1].text


async def test_an_account_of_another_member_cannot_be_linked(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory
) -> None:
    lan = bot.user(LAN, "Lan")
    code = code_in((await lan.send("/lienket"))[0].text)
    minh = bot.user(9001, "Minh")  # an officer, a member of their own
    refused = await minh.send(f"/lienket {code}")
    assert "thuộc về một đoàn viên khác" in refused[-1].text
    minh_account = await account(sessions, "telegram", "9001")
    lan_account = await account(sessions, "telegram", str(LAN))
    assert minh_account.member_id != lan_account.member_id

    own = await lan.send(f"/lienket {code}")
    assert "đã được liên kết với bạn rồi" in own[-1].text

    # Without a code, a newcomer is told how linking works.
    hint = await bot.user(6666, "Khách").send("/lienket")
    assert "/lienket MÃ" in hint[-1].text
