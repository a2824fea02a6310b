"""The scheduler sends the campaign's rhythm on time, to those concerned, exactly once.

A manual clock stands in for time; the database decides what is due. What members would
receive is read from the outbox: every message the bot pushes is queued there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from handlers.i18n import Catalogue
from scheduler.service import ScheduleConfig, Scheduler
from storage.campaign_file import load_campaign_file
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.importers.campaigns import import_campaign
from storage.models import Audience as DeadlineAudience
from storage.models import (
    Broadcast,
    BroadcastStatus,
    Campaign,
    ChannelAccount,
    Commitment,
    CommitmentKind,
    CongressWork,
    Deadline,
    DeadlineKind,
    Member,
    Milestone,
    MilestoneKind,
    Movement,
    OutboxMessage,
    OutboxStatus,
    Role,
    ScheduleRun,
)
from tests.builders import add_campaign, add_member, ninh_thuan_tree

HANOI = ZoneInfo("Asia/Ho_Chi_Minh")
ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "campaigns" / "ninh-thuan-2023.yaml"

LAN, HUNG, MINH, HOA, CUC = 1001, 1002, 9001, 9002, 1003
REGISTRATION = "Đăng ký thi đua gửi về LĐLĐ tỉnh"


def local(text: str) -> datetime:
    """A Hanoi wall-clock time, "2023-03-08 08:00", as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=HANOI).astimezone(UTC)


@pytest.fixture
async def people(sessions: SessionFactory) -> dict[str, int]:
    """The province with a campaign; Hùng registered on 02/03, the others have not."""
    async with sessions() as session, session.begin():
        tree = await ninh_thuan_tree(session)
        campaign = await add_campaign(session, tree["LDLD-NT"])
        await add_member(
            session, tree["CD-KCN"], "Trần Văn Minh", role=Role.OFFICER, telegram_id=MINH
        )
        await add_member(
            session, tree["CDCS-MAYNT"], "Phạm Thị Hoa", role=Role.OFFICER, telegram_id=HOA
        )
        await add_member(session, tree["CDCS-MAYNT"], "Nguyễn Thị Lan", telegram_id=LAN)
        hung = await add_member(session, tree["CDCS-MAYNT"], "Lê Văn Hùng", telegram_id=HUNG)
        await add_member(session, tree["CDCS-CVA"], "Đỗ Thị Cúc", telegram_id=CUC)
        movement = await session.scalar(
            select(Movement).where(Movement.campaign_id == campaign.id).limit(1)
        )
        assert movement is not None
        session.add(
            Commitment(
                reference="DK-2023-000001",
                campaign_id=campaign.id,
                movement_id=movement.id,
                kind=CommitmentKind.INDIVIDUAL,
                author_id=hung.id,
                unit_id=hung.unit_id,
                content="Hoàn thành 110% định mức",
                created_at=local("2023-03-02 10:00"),
                updated_at=local("2023-03-02 10:00"),
            )
        )
        return {"campaign": campaign.id, **{code: unit.id for code, unit in tree.items()}}


def make_scheduler(
    sessions: SessionFactory, engine: AsyncEngine, clock: ManualClock, **config: object
) -> Scheduler:
    return Scheduler(
        sessions,
        engine,
        clock,
        Catalogue.load(),
        ScheduleConfig(zone=HANOI, **config),  # type: ignore[arg-type]
        lambda: None,
    )


async def inboxes(sessions: SessionFactory) -> dict[int, list[str]]:
    """Return the texts queued to each Telegram chat, oldest first."""
    async with sessions() as session:
        rows = await session.execute(
            select(ChannelAccount.chat_id, OutboxMessage.payload, Broadcast.payload)
            .join(ChannelAccount, ChannelAccount.id == OutboxMessage.account_id)
            .outerjoin(Broadcast, Broadcast.id == OutboxMessage.broadcast_id)
            .where(OutboxMessage.status != OutboxStatus.CANCELLED)
            .order_by(OutboxMessage.id)
        )
        found: dict[int, list[str]] = {}
        for chat_id, own, shared in rows.all():
            found.setdefault(int(chat_id), []).append((own or shared)["text"])
        return found


