"""Spreadsheet reports: /baocao on Telegram and `thidua report`, read back with openpyxl.

A generated campaign (members, commitments, pacts, congress works, initiatives, targets,
commendations, in both phases and on either side of the phase boundary at local midnight)
is reported for an officer's subtree; every figure of the workbook is checked against the
database, counted there another way.
"""

from __future__ import annotations

import csv
import io
import random
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers import reports
from handlers.i18n import Catalogue
from storage import reports as report_store
from storage.engine import SessionFactory
from storage.models import (
    Campaign,
    Commendation,
    Commitment,
    CommitmentKind,
    CommitmentStatus,
    CongressWork,
    Initiative,
    InitiativeStatus,
    Member,
    MemberStatus,
    Movement,
    Pact,
    PactStatus,
    Phase,
    Role,
    Target,
    Unit,
    UnitKind,
    WorkStatus,
)
from storage.text import fold
from storage.units import in_subtree
from tests.builders import T0, add_campaign, add_member, add_unit, ninh_thuan_tree
from tests.cli_runner import thidua
from tests.telegram_harness import TelegramBot

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
MINH, LAN = 9001, 1001
SHEETS = [
    "Tổng hợp",
    "Đoàn viên",
    "Đăng ký thi đua",
    "Giao ước thi đua",
    "Công trình Đại hội",
    "Sáng kiến",
    "Khen thưởng",
    "Thông tin báo cáo",
]
# Moments things happen at, UTC; the two in the middle straddle the phase boundary, which is
# local midnight (17:00 UTC): 30/06 23:30 in Hanoi is phase I, 01/07 00:10 is phase II.
MOMENTS = [
    datetime(2023, 2, 10, 2, 0, tzinfo=UTC),
    datetime(2023, 4, 20, 9, 30, tzinfo=UTC),
    datetime(2023, 6, 30, 16, 30, tzinfo=UTC),
    datetime(2023, 6, 30, 17, 10, tzinfo=UTC),
    datetime(2023, 9, 5, 3, 0, tzinfo=UTC),
    datetime(2023, 11, 28, 14, 0, tzinfo=UTC),
]
BOUNDARY_COMMITMENT = "DK-2023-BIEN"  # registered 01/07/2023 00:10 local


@dataclass
class Generated:
    units: dict[str, int]
    campaign_id: int
    phase_ids: dict[int, int]


def _moment(rng: random.Random) -> datetime:
    return rng.choice(MOMENTS)


