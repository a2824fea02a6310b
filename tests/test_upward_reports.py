"""Upward reports: the pre-filled form, submitting it, who has not, and the late reminders."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.models import Audience as DeadlineAudience
from storage.models import (
    Commitment,
    CommitmentKind,
    Deadline,
    DeadlineKind,
    Member,
    Movement,
    ReportSubmission,
    Role,
    Unit,
)
from tests.builders import add_campaign, add_member
from tests.telegram_harness import TelegramBot

HANOI = ZoneInfo("Asia/Ho_Chi_Minh")
MINH, LAN, HOA, TU = 9001, 1001, 9002, 1002
TITLE = "Báo cáo sơ kết Đợt I"
MAYNT = "Công đoàn cơ sở Công ty TNHH May Ninh Thuận"
MUOI = "Công đoàn cơ sở Công ty Cổ phần Muối Ninh Thuận"


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=HANOI).astimezone(UTC)


@pytest.fixture
async def campaign(sessions: SessionFactory, org: dict[str, int]) -> int:
    """The 2023 campaign with a report due 15/07; Hoa is the officer of CDCS-MAYNT, where
    Lan has registered a commitment and Tư has not; CDCS-MUOI has no officer."""
    async with sessions() as session, session.begin():
        root = await session.get(Unit, org["LDLD-NT"])
        maynt = await session.get(Unit, org["CDCS-MAYNT"])
        assert root is not None
        assert maynt is not None
        created = await add_campaign(session, root)
        session.add(
            Deadline(
                campaign_id=created.id,
                code="BC-SO-KET-DOT-1",
                kind=DeadlineKind.REPORT,
                title=TITLE,
                due_on=date(2023, 7, 15),
                audience=DeadlineAudience.OFFICERS,
                reminder_days=[7],
            )
        )
        await add_member(session, maynt, "Đỗ Thị Hoa", role=Role.OFFICER, telegram_id=HOA)
        await add_member(session, maynt, "Lê Văn Tư", telegram_id=TU)
        lan = await session.scalar(select(Member).where(Member.full_name == "Nguyễn Thị Lan"))
        movement = await session.scalar(select(Movement).limit(1))
        assert lan is not None
        assert movement is not None
        session.add(
            Commitment(
                reference="DK-2023-000001",
                campaign_id=created.id,
                movement_id=movement.id,
                kind=CommitmentKind.INDIVIDUAL,
                author_id=lan.id,
                unit_id=lan.unit_id,
                content="Hoàn thành 110% định mức",
                created_at=local("2023-03-05 09:00"),
                updated_at=local("2023-03-05 09:00"),
            )
        )
        return created.id


async def test_the_form_arrives_prefilled_is_submitted_and_the_level_above_sees_it(
    bot: TelegramBot, sessions: SessionFactory, clock: ManualClock, campaign: int
) -> None:
    hoa, minh = bot.user(HOA, "Hoa"), bot.user(MINH, "Minh")
    clock.set(local("2023-07-08 08:00"))
    await bot.runtime.scheduler.tick()
    await bot.runtime.deliverer.drain()

    reminder = (await hoa.wait_for(1))[-1]
    assert reminder.text.splitlines()[:2] == [
        f"📝 {TITLE}: hạn nộp 15/07/2023, còn 7 ngày.",
        f"{MAYNT} chưa nộp báo cáo. Bấm nút dưới hoặc gõ /nopbaocao: số liệu đã được điền sẵn.",
    ]
    listed = (await minh.wait_for(1))[-1].text
    assert listed == (
        f"📝 {TITLE} (hạn 15/07/2023): 2 công đoàn cơ sở dưới Công đoàn các Khu công nghiệp "
        f"tỉnh Ninh Thuận chưa nộp báo cáo:\n• {MUOI}\n• {MAYNT}"
    )

    form = await hoa.press("Nộp báo cáo", reminder)
    assert form[0].text == (
        f"📝 {TITLE} – {MAYNT}\n"
        "Kỳ báo cáo: 01/02/2023 – 15/07/2023\n"
        "Số liệu (tự động từ hệ thống):\n"
        "• Đoàn viên: 3\n"
        "• Đã đăng ký thi đua: 1 (33%), trong kỳ thêm 1\n"
        "• Giao ước thi đua được chấp nhận: 0\n"
        "• Sáng kiến: đã gửi 0, được công nhận 0\n"
        "• Công trình chào mừng đại hội: chưa đăng ký"
    )
    too_short = await hoa.send("Tốt")
    assert too_short[-1].text == "Phần nổi bật cần 10–2000 ký tự (bạn gửi 3 ký tự)."
    await hoa.send("100% đoàn viên tham gia phong trào; 2 sáng kiến đang hoàn thiện.")
    done = await hoa.press("Nộp báo cáo")
    assert (
        done[-1].text == f"✅ {MAYNT} đã nộp báo cáo “{TITLE}”. Cấp trên đã thấy báo cáo của bạn."
    )

    async with sessions() as session:
        (submitted,) = (await session.scalars(select(ReportSubmission))).all()
    assert submitted.figures["registered"] == 1
    assert submitted.highlights.startswith("100% đoàn viên")

    status = await minh.send("/nopbaocao")
    assert status[-1].text == (
        f"📊 {TITLE} – hạn 15/07/2023: 1/2 công đoàn cơ sở đã nộp.\n"
        f"Đã nộp: {MAYNT}\nChưa nộp: {MUOI}"
    )

    # A day after the deadline only the officers above Muối hear of it; Hoa has reported.
    before_hoa, before_minh = len(hoa.inbox), len(minh.inbox)
    clock.set(local("2023-07-16 08:00"))
    await bot.runtime.scheduler.tick()
    await bot.runtime.deliverer.drain()
    late = (await minh.wait_for(before_minh + 1))[-1].text
    assert late.endswith(f"chưa nộp báo cáo:\n• {MUOI}")
    assert len(hoa.inbox) == before_hoa


async def test_members_cannot_open_the_report(bot: TelegramBot, campaign: int) -> None:
    lan = bot.user(LAN, "Lan")
    refused = await lan.send("/nopbaocao")
    assert refused[-1].text == "Chức năng này chỉ dành cho cán bộ công đoàn."
    forged = await lan.press_data("a:report:1")
    assert forged[-1].text == "Lựa chọn không hợp lệ, không có thay đổi nào."
