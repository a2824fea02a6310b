"""The registration deadline at its edge: 23:59 on 15/03/2023 in Hanoi is on time, 00:00 late.

Everything must follow Asia/Ho_Chi_Minh, whatever time zone the server process runs in.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from storage.campaigns import is_past, local_day
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import Commitment, CongressWork, Role, Unit
from tests.builders import add_campaign, add_member
from tests.fakes.telegram_api import SentMessage
from tests.telegram_harness import TelegramBot, TelegramUser

HANOI = ZoneInfo("Asia/Ho_Chi_Minh")
DUE = date(2023, 3, 15)
LAST_MINUTE = datetime(2023, 3, 15, 16, 59, tzinfo=UTC)  # 23:59 on 15/03 in Hanoi
LAST_SECOND = datetime(2023, 3, 15, 16, 59, 59, 999999, tzinfo=UTC)
MIDNIGHT = datetime(2023, 3, 15, 17, 0, tzinfo=UTC)  # 00:00 on 16/03 in Hanoi
# Process time zones where the UTC day, the Hanoi day and the local day all disagree.
PROCESS_ZONES = [None, "America/New_York", "Pacific/Kiritimati", "UTC"]
# The day of the month MIDNIGHT falls on for the process, to prove the zone really changed.
PROCESS_DAY_AT_MIDNIGHT = {"America/New_York": 15, "Pacific/Kiritimati": 16, "UTC": 15}


@pytest.fixture(params=PROCESS_ZONES, ids=lambda zone: zone or "inherited")
def process_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run the test with the process's own time zone set to something other than Hanoi."""
    if request.param is not None:
        monkeypatch.setenv("TZ", request.param)
        time.tzset()
        day = time.localtime(MIDNIGHT.timestamp()).tm_mday
        assert day == PROCESS_DAY_AT_MIDNIGHT[request.param]
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


async def start_campaign(
    sessions: SessionFactory, org: dict[str, int], *, late_registration: str = "allow"
) -> None:
    async with sessions() as session, session.begin():
        root = await session.get(Unit, org["LDLD-NT"])
        assert root is not None
        await add_campaign(session, root, late_registration=late_registration)


async def stored(sessions: SessionFactory) -> list[Commitment]:
    async with sessions() as session:
        return list((await session.scalars(select(Commitment).order_by(Commitment.id))).all())


async def register(user: TelegramUser, content: str) -> list[SentMessage]:
    await user.send("/dangky")
    await user.press("Lao động giỏi")
    await user.send(content)
    await user.press("Bỏ qua")
    await user.press("Không giao ước")
    return await user.press("Gửi đăng ký")


# --- is_past itself ----------------------------------------------------------------------


@pytest.mark.usefixtures("process_zone")
@pytest.mark.parametrize(
    ("moment", "hanoi_day", "past"),
    [
        (datetime(2023, 3, 14, 17, 0, tzinfo=UTC), DUE, False),  # 00:00 on the due day
        (datetime(2023, 3, 15, 0, 0, tzinfo=UTC), DUE, False),  # 07:00 on the due day
        (LAST_MINUTE, DUE, False),
        (LAST_SECOND, DUE, False),
        (MIDNIGHT, date(2023, 3, 16), True),
        (datetime(2023, 3, 15, 23, 59, tzinfo=UTC), date(2023, 3, 16), True),  # 15/03 in UTC
        # 13:00 on 15/03 in New York is already 00:00 on 16/03 in Hanoi.
        (
            datetime(2023, 3, 15, 13, 0, tzinfo=ZoneInfo("America/New_York")),
            date(2023, 3, 16),
            True,
        ),
        # 06:59 on 16/03 in Kiritimati (UTC+14) is still 23:59 on 15/03 in Hanoi.
        (datetime(2023, 3, 16, 6, 59, tzinfo=ZoneInfo("Pacific/Kiritimati")), DUE, False),
    ],
)
def test_is_past_follows_the_campaigns_zone(moment: datetime, hanoi_day: date, past: bool) -> None:
    assert local_day(moment, HANOI) == hanoi_day
    assert is_past(DUE, moment, HANOI) is past


@pytest.mark.usefixtures("process_zone")
def test_is_past_the_day_before_and_after() -> None:
    assert not is_past(DUE, datetime(2023, 3, 1, 1, 0, tzinfo=UTC), HANOI)
    assert is_past(DUE, datetime(2023, 12, 31, 16, 59, tzinfo=UTC), HANOI)
    assert not is_past(date(2023, 3, 16), MIDNIGHT, HANOI)


# --- on Telegram -------------------------------------------------------------------------


