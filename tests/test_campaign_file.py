"""The campaign file: the shipped 2023 plan, re-imports, rejected files and next year's file."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from bot.cli import describe_campaign_problem, describe_note
from handlers.i18n import Catalogue
from storage.campaign_file import (
    PROBLEM_FIELDS,
    PROBLEM_KINDS,
    UNREADABLE_REASONS,
    CampaignFile,
    CampaignFileError,
    CampaignProblem,
    load_campaign_file,
    parse_campaign_text,
)
from storage.campaign_template import (
    NOTE_FIELDS,
    TemplateNote,
    new_campaign_from,
    new_campaign_text,
)
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.importers.campaigns import CampaignImportReport, SectionReport, import_campaign
from storage.importers.units import import_units
from storage.models import (
    Audience,
    Campaign,
    Commitment,
    CommitmentKind,
    Deadline,
    DeadlineKind,
    Milestone,
    MilestoneKind,
    Movement,
    MovementKind,
    Phase,
    Unit,
)
from tests.builders import add_member

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "campaigns" / "ninh-thuan-2023.yaml"
SAMPLE_UNITS = ROOT / "data" / "sample-units.csv"

C = MilestoneKind.COMMEMORATION
CONGRESS = MilestoneKind.CONGRESS
START, END = MilestoneKind.PHASE_START, MilestoneKind.PHASE_END

# The 2023 plan, as members and officers will read it.
PLAN_MOVEMENTS = [
    ("Lao động giỏi, lao động sáng tạo", MovementKind.MOVEMENT, []),
    ("Giỏi việc nước, đảm việc nhà", MovementKind.MOVEMENT, []),
    ("Xanh, Sạch, Đẹp, bảo đảm an toàn vệ sinh lao động", MovementKind.MOVEMENT, []),
    (
        "Đổi mới, sáng tạo, hiệu quả trong hoạt động của tổ chức Công đoàn",
        MovementKind.MOVEMENT,
        [],
    ),
    (
        "Cán bộ, công chức, viên chức nói không với tiêu cực",
        MovementKind.DRIVE,
        ["administrative"],
    ),
    ("Năng suất cao, chất lượng tốt", MovementKind.MOVEMENT, ["enterprise"]),
    (
        "01 triệu sáng kiến – nỗ lực vượt khó, sáng tạo, quyết tâm chiến thắng đại dịch Covid-19",
        MovementKind.PROGRAMME,
        [],
    ),
    (
        "Hội thi Sáng tạo kỹ thuật tỉnh Ninh Thuận lần thứ VII (2022 – 2023)",
        MovementKind.CONTEST,
        [],
    ),
]
PLAN_PHASES = [
    ("DOT-1", 1, "Đợt I", date(2023, 2, 1), date(2023, 6, 30)),
    ("DOT-2", 2, "Đợt II", date(2023, 7, 1), date(2023, 12, 31)),
]
PLAN_MILESTONES = [
    (date(2023, 2, 1), START, "Phát động phong trào thi đua yêu nước năm 2023 – bắt đầu Đợt I"),
    (date(2023, 3, 31), CONGRESS, "Hoàn thành Đại hội Công đoàn cơ sở, nhiệm kỳ 2023 – 2028"),
    (date(2023, 5, 1), C, "Tháng Công nhân năm 2023"),
    (
        date(2023, 5, 19),
        C,
        "Kỷ niệm 133 năm Ngày sinh Chủ tịch Hồ Chí Minh (19/5/1890 – 19/5/2023)",
    ),
    (
        date(2023, 6, 11),
        C,
        "Kỷ niệm 75 năm Ngày Chủ tịch Hồ Chí Minh ra Lời kêu gọi thi đua ái quốc – "
        "Ngày truyền thống thi đua yêu nước (11/6/1948 – 11/6/2023)",
    ),
    (
        date(2023, 6, 15),
        CONGRESS,
        "Hoàn thành Đại hội Công đoàn cấp trên trực tiếp cơ sở, nhiệm kỳ 2023 – 2028",
    ),
    (date(2023, 6, 30), END, "Kết thúc Đợt I phong trào thi đua năm 2023"),
    (date(2023, 7, 1), START, "Bắt đầu Đợt II phong trào thi đua năm 2023"),
    (
        date(2023, 7, 28),
        C,
        "Kỷ niệm 94 năm Ngày thành lập Công đoàn Việt Nam (28/7/1929 – 28/7/2023)",
    ),
    (
        date(2023, 9, 2),
        C,
        "Kỷ niệm 78 năm Cách mạng tháng Tám và Quốc khánh nước Cộng hòa xã hội chủ nghĩa "
        "Việt Nam (2/9/1945 – 2/9/2023)",
    ),
    (date(2023, 10, 8), CONGRESS, "Đại hội XI Công đoàn tỉnh Ninh Thuận, nhiệm kỳ 2023 – 2028"),
    (date(2023, 12, 1), CONGRESS, "Đại hội XIII Công đoàn Việt Nam, nhiệm kỳ 2023 – 2028"),
    (date(2023, 12, 31), END, "Kết thúc phong trào thi đua yêu nước năm 2023"),
]
PLAN_DEADLINES = [
    (
        date(2023, 3, 15),
        DeadlineKind.COMMITMENT_REGISTRATION,
        Audience.MEMBERS,
        "Đăng ký thi đua, giao ước thi đua năm 2023",
    ),
    (
        date(2023, 3, 15),
        DeadlineKind.CONGRESS_WORK_REGISTRATION,
        Audience.GRASSROOTS_OFFICERS,
        "Đăng ký công trình, sản phẩm, phần việc chào mừng Đại hội Công đoàn các cấp",
    ),
    (
        date(2023, 7, 15),
        DeadlineKind.REPORT,
        Audience.OFFICERS,
        "Báo cáo sơ kết Đợt I phong trào thi đua năm 2023",
    ),
    (
        date(2023, 12, 15),
        DeadlineKind.REPORT,
        Audience.OFFICERS,
        "Báo cáo tổng kết phong trào thi đua yêu nước năm 2023",
    ),
]
CONGRESS_CODES = {"DAI-HOI-CO-SO", "DAI-HOI-CAP-TREN", "DAI-HOI-XI-CD-TINH", "DAI-HOI-XIII-CDVN"}

# A small valid file; the rejected-file cases change its numbered lines.
MINIMAL_LINES = [
    "campaign:",  # 1
    "  code: T-2023",  # 2
    "  name: Thi đua năm 2023",  # 3
    "  year: 2023",  # 4
    "  root_unit: LDLD-NT",  # 5
    "  start: 2023-02-01",  # 6
    "  end: 31/12/2023",  # 7
    "movements:",  # 8
    "  - code: M1",  # 9
    "    kind: movement",  # 10
    "    name: Lao động giỏi",  # 11
    "phases:",  # 12
    "  - code: DOT-1",  # 13
    "    number: 1",  # 14
    "    name: Đợt I",  # 15
    "    start: 2023-02-01",  # 16
    "    end: 30/6/2023",  # 17
    "milestones:",  # 18
    "  - code: SN",  # 19
    "    kind: commemoration",  # 20
    "    date: 2023-05-19",  # 21
    "    base_year: 1890",  # 22
    "    title: Kỷ niệm {years} năm Ngày sinh Chủ tịch Hồ Chí Minh",  # 23
    "deadlines:",  # 24
    "  - code: DK",  # 25
    "    kind: commitment_registration",  # 26
    "    title: Đăng ký thi đua năm {year}",  # 27
    "    due: 15/03/2023",  # 28
    "    audience: members",  # 29
]


def minimal(changes: dict[int, str] | None = None, extra: str = "") -> str:
    """The small file with some lines (numbered from 1) replaced, and lines appended."""
    lines = list(MINIMAL_LINES)
    for number, text in (changes or {}).items():
        lines[number - 1] = text
    return "\n".join(lines) + "\n" + extra


# --- helpers ----------------------------------------------------------------------------------


async def load_units(sessions: SessionFactory, clock: ManualClock) -> None:
    async with sessions() as session, session.begin():
        await import_units(session, SAMPLE_UNITS, clock.now())


async def run_import(
    sessions: SessionFactory, campaign_file: CampaignFile, clock: ManualClock
) -> CampaignImportReport:
    async with sessions() as session, session.begin():
        return await import_campaign(session, campaign_file, clock.now())


async def import_text(
    sessions: SessionFactory, text: str, clock: ManualClock
) -> CampaignImportReport:
    return await run_import(sessions, parse_campaign_text(text), clock)


async def snapshot(sessions: SessionFactory) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of every campaign row, to compare before and after."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    async with sessions() as session:
        for model in (Campaign, Movement, Phase, Milestone, Deadline):
            rows = (await session.scalars(select(model).order_by(model.id))).all()
            columns = [c.key for c in model.__table__.columns]
            found[model.__tablename__] = [tuple(getattr(row, c) for c in columns) for row in rows]
    return found


def shipped_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SHIPPED.read_text("utf-8"))
    return document


def problems_of(text: str) -> list[CampaignProblem]:
    with pytest.raises(CampaignFileError) as caught:
        parse_campaign_text(text)
    return caught.value.problems


def summary(problems: list[CampaignProblem]) -> list[tuple[int, str, str]]:
    return [(p.line, p.path, p.kind) for p in problems]


@pytest.fixture
async def with_plan(sessions: SessionFactory, clock: ManualClock) -> CampaignImportReport:
    """The sample units and the shipped 2023 plan, imported."""
    await load_units(sessions, clock)
    return await run_import(sessions, load_campaign_file(SHIPPED), clock)


# --- the shipped 2023 plan --------------------------------------------------------------------


async def test_the_2023_plan_imports_every_movement_phase_milestone_and_deadline(
    sessions: SessionFactory, clock: ManualClock, with_plan: CampaignImportReport
) -> None:
    assert with_plan.campaign == SectionReport(created=1)
    assert with_plan.movements == SectionReport(created=8)
    assert with_plan.phases == SectionReport(created=2)
    assert with_plan.milestones == SectionReport(created=13)
    assert with_plan.deadlines == SectionReport(created=4)

    async with sessions() as session:
        campaign = await session.scalar(select(Campaign).where(Campaign.code == "NT-2023"))
        assert campaign is not None
        root = await session.get(Unit, campaign.root_unit_id)
        movements = (
            await session.scalars(
                select(Movement)
                .where(Movement.campaign_id == campaign.id)
                .order_by(Movement.position)
            )
        ).all()
        phases = (await session.scalars(select(Phase).order_by(Phase.number))).all()
        milestones = (
            await session.scalars(select(Milestone).order_by(Milestone.falls_on, Milestone.id))
        ).all()
        deadlines = (
            await session.scalars(select(Deadline).order_by(Deadline.due_on, Deadline.id))
        ).all()

    assert root is not None
    assert root.code == "LDLD-NT"
    assert campaign.name == "Phong trào thi đua yêu nước năm 2023"
    assert (campaign.year, campaign.starts_on, campaign.ends_on) == (
        2023,
        date(2023, 2, 1),
        date(2023, 12, 31),
    )
    assert "Lao động giỏi, lao động sáng tạo" in campaign.description
    assert campaign.options["late_registration"] == "allow"
    assert campaign.options["pact_expiry_days"] == 7
    assert campaign.options["congress_work_per_grassroots"] == 1
    assert "Cải tiến kỹ thuật, công nghệ sản xuất" in campaign.options["initiative_fields"]
    assert campaign.created_at == campaign.updated_at == clock.now()

    assert [(m.name, m.kind, m.sectors) for m in movements] == PLAN_MOVEMENTS
    assert [m.position for m in movements] == list(range(8))
    assert all(m.active and m.description for m in movements)

    assert [(p.code, p.number, p.name, p.starts_on, p.ends_on) for p in phases] == PLAN_PHASES
    assert "75 năm Ngày Chủ tịch Hồ Chí Minh ra Lời kêu gọi thi đua ái quốc" in phases[0].focus
    assert "Tháng Công nhân" in phases[0].focus
    assert "133 năm Ngày sinh Chủ tịch Hồ Chí Minh" in phases[0].focus
    assert "94 năm Ngày thành lập Công đoàn Việt Nam" in phases[1].focus
    assert "78 năm Cách mạng tháng Tám" in phases[1].focus

    assert [(m.falls_on, m.kind, m.title) for m in milestones] == PLAN_MILESTONES
    assert all(m.announce_at == "08:00" and m.announcement for m in milestones)
    birthday = next(m for m in milestones if m.code == "SINH-NHAT-BAC")
    assert birthday.notice_days == [7, 1]
    assert "133 năm" in birthday.announcement
    assert "{" not in "".join(m.title + m.announcement for m in milestones)

    assert [(d.due_on, d.kind, d.audience, d.title) for d in deadlines] == PLAN_DEADLINES
    assert all(d.reminder_days == [7, 3, 1] for d in deadlines)


async def test_reimporting_the_same_file_changes_nothing(
    sessions: SessionFactory, clock: ManualClock, with_plan: CampaignImportReport
) -> None:
    before = await snapshot(sessions)
    clock.advance(timedelta(days=3))

    report = await run_import(sessions, load_campaign_file(SHIPPED), clock)

    assert report == CampaignImportReport(
        code="NT-2023",
        campaign_id=with_plan.campaign_id,
        campaign=SectionReport(unchanged=1),
        movements=SectionReport(unchanged=8),
        phases=SectionReport(unchanged=2),
        milestones=SectionReport(unchanged=13),
        deadlines=SectionReport(unchanged=4),
    )
    assert not report.changed
    assert await snapshot(sessions) == before


async def test_a_changed_file_updates_in_place_and_keeps_dropped_movements_for_commitments(
    sessions: SessionFactory, clock: ManualClock, with_plan: CampaignImportReport
) -> None:
    async with sessions() as session, session.begin():
        unit = await session.scalar(select(Unit).where(Unit.code == "CDCS-MAYNT"))
        assert unit is not None
        member = await add_member(session, unit, "Nguyễn Thị Lan")
        contest = await session.scalar(select(Movement).where(Movement.code == "HOI-THI-STKT"))
        assert contest is not None
        commitment = Commitment(
            reference="DK-2023-000001",
            campaign_id=with_plan.campaign_id,
            movement_id=contest.id,
            kind=CommitmentKind.INDIVIDUAL,
            author_id=member.id,
            unit_id=unit.id,
            content="Đề tài cải tiến máy cắt vải",
            created_at=clock.now(),
            updated_at=clock.now(),
        )
        session.add(commitment)
        await session.flush()
        commitment_id, contest_id = commitment.id, contest.id
    async with sessions() as session:
        milestone_ids = dict((await session.execute(select(Milestone.code, Milestone.id))).all())
    clock.advance(timedelta(days=1))

    document = shipped_document()
    document["movements"] = [m for m in document["movements"] if m["code"] != "HOI-THI-STKT"]
    congress = next(m for m in document["milestones"] if m["code"] == "DAI-HOI-XI-CD-TINH")
    congress["date"] = date(2023, 10, 9)
    document["movements"][0]["name"] = "Lao động giỏi, Lao động sáng tạo"
    report = await import_text(sessions, yaml.safe_dump(document, allow_unicode=True), clock)

    assert report.movements == SectionReport(updated=1, unchanged=6, deactivated=1)
    assert report.milestones == SectionReport(updated=1, unchanged=12)
    assert report.campaign == SectionReport(unchanged=1)
    async with sessions() as session:
        moved = await session.scalar(select(Milestone).where(Milestone.code == congress["code"]))
        renamed = await session.scalar(select(Movement).where(Movement.code == "LDG-LDST"))
        dropped = await session.get(Movement, contest_id)
        kept = await session.get(Commitment, commitment_id)
        campaign = await session.get(Campaign, with_plan.campaign_id)
    assert moved is not None
    assert moved.id == milestone_ids[congress["code"]]
    assert moved.falls_on == date(2023, 10, 9)
    assert renamed is not None
    assert renamed.name == "Lao động giỏi, Lao động sáng tạo"
    assert dropped is not None
    assert not dropped.active
    assert kept is not None
    assert kept.movement_id == contest_id
    assert campaign is not None
    assert campaign.updated_at == clock.now()

    # Back in the file, the movement is active again, with the same id.
    report = await run_import(sessions, load_campaign_file(SHIPPED), clock)
    assert report.movements == SectionReport(updated=2, unchanged=6)
    async with sessions() as session:
        again = await session.get(Movement, contest_id)
        assert again is not None
        assert again.active
        assert again.position == 7


async def test_a_second_campaign_lives_beside_the_first(
    sessions: SessionFactory, clock: ManualClock, with_plan: CampaignImportReport
) -> None:
    text, _ = new_campaign_text(SHIPPED, 2024)
    report = await import_text(sessions, text, clock)

    assert report.code == "NT-2024"
    assert report.campaign_id != with_plan.campaign_id
    assert report.movements == SectionReport(created=8)
    async with sessions() as session:
        codes = (await session.scalars(select(Campaign.code).order_by(Campaign.code))).all()
    assert codes == ["NT-2023", "NT-2024"]


# --- rejected files ---------------------------------------------------------------------------

TOO_LONG = "a" * 300
SECOND_PHASE = "\n".join(
    [
        "    end: 30/6/2023",
        "  - code: DOT-2",
        "    number: 1",
        "    name: Đợt II",
        "    start: 2023-06-15",
        "    end: 2023-12-31",
    ]
)
REJECTED: list[tuple[str, str, list[tuple[int, str, str]]]] = [
    ("tab indent", minimal({4: "\tyear: 2023"}), [(4, "", "yaml_syntax")]),
    ("unclosed bracket", minimal({10: "    kind: [movement"}), [(11, "", "yaml_syntax")]),
    ("missing field", minimal({11: ""}), [(9, "movements[0].name", "missing_field")]),
    (
        "misspelt field",
        minimal({29: "    audiance: members"}),
        [
            (25, "deadlines[0].audience", "missing_field"),
            (29, "deadlines[0].audiance", "unknown_field"),
        ],
    ),
    ("unknown section", minimal(extra="milestone: []\n"), [(30, "milestone", "unknown_field")]),
    ("date format", minimal({6: "  start: 1 tháng 2"}), [(6, "campaign.start", "bad_date")]),
    (
        "no such day",
        minimal({21: "    date: 31/02/2023"}),
        [(21, "milestones[0].date", "impossible_date")],
    ),
    (
        "no such month",
        minimal({16: "    start: 2023-13-01"}),
        [(16, "phases[0].start", "impossible_date")],
    ),
    (
        "campaign ends first",
        minimal({7: "  end: 2022-12-31"}),
        [(7, "campaign.end", "end_before_start")],
    ),
    (
        "phase ends first",
        minimal({16: "    start: 2023-03-01", 17: "    end: 2023-02-15"}),
        [(17, "phases[0].end", "end_before_start")],
    ),
    (
        "phase after the campaign",
        minimal({17: "    end: 2024-01-31"}),
        [(17, "phases[0].end", "outside_campaign")],
    ),
    (
        "milestone before the campaign",
        minimal({21: "    date: 2023-01-19"}),
        [(21, "milestones[0].date", "outside_campaign")],
    ),
    (
        "deadline after the campaign",
        minimal({28: "    due: 15/03/2024"}),
        [(28, "deadlines[0].due", "outside_campaign")],
    ),
    (
        "duplicate code",
        minimal(
            extra="  - code: dk\n    kind: report\n    title: Báo cáo\n    due: 2023-07-15\n"
            "    audience: officers\n"
        ),
        [(30, "deadlines[1].code", "duplicate_code")],
    ),
    (
        "overlapping phases",
        minimal({17: SECOND_PHASE}),
        [(19, "phases[1].number", "duplicate_number"), (21, "phases[1].start", "phase_overlap")],
    ),
    (
        "movement kind",
        minimal({10: "    kind: phong trào"}),
        [(10, "movements[0].kind", "bad_choice")],
    ),
    (
        "milestone kind",
        minimal({20: "    kind: holiday"}),
        [(20, "milestones[0].kind", "bad_choice")],
    ),
    (
        "deadline kind",
        minimal({26: "    kind: registration"}),
        [(26, "deadlines[0].kind", "bad_choice")],
    ),
    (
        "audience",
        minimal({29: "    audience: everyone"}),
        [(29, "deadlines[0].audience", "bad_choice")],
    ),
    (
        "sector",
        minimal({11: "    name: Lao động giỏi\n    sectors: [enterprise, factory]"}),
        [(12, "movements[0].sectors[1]", "bad_choice")],
    ),
    (
        "late registration",
        minimal(extra="options:\n  late_registration: maybe\n"),
        [(31, "options.late_registration", "bad_choice")],
    ),
    (
        "recurring",
        minimal({22: "    recurring: perhaps"}),
        [(22, "milestones[0].recurring", "bad_choice")],
    ),
    ("code format", minimal({13: "  - code: ĐỢT 1"}), [(13, "phases[0].code", "bad_code")]),
    ("campaign code", minimal({2: "  code: NT_2023"}), [(2, "campaign.code", "bad_code")]),
    (
        "years without base",
        minimal({22: ""}),
        [(23, "milestones[0].title", "years_without_base_year")],
    ),
    (
        "years in a deadline",
        minimal({27: "    title: Đăng ký lần {years}"}),
        [(27, "deadlines[0].title", "bad_placeholder")],
    ),
    (
        "unknown placeholder",
        minimal({23: "    title: Kỷ niệm {nam} năm"}),
        [(23, "milestones[0].title", "bad_placeholder")],
    ),
    (
        "base year too late",
        minimal({22: "    base_year: 2023"}),
        [(22, "milestones[0].base_year", "base_year_too_late")],
    ),
    (
        "unknown phase",
        minimal({20: "    kind: phase_start", 21: "    phase: DOT-9"}),
        [(21, "milestones[0].phase", "unknown_reference")],
    ),
    (
        "phase milestone off its phase",
        minimal({20: "    kind: phase_end", 22: "    phase: DOT-1", 23: "    title: Hết Đợt I"}),
        [(21, "milestones[0].date", "phase_date_mismatch")],
    ),
    (
        "milestone without a date",
        minimal({21: ""}),
        [(19, "milestones[0].date", "missing_field")],
    ),
    (
        "bad time",
        minimal({21: "    time: 8h"}),
        [(21, "milestones[0].time", "bad_time")],
    ),
    ("phase number", minimal({14: "    number: zero"}), [(14, "phases[0].number", "bad_number")]),
    (
        "notice days",
        minimal({22: "    notice_days: [7, -1]"}),
        [(22, "milestones[0].notice_days[1]", "bad_number")],
    ),
    ("year", minimal({4: "  year: 1975"}), [(4, "campaign.year", "bad_number")]),
    ("text for a list", minimal({3: "  name: [a, b]"}), [(3, "campaign.name", "bad_type")]),
    ("list for a mapping", minimal(extra="options: [a]\n"), [(30, "options", "bad_type")]),
    ("empty name", minimal({11: '    name: ""'}), [(11, "movements[0].name", "empty_text")]),
    (
        "long name",
        minimal({11: f"    name: {TOO_LONG}"}),
        [(11, "movements[0].name", "text_too_long")],
    ),
    ("key twice", minimal(extra="phases: []\n"), [(30, "phases", "duplicate_key")]),
    (
        "key twice and more",
        minimal({14: "    number: 1\n    number: 2", 15: "    name: Đợt I\n    nam: x"}),
        [
            (15, "phases[0].number", "duplicate_key"),
            (17, "phases[0].nam", "unknown_field"),
        ],
    ),
    ("alias loop", "a: &x [*x]\n", [(1, "", "yaml_syntax")]),
    (
        "no movements",
        minimal({8: "movements: []", 9: "", 10: "", 11: ""}),
        [(8, "movements", "empty_list")],
    ),
    (
        "movements left out",
        minimal({8: "", 9: "", 10: "", 11: ""}),
        [(1, "movements", "missing_field")],
    ),
    ("empty", "", [(1, "", "empty_file")]),
    ("comments only", "# Kế hoạch năm 2024\n", [(1, "", "empty_file")]),
    ("not a mapping", "- a\n- b\n", [(1, "", "bad_type")]),
]


def test_the_small_file_is_valid() -> None:
    parsed = parse_campaign_text(minimal())
    assert parsed.campaign.ends_on == date(2023, 12, 31)
    assert parsed.deadlines[0].due_on == date(2023, 3, 15)
    assert parsed.milestone_title(parsed.milestones[0]) == (
        "Kỷ niệm 133 năm Ngày sinh Chủ tịch Hồ Chí Minh"
    )


@pytest.mark.parametrize(
    ("text", "expected"), [(t, e) for _, t, e in REJECTED], ids=[c for c, _, _ in REJECTED]
)
async def test_a_rejected_file_names_line_and_path_and_changes_nothing(
    text: str,
    expected: list[tuple[int, str, str]],
    sessions: SessionFactory,
    clock: ManualClock,
    with_plan: CampaignImportReport,
) -> None:
    before = await snapshot(sessions)

    with pytest.raises(CampaignFileError) as caught:
        await import_text(sessions, text, clock)

    assert summary(caught.value.problems) == expected
    assert await snapshot(sessions) == before
    texts = Catalogue.load()
    for problem in caught.value.problems:
        assert set(problem.fields) == set(PROBLEM_FIELDS[problem.kind])
        assert describe_campaign_problem(texts, problem).startswith(f"Dòng {problem.line}")


def test_problems_say_what_is_wrong() -> None:
    [misspelt] = [
        p for p in problems_of(minimal({29: "    audiance: x"})) if p.kind == "unknown_field"
    ]
    assert misspelt.fields == {
        "field": "audiance",
        "allowed": "code, kind, title, due, audience, reminder_days",
    }
    [day] = problems_of(minimal({21: "    date: 31/02/2023"}))
    assert day.fields == {"value": "31/02/2023"}
    [outside] = problems_of(minimal({28: "    due: 2024-01-15"}))
    assert outside.fields == {"value": "15/01/2024", "start": "01/02/2023", "end": "31/12/2023"}
    [twice] = problems_of(
        minimal(
            extra="  - code: DK\n    kind: report\n    title: B\n"
            "    due: 2023-07-15\n    audience: officers\n"
        )
    )
    assert twice.fields == {"code": "DK", "first_line": "25"}
    [choice] = problems_of(minimal({29: "    audience: everyone"}))
    assert choice.fields == {
        "value": "everyone",
        "allowed": "members, grassroots_officers, officers",
    }

    texts = Catalogue.load()
    assert describe_campaign_problem(texts, day) == (
        'Dòng 21 (milestones[0].date): ngày "31/02/2023" không có trên lịch.'
    )
    assert "{years}" in describe_campaign_problem(
        texts, CampaignProblem(23, "milestones[0].title", "years_without_base_year")
    )


def test_several_problems_are_reported_together_in_line_order() -> None:
    text = minimal(
        {
            2: "  code: nt 2023",
            7: "  end: 2023-02-30",
            10: "    kind: campaign",
            20: "    kind: anniversary",
            22: "    base_yaer: 1890",
            29: "    audience: all",
        }
    )

    assert summary(problems_of(text)) == [
        (2, "campaign.code", "bad_code"),
        (7, "campaign.end", "impossible_date"),
        (10, "movements[0].kind", "bad_choice"),
        (20, "milestones[0].kind", "bad_choice"),
        (22, "milestones[0].base_yaer", "unknown_field"),
        (29, "deadlines[0].audience", "bad_choice"),
    ]


async def test_an_unknown_root_unit_is_a_problem_on_its_line(
    sessions: SessionFactory, clock: ManualClock, with_plan: CampaignImportReport
) -> None:
    before = await snapshot(sessions)
    text = minimal({5: "  root_unit: ldld-xx"})

    with pytest.raises(CampaignFileError) as caught:
        await import_text(sessions, text, clock)

    assert summary(caught.value.problems) == [(5, "campaign.root_unit", "unknown_unit")]
    assert caught.value.problems[0].fields == {"code": "LDLD-XX"}
    assert await snapshot(sessions) == before


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(CampaignFileError) as caught:
        load_campaign_file(tmp_path / "nope.yaml")
    assert summary(caught.value.problems) == [(1, "", "unreadable_file")]
    assert caught.value.problems[0].fields == {"reason": "cannot_open"}

    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"campaign:\n  name: Thi \xf0ua\n")
    with pytest.raises(CampaignFileError) as caught:
        load_campaign_file(latin)
    assert summary(caught.value.problems) == [(2, "", "unreadable_file")]
    assert caught.value.problems[0].fields == {"reason": "not_utf8"}


def test_yaml_quirks_do_not_change_values() -> None:
    # YAML 1.1 would read NO as false, 10:30 as a number of minutes and 2023-05-19 as a date.
    text = minimal(
        {
            9: "  - code: NO",
            21: "    date: '2023-05-19'",
            22: "    base_year: 1890\n    time: 10:30\n    notice_days: 7\n    recurring: no",
        }
    )
    parsed = parse_campaign_text(text)
    assert parsed.movements[0].code == "NO"
    milestone = parsed.milestones[0]
    assert (milestone.announce_at, milestone.notice_days, milestone.recurring) == (
        "10:30",
        [7],
        False,
    )
    assert milestone.falls_on == date(2023, 5, 19)


def test_every_problem_kind_has_a_text_that_formats() -> None:
    texts = Catalogue.load()
    for kind in PROBLEM_KINDS:
        key = f"campaign_file.problem.{kind}"
        assert texts.has(key), kind
        assert texts.fields(key) <= set(PROBLEM_FIELDS[kind]), kind
        fields = {name: "X" for name in PROBLEM_FIELDS[kind]}
        if "reason" in fields:
            fields["reason"] = UNREADABLE_REASONS[0]
        if "expected" in fields:
            fields["expected"] = "list"
        text = describe_campaign_problem(texts, CampaignProblem(7, "phases[0].end", kind, fields))
        assert text.startswith("Dòng 7 (phases[0].end): "), kind
    for reason in UNREADABLE_REASONS:
        assert texts.has(f"campaign_file.reason.{reason}")
    for kind, names in NOTE_FIELDS.items():
        note = TemplateNote("milestones", kind, {name: "X" for name in names})
        assert describe_note(texts, note).startswith("  - milestones: "), kind


# --- next year's file -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "birthday", "call", "union", "national_day"),
    [(2024, 134, 76, 95, 79), (2027, 137, 79, 98, 82), (2030, 140, 82, 101, 85)],
)
def test_next_years_file_recounts_the_anniversaries(
    year: int, birthday: int, call: int, union: int, national_day: int
) -> None:
    text, notes = new_campaign_text(SHIPPED, year)
    new = parse_campaign_text(text)

    titles = {m.code: new.milestone_title(m) for m in new.milestones}
    assert titles["SINH-NHAT-BAC"] == (
        f"Kỷ niệm {birthday} năm Ngày sinh Chủ tịch Hồ Chí Minh (19/5/1890 – 19/5/{year})"
    )
    assert titles["LOI-KEU-GOI-THI-DUA"].startswith(
        f"Kỷ niệm {call} năm Ngày Chủ tịch Hồ Chí Minh ra Lời kêu gọi thi đua ái quốc"
    )
    assert titles["LOI-KEU-GOI-THI-DUA"].endswith(f"(11/6/1948 – 11/6/{year})")
    assert titles["THANH-LAP-CDVN"] == (
        f"Kỷ niệm {union} năm Ngày thành lập Công đoàn Việt Nam (28/7/1929 – 28/7/{year})"
    )
    assert titles["QUOC-KHANH"].startswith(f"Kỷ niệm {national_day} năm Cách mạng tháng Tám")
    assert f"{national_day} năm" in new.milestone_announcement(
        next(m for m in new.milestones if m.code == "QUOC-KHANH")
    )

    assert (new.campaign.code, new.campaign.year) == (f"NT-{year}", year)
    assert new.campaign.name == f"Phong trào thi đua yêu nước năm {year}"
    assert (new.campaign.starts_on, new.campaign.ends_on) == (date(year, 2, 1), date(year, 12, 31))
    assert [(p.starts_on, p.ends_on) for p in new.phases] == [
        (date(year, 2, 1), date(year, 6, 30)),
        (date(year, 7, 1), date(year, 12, 31)),
    ]
    assert {new.milestone_date(m) for m in new.milestones if m.kind is END} == {
        date(year, 6, 30),
        date(year, 12, 31),
    }
    assert [d.due_on for d in new.deadlines] == [
        date(year, 3, 15),
        date(year, 3, 15),
        date(year, 7, 15),
        date(year, 12, 15),
    ]
    assert new.render(new.deadlines[0].title) == f"Đăng ký thi đua, giao ước thi đua năm {year}"
    assert [m.name for m in new.movements] == [name for name, _, _ in PLAN_MOVEMENTS]

    # One-off congresses are left out, each named in a note for the officer.
    assert not CONGRESS_CODES & set(titles)
    left_out = [n for n in notes if n.kind == "milestone_left_out"]
    assert {n.fields["code"] for n in left_out} == CONGRESS_CODES
    assert {n.fields["date"] for n in left_out} >= {"08/10/2023", "01/12/2023"}
    old_year = {n.path for n in notes if n.kind == "mentions_old_year"}
    assert old_year == {
        "campaign.description",
        "movements[7].name",
        "phases[0].focus",
        "phases[1].focus",
    }


def test_a_leap_day_moves_to_the_28th_with_a_note() -> None:
    source = parse_campaign_text(
        minimal(
            {
                2: "  code: T-2024",
                3: "  name: Thi đua năm 2024",
                4: "  year: 2024",
                6: "  start: 2024-01-01",
                7: "  end: 2024-12-31",
                16: "    start: 2024-01-01",
                17: "    end: 2024-06-30",
                21: "    date: 29/02/2024",
                28: "    due: 2024-03-15",
            }
        )
    )

    text, notes = new_campaign_from(source, 2025)
    assert parse_campaign_text(text).milestones[0].falls_on == date(2025, 2, 28)
    assert notes == [
        TemplateNote("milestones[0].date", "leap_day", {"old": "29/02/2024", "new": "28/02/2025"})
    ]

    text, notes = new_campaign_from(source, 2028)
    assert parse_campaign_text(text).milestones[0].falls_on == date(2028, 2, 29)
    assert notes == []


def test_a_code_without_a_year_gets_one() -> None:
    source = parse_campaign_text(minimal({2: "  code: NT"}))

    text, notes = new_campaign_from(source, 2026)

    assert parse_campaign_text(text).campaign.code == "NT-2026"
    assert notes == [
        TemplateNote("campaign.code", "code_without_year", {"old": "NT", "new": "NT-2026"})
    ]


def test_a_year_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="between"):
        new_campaign_text(SHIPPED, 1999)