async def generate(session: AsyncSession, seed: int = 2023) -> Generated:
    """A province with a campaign and a varied, reproducible year of activity."""
    rng = random.Random(seed)
    tree = await ninh_thuan_tree(session)
    empty = await add_unit(
        session, "CDCS-TRONG", "Công đoàn cơ sở Công ty chưa có đoàn viên", parent=tree["CD-KCN"]
    )
    tree[empty.code] = empty
    campaign = await add_campaign(session, tree["LDLD-NT"])
    movements = (
        await session.scalars(select(Movement).where(Movement.campaign_id == campaign.id))
    ).all()
    phases = {
        p.number: p
        for p in (await session.scalars(select(Phase).where(Phase.campaign_id == campaign.id)))
    }
    minh = await add_member(
        session, tree["CD-KCN"], "Trần Văn Minh", role=Role.OFFICER, telegram_id=MINH
    )
    province_officer = await add_member(
        session, tree["LDLD-NT"], "Phạm Quốc Bảo", role=Role.OFFICER
    )
    members: dict[str, list[Member]] = {}
    first = ["Nguyễn Thị", "Lê Văn", "Trần Minh", "Phạm Thu", "Hoàng Đức", "Võ Thị", "Đặng Văn"]
    last = ["Lan", "Tư", "Hà", "Cúc", "Bình", "Hùng", "Mai", "Sơn", "Yến"]
    for code in ("CDCS-MAYNT", "CDCS-MUOI", "CDCS-CVA"):
        members[code] = [
            await add_member(
                session,
                tree[code],
                "Nguyễn Thị Lan"
                if code == "CDCS-MAYNT" and i == 0
                else f"{rng.choice(first)} {rng.choice(last)} {i}",
                telegram_id=LAN if code == "CDCS-MAYNT" and i == 0 else None,
            )
            for i in range(rng.randint(4, 8))
        ]
    # Neither a pending applicant nor a rejected one is on the roll.
    await add_member(session, tree["CDCS-MAYNT"], "Người Chờ Duyệt", status=MemberStatus.PENDING)
    await add_member(session, tree["CDCS-MUOI"], "Người Bị Từ Chối", status=MemberStatus.REJECTED)
    everyone = [m for group in members.values() for m in group]

    number = 0
    commitments: list[Commitment] = []
    for member in everyone:
        for _ in range(rng.randint(0, 2)):
            number += 1
            moment = _moment(rng)
            commitment = Commitment(
                reference=f"DK-2023-{number:06d}",
                campaign_id=campaign.id,
                movement_id=rng.choice(movements).id,
                kind=CommitmentKind.INDIVIDUAL,
                author_id=member.id,
                unit_id=member.unit_id,
                content=f"Cam kết số {number}: hoàn thành vượt mức kế hoạch được giao",
                target_value=rng.choice([None, 2.0, 1.5]),
                target_unit=rng.choice([None, "sáng kiến"]),
                progress_percent=rng.choice([0, 30, 100]),
                status=rng.choice([CommitmentStatus.REGISTERED] * 3 + [CommitmentStatus.WITHDRAWN]),
                late=rng.random() < 0.2,
                created_at=moment,
                updated_at=moment,
            )
            session.add(commitment)
            commitments.append(commitment)
    boundary = Commitment(
        reference=BOUNDARY_COMMITMENT,
        campaign_id=campaign.id,
        movement_id=movements[0].id,
        kind=CommitmentKind.COLLECTIVE,
        author_id=minh.id,
        unit_id=tree["CD-KCN"].id,
        content="Tập thể cam kết 100% đoàn viên đăng ký thi đua",
        target_value=None,
        target_unit=None,
        progress_percent=50,
        status=CommitmentStatus.REGISTERED,
        late=False,
        created_at=MOMENTS[3],
        updated_at=MOMENTS[3],
    )
    session.add(boundary)
    commitments.append(boundary)
    await session.flush()

    for commitment in commitments:
        if rng.random() < 0.4:
            counterpart = rng.choice(everyone)
            moment = commitment.created_at
            status = rng.choice(list(PactStatus))
            personal = rng.random() < 0.7
            session.add(
                Pact(
                    commitment_id=commitment.id,
                    proposer_id=commitment.author_id,
                    counterpart_member_id=counterpart.id if personal else None,
                    counterpart_unit_id=None if personal else tree["CDCS-CVA"].id,
                    status=status,
                    expires_at=moment + timedelta(days=7),
                    responded_at=moment + timedelta(days=1)
                    if status in (PactStatus.ACCEPTED, PactStatus.DECLINED)
                    else None,
                    created_at=moment,
                )
            )

    for index, (code, status) in enumerate(
        [("CDCS-MAYNT", WorkStatus.COMPLETED), ("CDCS-CVA", WorkStatus.IN_PROGRESS)]
    ):
        moment = MOMENTS[index * 4]
        session.add(
            CongressWork(
                campaign_id=campaign.id,
                unit_id=tree[code].id,
                reference=f"CT-2023-{index + 1:06d}",
                title=f"Công trình chào mừng Đại hội của {code}",
                status=status,
                progress_percent=100 if status == WorkStatus.COMPLETED else 60,
                registered_by_id=members[code][0].id,
                late=False,
                created_at=moment,
                updated_at=moment + timedelta(days=30),
            )
        )

    for number, author in enumerate(everyone * 2, 1):
        if rng.random() < 0.45:
            continue
        status = rng.choice(list(InitiativeStatus))
        submitted = None if status == InitiativeStatus.DRAFT else _moment(rng)
        reviewed = status in (InitiativeStatus.ACCEPTED, InitiativeStatus.REJECTED)
        colleague = rng.choice(everyone)
        session.add(
            Initiative(
                reference=f"SK-2023-{number:06d}" if submitted else None,
                campaign_id=campaign.id,
                author_id=author.id,
                unit_id=author.unit_id,
                title=f"Sáng kiến cải tiến số {number}",
                title_folded=fold(f"Sáng kiến cải tiến số {number}"),
                problem="Thực trạng",
                solution="Giải pháp",
                benefit="Hiệu quả",
                estimated_value=rng.choice([None, 5_000_000, 120_000_000]),
                field="Cải tiến kỹ thuật",
                co_author_ids=[colleague.id] if colleague.id != author.id else [],
                attachments=[],
                status=status,
                reviewer_id=minh.id if reviewed else None,
                review_note="Đạt yêu cầu" if reviewed else None,
                recognised_value=50_000_000 if status == InitiativeStatus.ACCEPTED else None,
                recognised_level="unit" if status == InitiativeStatus.ACCEPTED else None,
                submitted_at=submitted,
                reviewed_at=submitted + timedelta(days=3) if submitted and reviewed else None,
                created_at=submitted or T0,
                updated_at=submitted or T0,
            )
        )

    for code, value in (("CD-KCN", 12), ("CDCS-MAYNT", 5), ("CDCS-MUOI", 0), ("CD-GD", 4)):
        session.add(
            Target(
                unit_id=tree[code].id,
                campaign_id=campaign.id,
                metric="initiatives",
                value=value,
                updated_at=T0,
            )
        )

    commended = [
        (members["CDCS-MAYNT"][0], "CDCS-MAYNT", phases[1].id, MOMENTS[1], "Lao động giỏi"),
        (None, "CDCS-MUOI", phases[2].id, MOMENTS[4], "Giấy khen"),
        (members["CDCS-MUOI"][1], "CDCS-MUOI", None, MOMENTS[2], "Biểu dương"),
        (None, "CD-KCN", None, MOMENTS[5], "Bằng khen"),
        (members["CDCS-CVA"][0], "CDCS-CVA", phases[1].id, MOMENTS[0], "Lao động giỏi"),
    ]
    for member, code, phase_id, moment, title in commended:
        session.add(
            Commendation(
                campaign_id=campaign.id,
                phase_id=phase_id,
                member_id=member.id if member else None,
                unit_id=tree[code].id,
                title=title,
                reason="Có thành tích xuất sắc trong phong trào thi đua",
                awarded_by_id=province_officer.id,
                created_at=moment,
            )
        )
    await session.flush()
    return Generated(
        units={code: unit.id for code, unit in tree.items()},
        campaign_id=campaign.id,
        phase_ids={n: p.id for n, p in phases.items()},
    )