@pytest.mark.usefixtures("process_zone")
async def test_registration_at_2359_is_on_time_and_at_midnight_late(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    await start_campaign(sessions, org)
    lan = bot.user(1001, "Lan")

    clock.set(LAST_MINUTE)
    calendar = (await lan.send("/lich"))[-1].text
    assert "• 15/03/2023 – Đăng ký thi đua gửi về LĐLĐ tỉnh (hôm nay)" in calendar
    opening = await lan.send("/dangky")
    assert not any("quá hạn" in message.text for message in opening)
    receipt = await register(lan, "Đề xuất một sáng kiến cải tiến chuyền may")
    assert "DK-2023-000001" in receipt[-1].text
    assert "nộp muộn" not in receipt[-1].text

    clock.set(MIDNIGHT)
    calendar = (await lan.send("/lich"))[-1].text
    assert "15/03/2023" not in calendar
    opening = await lan.send("/dangky")
    assert "Đã quá hạn đăng ký (15/03/2023)" in opening[0].text
    receipt = await register(lan, "Giữ tỉ lệ hàng lỗi dưới một phần trăm")
    assert "DK-2023-000002" in receipt[-1].text
    assert "nộp muộn sau hạn 15/03/2023" in receipt[-1].text

    on_time, late = await stored(sessions)
    assert on_time.late is False
    assert late.late is True


@pytest.mark.usefixtures("process_zone")
async def test_started_before_midnight_and_sent_after_is_late(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    await start_campaign(sessions, org)
    lan = bot.user(1001, "Lan")
    clock.set(LAST_MINUTE)
    await lan.send("/dangky")
    await lan.press("Lao động giỏi")
    await lan.send("Đề xuất một sáng kiến cải tiến chuyền may")
    await lan.press("Bỏ qua")
    summary = (await lan.press("Không giao ước"))[-1]
    assert "nộp muộn" not in summary.text
    clock.set(MIDNIGHT)
    receipt = await lan.press("Gửi đăng ký")
    assert "nộp muộn sau hạn 15/03/2023" in receipt[-1].text
    [commitment] = await stored(sessions)
    assert commitment.late is True


@pytest.mark.usefixtures("process_zone")
async def test_refusing_campaign_takes_2359_but_not_midnight(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    await start_campaign(sessions, org, late_registration="refuse")
    lan = bot.user(1001, "Lan")
    clock.set(LAST_MINUTE)
    receipt = await register(lan, "Đề xuất một sáng kiến cải tiến chuyền may")
    assert "DK-2023-000001" in receipt[-1].text
    clock.set(MIDNIGHT)
    refused = await lan.send("/dangky")
    assert "Đã hết hạn đăng ký (15/03/2023)" in refused[-1].text
    assert len(await stored(sessions)) == 1


async def test_an_edit_opened_at_2359_and_sent_at_midnight_is_refused(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    await start_campaign(sessions, org)
    lan = bot.user(1001, "Lan")
    clock.set(LAST_MINUTE)
    await register(lan, "Đề xuất một sáng kiến cải tiến chuyền may")
    await lan.send("/cuatoi")
    await lan.press("DK-2023-000001")
    await lan.press("Sửa nội dung")
    clock.set(MIDNIGHT)
    refused = await lan.send("Đề xuất hai sáng kiến cải tiến chuyền may")
    assert "Đã quá hạn đăng ký (15/03/2023) nên không sửa hoặc rút" in refused[-1].text
    [commitment] = await stored(sessions)
    assert commitment.content == "Đề xuất một sáng kiến cải tiến chuyền may"


async def test_congress_work_started_at_2359_is_refused_at_midnight_when_late_is_refused(
    bot: TelegramBot, org: dict[str, int], sessions: SessionFactory, clock: ManualClock
) -> None:
    await start_campaign(sessions, org, late_registration="refuse")
    async with sessions() as session, session.begin():
        maynt = await session.get(Unit, org["CDCS-MAYNT"])
        assert maynt is not None
        await add_member(session, maynt, "Đỗ Thị Hoa", role=Role.OFFICER, telegram_id=9002)
    hoa = bot.user(9002, "Hoa")
    clock.set(LAST_MINUTE)
    await hoa.send("/congtrinh")
    await hoa.send("Sân chơi an toàn cho con công nhân")
    clock.set(MIDNIGHT)
    answer = await hoa.send("Cải tạo khoảng sân trước nhà ăn thành sân chơi cho các cháu.")
    assert "Đã hết hạn đăng ký (15/03/2023)" in answer[-1].text
    async with sessions() as session:
        assert (await session.scalars(select(CongressWork))).all() == []
