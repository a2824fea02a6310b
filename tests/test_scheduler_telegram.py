"""The schedule as people meet it: on Telegram, in `/lichgui`, and in `thidua schedule list`."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import Milestone, MilestoneKind, OutboxMessage, OutboxStatus, Unit
from tests.builders import add_campaign
from tests.cli_runner import thidua
from tests.telegram_harness import TelegramBot

HANOI = ZoneInfo("Asia/Ho_Chi_Minh")
ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "data" / "sample-units.csv"
PLAN = ROOT / "campaigns" / "ninh-thuan-2023.yaml"
MINH, LAN = 9001, 1001


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=HANOI).astimezone(UTC)


@pytest.fixture
async def campaign(sessions: SessionFactory, org: dict[str, int]) -> int:
    """The 2023 campaign over the `org` tree, with an evening get-together on 01/03."""
    async with sessions() as session, session.begin():
        root = await session.get(Unit, org["LDLD-NT"])
        assert root is not None
        created = await add_campaign(session, root)
        session.add(
            Milestone(
                campaign_id=created.id,
                code="GAP-MAT",
                kind=MilestoneKind.COMMEMORATION,
                falls_on=date(2023, 3, 1),
                announce_at="22:00",
                title="Gặp mặt nữ đoàn viên nhân ngày 8/3",
                announcement="Mời các chị đến hội trường công ty.",
                notice_days=[],
            )
        )
        return created.id


async def pending(sessions: SessionFactory) -> int:
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).where(OutboxMessage.status == OutboxStatus.PENDING)
        )
        return int(count or 0)


async def test_an_evening_announcement_waits_for_the_morning_then_arrives_once(
    bot: TelegramBot, sessions: SessionFactory, clock: ManualClock, campaign: int
) -> None:
    lan = bot.user(LAN, "Lan")
    runtime = bot.runtime
    clock.set(local("2023-03-01 22:00"))
    assert await runtime.scheduler.tick() == 5 - 3  # Minh and Lan; Hùng and the rest: none

    # 22:00 is within the quiet hours: queued, not pushed.
    assert await runtime.deliverer.drain() == 0
    clock.set(local("2023-03-02 06:59"))
    assert await runtime.deliverer.drain() == 0
    assert await pending(sessions) == 2
    assert lan.inbox == []

    clock.set(local("2023-03-02 07:00"))
    await runtime.deliverer.drain()
    received = await lan.wait_for(1)
    assert received[0].text == (
        "📅 Gặp mặt nữ đoàn viên nhân ngày 8/3\n\nMời các chị đến hội trường công ty."
    )
    await runtime.scheduler.tick()
    await runtime.deliverer.drain()
    assert [m.text for m in lan.inbox].count(received[0].text) == 1


async def test_officer_sees_the_coming_runs_of_their_branch_with_audience_sizes(
    bot: TelegramBot, campaign: int
) -> None:
    minh = bot.user(MINH, "Minh")
    answer = (await minh.send("/lichgui"))[-1].text.splitlines()
    assert answer[0] == (
        "🗓 Lịch gửi tự động 30 ngày tới (Công đoàn các Khu công nghiệp tỉnh Ninh Thuận):"
    )
    # Under CD-KCN nobody has registered: Lan is reminded, Minh too, in his officer's list.
    reminder = "Nhắc hạn (còn 7 ngày): Đăng ký thi đua gửi về LĐLĐ tỉnh"
    assert f"• 08:00 08/03/2023 – {reminder} → 2 người nhận" in answer
    assert "• 08:00 06/03/2023 – Tin tiến độ hằng tuần → 1 người nhận" in answer
    # The evening get-together is shown when it reaches phones: after the quiet hours.
    assert "• 07:00 02/03/2023 – Mốc: Gặp mặt nữ đoàn viên nhân ngày 8/3 → 2 người nhận" in answer

    lan = bot.user(LAN, "Lan")
    refused = await lan.send("/schedule")
    assert refused[-1].text == "Chức năng này chỉ dành cho cán bộ công đoàn."


async def test_schedule_list_prints_the_coming_runs_in_local_time(
    database_url: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    assert (await thidua("units", "import", str(UNITS), env=env, cwd=tmp_path))[0] == 0
    assert (await thidua("campaign", "import", str(PLAN), env=env, cwd=tmp_path))[0] == 0

    status, out, err = await thidua(
        "schedule", "list", "--from", "2023-03-01", "--days", "8", env=env, cwd=tmp_path
    )
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "Lịch gửi tự động 8 ngày tới: 3 lượt (giờ địa phương)."
    assert lines[1].startswith("06/03/2023 08:00  Tin tiến độ hằng tuần → 0 người nhận  [digest:")
    assert lines[2].startswith(
        "08/03/2023 08:00  Nhắc hạn (còn 7 ngày): Đăng ký thi đua, giao ước thi đua năm 2023"
    )
    assert lines[2].endswith("T-7@2023-03-15]")

    status, _, err = await thidua("schedule", "list", "--days", "0", env=env, cwd=tmp_path)
    assert status == 2
    assert err.strip() == "Số ngày (--days) phải từ 1 đến 366."