@pytest.fixture
async def world(sessions: SessionFactory) -> Generated:
    async with sessions() as session, session.begin():
        return await generate(session)


# --- what the database says, counted another way ---------------------------------------------


async def expected_summary(
    sessions: SessionFactory, root_code: str, campaign_id: int, phase: int | None
) -> dict[str, list[object]]:
    """Each unit's summary row, computed with one subquery per unit and figure."""
    async with sessions() as session:
        root = await session.scalar(select(Unit).where(Unit.code == root_code))
        assert root is not None
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None
        window: tuple[datetime, datetime] | None = None
        phase_id = None
        if phase is not None:
            found = await session.scalar(
                select(Phase).where(Phase.campaign_id == campaign_id, Phase.number == phase)
            )
            assert found is not None
            window = report_store.phase_window(found, ZONE)
            phase_id = found.id

        def during(column: object) -> list[object]:
            return [] if window is None else [column >= window[0], column < window[1]]  # type: ignore[operator]

        rows: dict[str, list[object]] = {}
        for unit in (await session.scalars(select(Unit).where(in_subtree(root.path)))).all():
            ids = select(Unit.id).where(in_subtree(unit.path)).scalar_subquery()

            async def count(statement: object) -> int:
                return int(await session.scalar(statement) or 0)  # type: ignore[arg-type]

            members = await count(
                select(func.count())
                .select_from(Member)
                .where(Member.unit_id.in_(ids), Member.status == MemberStatus.ACTIVE)
            )
            commitments = await count(
                select(func.count())
                .select_from(Commitment)
                .where(
                    Commitment.unit_id.in_(ids),
                    Commitment.campaign_id == campaign_id,
                    Commitment.status == CommitmentStatus.REGISTERED,
                    *during(Commitment.created_at),
                )
            )
            pacts = await count(
                select(func.count())
                .select_from(Pact)
                .join(Commitment, Commitment.id == Pact.commitment_id)
                .where(
                    Commitment.unit_id.in_(ids),
                    Commitment.campaign_id == campaign_id,
                    Pact.status == PactStatus.ACCEPTED,
                    *during(Pact.created_at),
                )
            )
            grassroots = await count(
                select(func.count())
                .select_from(Unit)
                .where(Unit.id.in_(ids), Unit.kind == UnitKind.GRASSROOTS)
            )
            works = (
                await session.scalars(
                    select(CongressWork).where(
                        CongressWork.unit_id.in_(ids),
                        CongressWork.campaign_id == campaign_id,
                        *during(CongressWork.created_at),
                    )
                )
            ).all()
            own_work = next((w for w in works if w.unit_id == unit.id), None)
            statuses = {
                status: await count(
                    select(func.count())
                    .select_from(Initiative)
                    .where(
                        Initiative.unit_id.in_(ids),
                        Initiative.campaign_id == campaign_id,
                        Initiative.status == status,
                        *during(Initiative.submitted_at),
                    )
                )
                for status in (InitiativeStatus.ACCEPTED, InitiativeStatus.SUBMITTED)
            }
            target = await session.scalar(
                select(Target.value).where(
                    Target.unit_id == unit.id, Target.campaign_id == campaign_id
                )
            )
            commendation_filter: list[object] = []
            if phase_id is not None:
                assert window is not None
                commendation_filter = [
                    (Commendation.phase_id == phase_id)
                    | (
                        Commendation.phase_id.is_(None)
                        & (Commendation.created_at >= window[0])
                        & (Commendation.created_at < window[1])
                    )
                ]
            commendations = await count(
                select(func.count())
                .select_from(Commendation)
                .where(
                    Commendation.unit_id.in_(ids),
                    Commendation.campaign_id == campaign_id,
                    *commendation_filter,  # type: ignore[arg-type]
                )
            )
            accepted = statuses[InitiativeStatus.ACCEPTED]
            work_status = None
            if unit.kind == UnitKind.GRASSROOTS:
                work_status = {
                    None: "Chưa đăng ký",
                    WorkStatus.REGISTERED: "Đã đăng ký",
                    WorkStatus.IN_PROGRESS: "Đang thực hiện",
                    WorkStatus.COMPLETED: "Đã hoàn thành",
                }[own_work.status if own_work else None]
            rows[unit.code] = [
                unit.code,
                unit.name,
                members,
                commitments,
                pacts,
                grassroots,
                len({w.unit_id for w in works}),
                sum(w.status == WorkStatus.COMPLETED for w in works),
                work_status,
                accepted,
                statuses[InitiativeStatus.SUBMITTED],
                target,
                round(100 * accepted / target) if target else None,
                commendations,
            ]
        return rows