async def run_records(sessions: SessionFactory) -> dict[str, str]:
    async with sessions() as session:
        rows = await session.execute(select(ScheduleRun.key, ScheduleRun.status))
        return {key: status.value for key, status in rows.all()}


async def deadline_id(sessions: SessionFactory, kind: DeadlineKind) -> int:
    async with sessions() as session:
        found = await session.scalar(select(Deadline.id).where(Deadline.kind == kind))
        assert found is not None
        return found


@pytest.fixture
def server_in_los_angeles() -> Iterator[None]:
    """Run the machine in another time zone than the union's."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/Los_Angeles"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


async def test_registration_reminder_goes_at_eight_local_to_those_who_have_not_registered(
    sessions: SessionFactory,
    engine: AsyncEngine,
    clock: ManualClock,
    people: dict[str, int],
    server_in_los_angeles: None,
) -> None:
    scheduler = make_scheduler(sessions, engine, clock)
    register = await deadline_id(sessions, DeadlineKind.COMMITMENT_REGISTRATION)
    key = f"deadline:{register}:T-7@2023-03-15"

    clock.set(local("2023-03-08 07:59"))
    assert key not in (await scheduler.run_due()).ran
    clock.set(local("2023-03-08 08:00"))
    assert key in (await scheduler.run_due()).ran

    queued = await inboxes(sessions)
    lan = [t for t in queued[LAN] if REGISTRATION in t]
    assert lan == [
        f"⏰ Nhắc hạn: {REGISTRATION} – hạn chót 15/03/2023, còn 7 ngày.\n"
        "Bạn chưa đăng ký thi đua năm nay. Gõ /dangky để đăng ký ngay."
    ]
    assert all(REGISTRATION not in t for t in queued.get(HUNG, []))  # he has registered
    # Officers get, once, the list of their units that are behind, and their own reminder in it.
    minh = [t for t in queued[MINH] if REGISTRATION in t]
    assert len(minh) == 1
    assert "• Công đoàn cơ sở Công ty TNHH May Ninh Thuận: 1/3 đã đăng ký (33%)" in minh[0]
    assert "Bạn cũng chưa đăng ký thi đua" in minh[0]
    hoa = [t for t in queued[HOA] if REGISTRATION in t]
    assert len(hoa) == 1
    assert "1/3 đã đăng ký" in hoa[0]


async def test_congress_work_reminder_reaches_officers_of_units_without_one(
    sessions: SessionFactory, engine: AsyncEngine, clock: ManualClock, people: dict[str, int]
) -> None:
    async with sessions() as session, session.begin():
        minh = await session.scalar(select(Member.id).where(Member.full_name == "Trần Văn Minh"))
        assert minh is not None
        session.add(
            CongressWork(
                registered_by_id=minh,
                campaign_id=people["campaign"],
                unit_id=people["CDCS-MUOI"],
                reference="CT-2023-000001",
                title="Lắp đặt hệ thống pin mặt trời",
                created_at=clock.now(),
                updated_at=clock.now(),
            )
        )
    scheduler = make_scheduler(sessions, engine, clock)
    clock.set(local("2023-03-12 08:00"))
    await scheduler.run_due()

    queued = await inboxes(sessions)
    works = "Đăng ký công trình, sản phẩm chào mừng Đại hội"
    hoa = [t for t in queued[HOA] if works in t]
    assert hoa == [
        f"⏰ Nhắc hạn: {works} – hạn chót 15/03/2023, còn 3 ngày.\n"
        "Công đoàn cơ sở Công ty TNHH May Ninh Thuận chưa đăng ký công trình, sản phẩm, "
        "phần việc. Gõ /congtrinh để đăng ký."
    ]
    minh = [t for t in queued[MINH] if works in t]
    assert len(minh) == 1
    assert "1 công đoàn cơ sở dưới Công đoàn các Khu công nghiệp" in minh[0]
    assert "Muối" not in minh[0]  # it has registered its work
    assert all(works not in t for chat in (LAN, HUNG, CUC) for t in queued.get(chat, []))


async def test_a_restart_across_a_milestone_sends_it_once(
    sessions: SessionFactory, engine: AsyncEngine, clock: ManualClock, people: dict[str, int]
) -> None:
    clock.set(local("2023-05-19 08:00"))
    first = await make_scheduler(sessions, engine, clock).run_due()
    assert any(key.startswith("milestone:") and "D0@2023-05-19" in key for key in first.ran)
    # The process restarts a few minutes later: a new scheduler over the same database.
    clock.advance(timedelta(minutes=5))
    second = await make_scheduler(sessions, engine, clock).run_due()
    assert second.ran == ()
    assert second.messages == 0

    queued = await inboxes(sessions)
    for chat in (LAN, HUNG, MINH, HOA, CUC):
        copies = [t for t in queued[chat] if "Kỷ niệm 133 năm Ngày sinh" in t and "📅" in t]
        assert len(copies) == 1, (chat, queued[chat])


async def test_a_run_missed_by_two_hours_runs_and_one_missed_by_two_days_is_skipped(
    sessions: SessionFactory, engine: AsyncEngine, clock: ManualClock, people: dict[str, int]
) -> None:
    register = await deadline_id(sessions, DeadlineKind.COMMITMENT_REGISTRATION)
    scheduler = make_scheduler(sessions, engine, clock)
    clock.set(local("2023-03-07 20:00"))
    await scheduler.run_due()  # everything before is settled

    # Down from the evening of the 7th until 10:00 on the 8th: T-7 (08:00) is 2 hours late.
    clock.set(local("2023-03-08 10:00"))
    outcome = await scheduler.run_due()
    assert f"deadline:{register}:T-7@2023-03-15" in outcome.ran
    # Down again from the 8th until 08:00 on the 14th: T-3 (the 12th) is 2 days late.
    clock.set(local("2023-03-14 08:00"))
    outcome = await scheduler.run_due()
    assert f"deadline:{register}:T-3@2023-03-15" in outcome.skipped
    assert f"deadline:{register}:T-1@2023-03-15" in outcome.ran

    records = await run_records(sessions)
    assert records[f"deadline:{register}:T-3@2023-03-15"] == "skipped"
    reminders = [t for t in (await inboxes(sessions))[LAN] if REGISTRATION in t]
    assert [("7 ngày" in t, "ngày mai" in t) for t in reminders] == [(True, False), (False, True)]


async def test_a_reminder_never_goes_out_after_its_deadline(
    sessions: SessionFactory, engine: AsyncEngine, clock: ManualClock, people: dict[str, int]
) -> None:
    register = await deadline_id(sessions, DeadlineKind.COMMITMENT_REGISTRATION)
    scheduler = make_scheduler(sessions, engine, clock, grace=timedelta(hours=72))
    clock.set(local("2023-03-14 07:00"))
    await scheduler.run_due()
    # T-1 was due at 08:00 on the 14th; the bot comes back on the 16th, within 72 hours.
    clock.set(local("2023-03-16 01:00"))
    outcome = await scheduler.run_due()
    assert f"deadline:{register}:T-1@2023-03-15" in outcome.skipped
    # The 3-day reminder went when the 72 hours allowed it; the last one never did.
    assert all("ngày mai" not in t for t in (await inboxes(sessions))[LAN])


async def test_runs_across_the_year_boundary_fall_on_their_local_days(
    sessions: SessionFactory, engine: AsyncEngine, clock: ManualClock, people: dict[str, int]
) -> None:
    async with sessions() as session, session.begin():
        session.add(
            Deadline(
                campaign_id=people["campaign"],
                code="BC-NAM",
                kind=DeadlineKind.REPORT,
                title="Báo cáo tổng kết năm",
                due_on=date(2024, 1, 3),
                audience=DeadlineAudience.OFFICERS,
                reminder_days=[7],
            )
        )
        session.add(
            Milestone(
                campaign_id=people["campaign"],
                code="NAM-MOI",
                kind=MilestoneKind.COMMEMORATION,
                falls_on=date(2024, 1, 1),
                announce_at="06:30",
                title="Chúc mừng năm mới 2024",
                announcement="",
                notice_days=[],
            )
        )
    scheduler = make_scheduler(sessions, engine, clock)
    clock.set(local("2023-12-26 12:00"))
    await scheduler.run_due()

    clock.set(local("2023-12-27 08:00"))  # 7 days before 03/01/2024
    ran = (await scheduler.run_due()).ran
    assert any(key.endswith(":T-7@2024-01-03") for key in ran)
    # 06:30 on New Year's Day in Hanoi is still 31/12 in UTC.
    clock.set(local("2024-01-01 06:29"))
    assert not any("@2024-01-01" in key for key in (await scheduler.run_due()).ran)
    clock.set(local("2024-01-01 06:30"))
    assert clock.now().date() == date(2024, 1, 1) - timedelta(days=1)
    ran = (await scheduler.run_due()).ran
    assert any(key.startswith("milestone:") and key.endswith("D0@2024-01-01") for key in ran)
    clock.set(local("2024-01-01 08:00"))  # a Monday: the weekly digest
    assert f"digest:{people['campaign']}@2024-01-01" in (await scheduler.run_due()).ran

    queued = await inboxes(sessions)
    # The CĐCS officer gets the form; the officer above, the units that have not reported.
    assert [t.splitlines()[0] for t in queued[HOA] if "Báo cáo tổng kết năm" in t] == [
        "📝 Báo cáo tổng kết năm: hạn nộp 03/01/2024, còn 7 ngày."
    ]
    assert [t.splitlines()[0] for t in queued[MINH] if "Báo cáo tổng kết năm" in t] == [
        "📝 Báo cáo tổng kết năm (hạn 03/01/2024): 2 công đoàn cơ sở dưới Công đoàn các Khu "
        "công nghiệp tỉnh Ninh Thuận chưa nộp báo cáo:"
    ]
    assert all("Báo cáo tổng kết năm" not in t for t in queued[LAN])  # officers only


async def test_phase_start_carries_its_focus_and_the_review_goes_to_officers(
    sessions: SessionFactory, engine: AsyncEngine, clock: ManualClock, people: dict[str, int]
) -> None:
    scheduler = make_scheduler(sessions, engine, clock)
    clock.set(local("2023-06-30 20:00"))
    await scheduler.run_due()
    clock.set(local("2023-07-01 08:00"))
    await scheduler.run_due()

    queued = await inboxes(sessions)
    start = "🚩 Bắt đầu Đợt II (01/07/2023 – 31/12/2023).\n\n🎯 Trọng tâm: Chào mừng Đại hội"
    for chat in (LAN, HUNG, MINH, HOA, CUC):
        assert sum(t.startswith(start) for t in queued[chat]) == 1
    review = [t for t in queued[MINH] if t.startswith("📊 Sơ kết Đợt I")]
    assert len(review) == 1
    assert review[0].splitlines()[0] == (
        "📊 Sơ kết Đợt I (01/02/2023 – 30/06/2023) – Công đoàn các Khu công nghiệp tỉnh Ninh Thuận"
    )
    assert "• Công đoàn cơ sở Công ty TNHH May Ninh Thuận: 1/3 đăng ký (33%)" in review[0]
    assert all(not t.startswith("📊") for t in queued[LAN] + queued[CUC])  # members: no review


async def test_monday_digest_tells_officers_what_changed_in_the_week(
    sessions: SessionFactory, engine: AsyncEngine, clock: ManualClock, people: dict[str, int]
) -> None:
    scheduler = make_scheduler(sessions, engine, clock)
    clock.set(local("2023-03-05 20:00"))  # Sunday evening
    await scheduler.run_due()
    clock.set(local("2023-03-06 08:00"))
    await scheduler.run_due()

    queued = await inboxes(sessions)
    digest = [t for t in queued[MINH] if t.startswith("📊 Tiến độ thi đua tuần qua")]
    assert len(digest) == 1
    assert "Toàn đơn vị: 4 đoàn viên, 1 đã đăng ký thi đua (25%)" in digest[0]
    assert "Tuần qua: thêm 1 đoàn viên đăng ký thi đua." in digest[0]
    assert not any(t.startswith("📊") for t in queued.get(LAN, []))


async def test_a_scheduled_broadcast_goes_once_and_one_missed_for_days_is_cancelled(
    sessions: SessionFactory, engine: AsyncEngine, clock: ManualClock, people: dict[str, int]
) -> None:
    async with sessions() as session, session.begin():
        minh = await session.scalar(select(Member).where(Member.full_name == "Trần Văn Minh"))
        assert minh is not None
        for text, when in (("Họp lúc 9 giờ", "2023-03-10 09:00"), ("Muộn", "2023-03-11 09:00")):
            session.add(
                Broadcast(
                    author_id=minh.id,
                    scope_unit_id=people["CD-KCN"],
                    payload={"text": text},
                    audience={"kind": "everyone"},
                    status=BroadcastStatus.SCHEDULED,
                    scheduled_for=local(when),
                    created_at=clock.now(),
                )
            )
    scheduler = make_scheduler(sessions, engine, clock)
    clock.set(local("2023-03-10 08:59"))
    await scheduler.run_due()
    assert "Họp lúc 9 giờ" not in (await inboxes(sessions)).get(LAN, [])
    clock.set(local("2023-03-10 09:00"))
    await scheduler.run_due()
    await scheduler.run_due()
    assert (await inboxes(sessions))[LAN].count("Họp lúc 9 giờ") == 1

    clock.set(local("2023-03-13 09:00"))  # the second one's time passed two days ago
    await scheduler.run_due()
    queued = await inboxes(sessions)
    assert "Muộn" not in queued[LAN]
    assert any(t.startswith("Thông báo số 2 hẹn gửi lúc 09:00 11/03/2023") for t in queued[MINH])
    async with sessions() as session:
        late = await session.get(Broadcast, 2)
        assert late is not None
        assert late.status == BroadcastStatus.CANCELLED


async def test_importing_a_moved_milestone_moves_its_jobs(
    sessions: SessionFactory,
    engine: AsyncEngine,
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    async with sessions() as session, session.begin():
        tree = await ninh_thuan_tree(session)
        await add_member(session, tree["CDCS-MAYNT"], "Nguyễn Thị Lan", telegram_id=LAN)
        await import_campaign(session, load_campaign_file(PLAN), clock.now())
        founding = await session.scalar(select(Milestone).where(Milestone.code == "THANH-LAP-CDVN"))
        assert founding is not None
    clock.set(local("2023-07-20 09:00"))
    scheduler = make_scheduler(sessions, engine, clock)
    await scheduler.start_jobs()
    try:
        old = f"milestone:{founding.id}:D0@2023-07-28"
        assert old in scheduler.job_ids()

        moved = tmp_path / "plan.yaml"
        moved.write_text(PLAN.read_text("utf-8").replace("date: 2023-07-28", "date: 2023-07-30"))
        async with sessions() as session, session.begin():
            await import_campaign(session, load_campaign_file(moved), clock.now())
        await scheduler.tick()  # the running bot notices within a minute

        new = f"milestone:{founding.id}:D0@2023-07-30"
        assert old not in scheduler.job_ids()
        assert new in scheduler.job_ids()
        # The job fires on the new day at 08:00 in Hanoi (the machine's clock is in 2026).
        fires = scheduler.job_next_run(new)
        assert fires is not None
        expected = datetime.now(UTC) + (local("2023-07-30 08:00") - clock.now())
        assert abs((fires - expected).total_seconds()) < 5
    finally:
        scheduler.stop_jobs()

    clock.set(local("2023-07-28 08:00"))
    assert not any(
        str(founding.id) in key
        for key in (await scheduler.run_due()).ran
        if key.startswith("milestone:") and "D0" in key
    )
    clock.set(local("2023-07-30 08:00"))
    assert new in (await scheduler.run_due()).ran
    founding_day = [t for t in (await inboxes(sessions))[LAN] if t.startswith("📅 Kỷ niệm 94 năm")]
    assert len(founding_day) == 1


async def test_the_demo_campaign_lists_its_coming_runs(
    sessions: SessionFactory, engine: AsyncEngine, clock: ManualClock, people: dict[str, int]
) -> None:
    from storage import schedule
    from storage.schedule import PlanConfig

    async with sessions() as session:
        campaign = await session.get(Campaign, people["campaign"])
        assert campaign is not None
        coming = await schedule.coming(
            session, PlanConfig(zone=HANOI), local("2023-03-01 08:00"), 8
        )
    assert [(run.key.split(":")[0], run.at) for run in coming] == [
        ("digest", local("2023-03-06 08:00")),
        ("deadline", local("2023-03-08 08:00")),
        ("deadline", local("2023-03-08 08:00")),
    ]