async def expected_counts(
    sessions: SessionFactory, root_code: str, campaign_id: int
) -> dict[str, int]:
    """How many rows each detail sheet has for the whole campaign."""
    async with sessions() as session:
        root = await session.scalar(select(Unit).where(Unit.code == root_code))
        assert root is not None
        ids = select(Unit.id).where(in_subtree(root.path)).scalar_subquery()

        async def count(statement: object) -> int:
            return int(await session.scalar(statement) or 0)  # type: ignore[arg-type]

        return {
            "Đoàn viên": await count(
                select(func.count())
                .select_from(Member)
                .where(Member.unit_id.in_(ids), Member.status == MemberStatus.ACTIVE)
            ),
            "Đăng ký thi đua": await count(
                select(func.count())
                .select_from(Commitment)
                .where(Commitment.unit_id.in_(ids), Commitment.campaign_id == campaign_id)
            ),
            "Giao ước thi đua": await count(
                select(func.count())
                .select_from(Pact)
                .join(Commitment, Commitment.id == Pact.commitment_id)
                .where(Commitment.unit_id.in_(ids))
            ),
            "Công trình Đại hội": await count(
                select(func.count()).select_from(CongressWork).where(CongressWork.unit_id.in_(ids))
            ),
            "Sáng kiến": await count(
                select(func.count())
                .select_from(Initiative)
                .where(Initiative.unit_id.in_(ids), Initiative.status != InitiativeStatus.DRAFT)
            ),
            "Khen thưởng": await count(
                select(func.count()).select_from(Commendation).where(Commendation.unit_id.in_(ids))
            ),
            "Tổng hợp": await count(select(func.count()).select_from(Unit).where(Unit.id.in_(ids))),
        }


# --- reading the workbook back ---------------------------------------------------------------


def summary_rows(workbook: openpyxl.Workbook) -> dict[str, list[object]]:
    """The summary's rows by unit code, in the columns expected_summary computes."""
    sheet = workbook["Tổng hợp"]
    rows = list(sheet.iter_rows(min_row=2, values_only=True))
    picked = (0, 1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
    return {str(row[0]): [row[i] for i in picked] for row in rows}


def check_layout(workbook: openpyxl.Workbook) -> None:
    """Header row frozen, filters over the data, widths that fit the longest values."""
    assert workbook.sheetnames == SHEETS
    for sheet in workbook.worksheets:
        assert sheet.freeze_panes == "A2", sheet.title
        last = openpyxl.utils.get_column_letter(sheet.max_column)
        assert sheet.auto_filter.ref == f"A1:{last}{sheet.max_row}", sheet.title
        for column in range(1, sheet.max_column + 1):
            letter = openpyxl.utils.get_column_letter(column)
            width = sheet.column_dimensions[letter].width
            header = str(sheet.cell(1, column).value)
            assert sheet.cell(1, column).font.bold
            longest = max(
                (
                    len(str(v))
                    for (v,) in sheet.iter_rows(
                        min_row=2, min_col=column, max_col=column, values_only=True
                    )
                    if v is not None and not isinstance(v, datetime)
                ),
                default=0,
            )
            assert width >= min(max(longest, max(map(len, header.split()))), 45), (
                sheet.title,
                header,
            )


async def test_the_workbook_matches_the_database_for_a_generated_subtree(
    sessions: SessionFactory, world: Generated
) -> None:
    texts = Catalogue.load()
    now = datetime(2023, 12, 31, 10, 0, tzinfo=UTC)
    async with sessions() as session:
        root = await session.get(Unit, world.units["CD-KCN"])
        campaign = await session.get(Campaign, world.campaign_id)
        assert root is not None
        assert campaign is not None
        data = await report_store.load(session, root, campaign, zone=ZONE)
    sheets, content = await reports.build(data, texts, ZONE, now)

    workbook = openpyxl.load_workbook(io.BytesIO(content))
    check_layout(workbook)
    assert [c.value for c in workbook["Tổng hợp"][1]] == [
        "Mã đơn vị",
        "Đơn vị",
        "Cấp",
        "Khối, cụm thi đua",
        "Số đoàn viên",
        "Đăng ký thi đua",
        "Giao ước đã nhận lời",
        "Số CĐCS",
        "CĐCS có công trình",
        "Công trình hoàn thành",
        "Công trình của CĐCS",
        "Sáng kiến được công nhận",
        "Sáng kiến chờ duyệt",
        "Chỉ tiêu sáng kiến",
        "Tỷ lệ đạt chỉ tiêu (%)",
        "Khen thưởng",
    ]
    assert [c.value for c in workbook["Sáng kiến"][1]][:10] == [
        "Mã sáng kiến",
        "Tên sáng kiến",
        "Mã đơn vị",
        "Đơn vị",
        "Tác giả",
        "Đồng tác giả",
        "Lĩnh vực",
        "Ngày gửi",
        "Kết quả duyệt",
        "Giá trị làm lợi ước tính (đồng)",
    ]
    # The subtree only, the officer's unit first, then the units under it by name.
    assert list(summary_rows(workbook)) == ["CD-KCN", "CDCS-TRONG", "CDCS-MUOI", "CDCS-MAYNT"]
    expected = await expected_summary(sessions, "CD-KCN", world.campaign_id, None)
    assert summary_rows(workbook) == expected
    assert expected["CD-KCN"][2] > 0  # the data is not empty
    assert expected["CD-KCN"][9] > 0
    counts = await expected_counts(sessions, "CD-KCN", world.campaign_id)
    for title, count in counts.items():
        assert workbook[title].max_row - 1 == count, title
    assert [len(t.rows) for t in sheets[1:7]] == [counts[s] for s in SHEETS[1:7]]

    # The collective commitment registered at 00:10 on 01/07 local time is dated that day.
    commitments = {
        row[0]: row for row in workbook["Đăng ký thi đua"].iter_rows(min_row=2, values_only=True)
    }
    boundary = commitments[BOUNDARY_COMMITMENT]
    assert boundary[1] == datetime(2023, 7, 1)
    assert boundary[2:6] == ("CD-KCN", root.name, "Trần Văn Minh", "Tập thể")
    assert workbook["Đăng ký thi đua"]["B2"].number_format == "DD/MM/YYYY"

    # An accepted initiative: its review, value and reviewer.
    sheet = workbook["Sáng kiến"]
    accepted = [
        (row, index)
        for index, row in enumerate(sheet.iter_rows(min_row=2, values_only=True), 2)
        if row[8] == "Được công nhận"
    ]
    assert accepted
    row, index = accepted[0]
    assert row[10] == 50_000_000
    assert row[11:13] == ("Cấp đơn vị", "Trần Văn Minh")
    assert isinstance(row[13], datetime)
    assert sheet.cell(index, 11).number_format == "#,##0"
    assert {r[8] for r in sheet.iter_rows(min_row=2, values_only=True)} <= {
        "Chờ duyệt",
        "Cần chỉnh sửa",
        "Được công nhận",
        "Không được công nhận",
    }

    # Commendations of a member and of a unit, with who recorded them.
    awarded = list(workbook["Khen thưởng"].iter_rows(min_row=2, values_only=True))
    assert {(r[1], r[2], r[4]) for r in awarded} == {
        ("Bằng khen", "Tập thể", "CD-KCN"),
        ("Giấy khen", "Tập thể", "CDCS-MUOI"),
        ("Biểu dương", "Cá nhân", "CDCS-MUOI"),
        ("Lao động giỏi", "Cá nhân", "CDCS-MAYNT"),
    }
    assert {r[8] for r in awarded} == {"Phạm Quốc Bảo"}

    # Members: the roll of the subtree, with each one's own figures.
    roll = list(workbook["Đoàn viên"].iter_rows(min_row=2, values_only=True))
    assert "Người Chờ Duyệt" not in {r[0] for r in roll}
    lan = next(r for r in roll if r[0] == "Nguyễn Thị Lan")
    assert lan[1:5] == (
        "CDCS-MAYNT",
        "Công đoàn cơ sở Công ty TNHH May Ninh Thuận",
        "Đoàn viên",
        datetime(2023, 3, 1),
    )
    async with sessions() as session:
        lan_id = await session.scalar(select(Member.id).where(Member.full_name == "Nguyễn Thị Lan"))
        registered = await session.scalar(
            select(func.count())
            .select_from(Commitment)
            .where(
                Commitment.author_id == lan_id,
                Commitment.kind == CommitmentKind.INDIVIDUAL,
                Commitment.status == CommitmentStatus.REGISTERED,
            )
        )
    assert lan[5] == registered

    about = dict(workbook["Thông tin báo cáo"].iter_rows(min_row=2, values_only=True))
    assert about["Đơn vị"] == f"{root.name} (CD-KCN)"
    assert about["Giai đoạn"] == "cả phong trào (01/02/2023 – 31/12/2023)"
    assert about["Lập lúc"] == "31/12/2023 17:00"


@pytest.mark.parametrize("phase", [1, 2])
async def test_a_phase_report_counts_what_happened_in_that_phase(
    sessions: SessionFactory, world: Generated, phase: int
) -> None:
    async with sessions() as session:
        root = await session.get(Unit, world.units["LDLD-NT"])
        campaign = await session.get(Campaign, world.campaign_id)
        chosen = await session.get(Phase, world.phase_ids[phase])
        assert root is not None
        assert campaign is not None
        data = await report_store.load(session, root, campaign, phase=chosen, zone=ZONE)
    _sheets, content = await reports.build(data, Catalogue.load(), ZONE, T0)

    workbook = openpyxl.load_workbook(io.BytesIO(content))
    assert summary_rows(workbook) == await expected_summary(
        sessions, "LDLD-NT", world.campaign_id, phase
    )
    references = {
        row[0] for row in workbook["Đăng ký thi đua"].iter_rows(min_row=2, values_only=True)
    }
    assert (BOUNDARY_COMMITMENT in references) == (phase == 2)
    dates = [row[1] for row in workbook["Đăng ký thi đua"].iter_rows(min_row=2, values_only=True)]
    start, end = (datetime(2023, 2, 1), datetime(2023, 6, 30))
    if phase == 2:
        start, end = (datetime(2023, 7, 1), datetime(2023, 12, 31))
    assert dates
    assert all(start <= d <= end for d in dates)
    # The roll is the current one, whatever the phase.
    counts = await expected_counts(sessions, "LDLD-NT", world.campaign_id)
    assert workbook["Đoàn viên"].max_row - 1 == counts["Đoàn viên"]
    about = dict(workbook["Thông tin báo cáo"].iter_rows(min_row=2, values_only=True))
    assert str(about["Giai đoạn"]).startswith(f"Đợt {'I' * phase} (")


async def test_csv_files_have_a_bom_and_the_same_rows(
    sessions: SessionFactory, world: Generated
) -> None:
    async with sessions() as session:
        root = await session.get(Unit, world.units["LDLD-NT"])
        campaign = await session.get(Campaign, world.campaign_id)
        assert root is not None
        assert campaign is not None
        data = await report_store.load(session, root, campaign, zone=ZONE)
    sheets = reports.tables(data, Catalogue.load(), ZONE, T0)

    archive = zipfile.ZipFile(io.BytesIO(reports.csv_zip_bytes(sheets, T0, ZONE)))

    names = archive.namelist()
    assert names == [
        "01-tong-hop.csv",
        "02-doan-vien.csv",
        "03-dang-ky-thi-dua.csv",
        "04-giao-uoc-thi-dua.csv",
        "05-cong-trinh-dai-hoi.csv",
        "06-sang-kien.csv",
        "07-khen-thuong.csv",
        "08-thong-tin-bao-cao.csv",
    ]
    for name, table in zip(names, sheets, strict=True):
        raw = archive.read(name)
        assert raw.startswith(b"\xef\xbb\xbf"), name
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
        assert rows[0] == [c.title for c in table.columns]
        assert len(rows) - 1 == len(table.rows)
    commitments = list(csv.reader(io.StringIO(archive.read(names[2]).decode("utf-8-sig"))))
    boundary = next(r for r in commitments if r[0] == BOUNDARY_COMMITMENT)
    assert boundary[1] == "01/07/2023"
    summary = list(csv.reader(io.StringIO(archive.read(names[0]).decode("utf-8-sig"))))
    assert summary[1][:3] == ["LDLD-NT", "Liên đoàn Lao động tỉnh Ninh Thuận", "LĐLĐ tỉnh"]


# --- on Telegram -----------------------------------------------------------------------------


async def test_an_officer_receives_the_workbook_of_a_phase_on_telegram(
    bot: TelegramBot, sessions: SessionFactory, world: Generated
) -> None:
    minh = bot.user(MINH, "Minh")

    asked = await minh.send("/baocao")

    assert asked[-1].text.startswith(
        "📊 Báo cáo thi đua của Công đoàn các Khu công nghiệp tỉnh Ninh Thuận"
    )
    assert asked[-1].labels == [
        "Cả phong trào",
        "Đợt I (01/02 – 30/06)",
        "Đợt II (01/07 – 31/12)",
    ]
    whole = asked[-1].callback_data("Cả phong trào")
    got = await minh.press("Đợt I")

    assert [m.method for m in got] == ["sendMessage", "sendDocument"]
    assert "Giai đoạn: Đợt I (01/02/2023 – 30/06/2023)" in got[0].text
    document = got[1]
    assert document.file_id == "bao-cao-thi-dua-cd-kcn-dot-1-20230301.xlsx"
    assert document.content is not None
    workbook = openpyxl.load_workbook(io.BytesIO(document.content))
    check_layout(workbook)
    expected = await expected_summary(sessions, "CD-KCN", world.campaign_id, 1)
    assert summary_rows(workbook) == expected
    total = expected["CD-KCN"]
    assert f"4 đơn vị, {total[2]} đoàn viên, {total[3]} đăng ký thi đua" in got[0].text

    # The conversation is over: pressing again is refused, nothing is sent twice.
    again = await minh.press_data(whole, asked[-1].message_id)
    assert again[-1].text.startswith("Lựa chọn này đã cũ")


async def test_report_commands_for_members_and_unknown_phases(
    bot: TelegramBot, world: Generated
) -> None:
    lan = bot.user(LAN, "Lan")
    minh = bot.user(MINH, "Minh")

    refused = await lan.send("/report")
    assert refused[-1].text == "Chức năng này chỉ dành cho cán bộ công đoàn."

    unknown = await minh.send("/baocao 3")
    assert unknown[-1].text.startswith("Không có đợt thi đua số 3.")

    direct = await minh.send("/report 2")
    assert [m.method for m in direct] == ["sendMessage", "sendDocument"]
    assert direct[1].file_id == "bao-cao-thi-dua-cd-kcn-dot-2-20230301.xlsx"


# --- on the command line ---------------------------------------------------------------------


async def test_the_cli_writes_xlsx_and_csv_and_explains_mistakes(
    database_url: str, world: Generated, sessions: SessionFactory, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url, "TIMEZONE": "Asia/Ho_Chi_Minh", "LOG_LEVEL": "WARNING"}
    out = tmp_path / "kcn.xlsx"

    status, printed, err = await thidua(
        "report", "--unit", "cd-kcn", "--phase", "2", "--out", str(out), env=env, cwd=tmp_path
    )

    assert status == 0, err
    assert printed.startswith(f"Đã ghi báo cáo {out}: 4 đơn vị,")
    workbook = openpyxl.load_workbook(out)
    check_layout(workbook)
    assert summary_rows(workbook) == await expected_summary(
        sessions, "CD-KCN", world.campaign_id, 2
    )

    archive_path = tmp_path / "tinh.zip"
    status, printed, err = await thidua(
        "report",
        "--unit",
        "LDLD-NT",
        "--format",
        "csv",
        "--out",
        str(archive_path),
        env=env,
        cwd=tmp_path,
    )
    assert status == 0, err
    assert "8 tệp CSV" in printed
    with zipfile.ZipFile(archive_path) as archive:
        assert all(archive.read(n).startswith(b"\xef\xbb\xbf") for n in archive.namelist())

    status, _, err = await thidua(
        "report", "--unit", "NOPE", "--out", str(out), env=env, cwd=tmp_path
    )
    assert (status, err.strip()) == (1, "Không có đơn vị mã NOPE.")
    status, _, err = await thidua(
        "report", "--unit", "CD-KCN", "--phase", "7", "--out", str(out), env=env, cwd=tmp_path
    )
    assert status == 1
    assert err.strip() == (
        "Phong trào Phong trào thi đua yêu nước năm 2023 không có đợt số 7 (các đợt: 1, 2)."
    )
    status, _, err = await thidua(
        "report", "--unit", "CD-KCN", "--format", "pdf", "--out", str(out), env=env, cwd=tmp_path
    )
    assert status == 2


def test_text_that_looks_like_a_formula_stays_text() -> None:
    typed = '=HYPERLINK("http://example.org","Bấm vào đây")'
    table = reports.Table(
        "t",
        "Đăng ký thi đua",
        [reports.Column("Nội dung", "long"), reports.Column("Người đăng ký")],
        [[typed, "Nguyễn Thị Lan\x0b"], ["- Hoàn thành kế hoạch", "@Lan"]],
    )

    sheet = openpyxl.load_workbook(io.BytesIO(reports.xlsx_bytes([table]))).active
    assert sheet["A2"].value == typed
    assert sheet["A2"].data_type == "s"
    assert sheet["B2"].value == "Nguyễn Thị Lan"  # a control character Excel refuses is dropped
    rows = list(csv.reader(io.StringIO(reports.csv_bytes(table).decode("utf-8-sig"))))
    assert rows[1:] == [["'" + typed, "Nguyễn Thị Lan\x0b"], ["'- Hoàn thành kế hoạch", "'@Lan"]]
