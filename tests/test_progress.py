"""Progress: the roll-up of a generated tree, the bar chart, and /tiendo on Telegram.

The trend chart and the weekly counts behind it are in test_trend.py.
"""

from __future__ import annotations

import io
import itertools
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.console import render
from handlers.charts import Bar, bars_size, draw_bars, trend_size
from handlers.i18n import Catalogue
from handlers.types import Attachment, Reply
from storage import progress as progress_store
from storage import targets
from storage.engine import SessionFactory
from storage.models import (
    Campaign,
    Commitment,
    CommitmentKind,
    CommitmentStatus,
    Initiative,
    InitiativeStatus,
    Member,
    MemberStatus,
    Movement,
    Role,
    Unit,
    UnitKind,
)
from tests.builders import T0, add_campaign, add_member, add_unit
from tests.telegram_harness import TelegramBot

MINH, LAN, PHUONG = 9001, 1001, 9000
KCN = "Công đoàn các Khu công nghiệp tỉnh Ninh Thuận"
GD = "Công đoàn ngành Giáo dục tỉnh Ninh Thuận"
MAYNT = "Công đoàn cơ sở Công ty TNHH May Ninh Thuận"
MUOI = "Công đoàn cơ sở Công ty Cổ phần Muối Ninh Thuận"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_references = itertools.count(1)


async def add_initiatives(
    session: AsyncSession,
    campaign_id: int,
    author: Member,
    statuses: Sequence[InitiativeStatus],
) -> None:
    """Insert one initiative of `author` (in their unit) per status given, reviewed at T0."""
    s = InitiativeStatus
    reviewed = {s.ACCEPTED, s.REJECTED, s.CHANGES_REQUESTED}
    for number, status in enumerate(statuses):
        title = f"Sáng kiến {author.id}-{number}"
        session.add(
            Initiative(
                campaign_id=campaign_id,
                author_id=author.id,
                unit_id=author.unit_id,
                title=title,
                title_folded=title.lower(),
                status=status,
                submitted_at=None if status == InitiativeStatus.DRAFT else T0,
                reviewed_at=T0 if status in reviewed else None,
                created_at=T0,
                updated_at=T0,
            )
        )
    await session.flush()


async def add_commitment(
    session: AsyncSession,
    campaign_id: int,
    author: Member,
    *,
    status: CommitmentStatus = CommitmentStatus.REGISTERED,
) -> None:
    movement = await session.scalar(
        select(Movement.id).where(Movement.campaign_id == campaign_id).limit(1)
    )
    assert movement is not None
    session.add(
        Commitment(
            reference=f"DK-T-{next(_references)}",
            campaign_id=campaign_id,
            movement_id=movement,
            kind=CommitmentKind.INDIVIDUAL,
            author_id=author.id,
            unit_id=author.unit_id,
            content="Tôi cam kết hoàn thành tốt nhiệm vụ",
            status=status,
            created_at=T0,
            updated_at=T0,
        )
    )
    await session.flush()


# --- the roll-up on a generated tree ------------------------------------------------------------


@dataclass
class Expected:
    """What was put in, unit by unit, to count again by hand."""

    units: dict[int, Unit] = field(default_factory=dict)
    members: dict[int, int] = field(default_factory=dict)
    commitments: dict[int, int] = field(default_factory=dict)
    accepted: dict[int, int] = field(default_factory=dict)
    waiting: dict[int, int] = field(default_factory=dict)
    submitted: dict[int, int] = field(default_factory=dict)

    def total(self, counts: dict[int, int], unit: Unit) -> int:
        return sum(
            n for unit_id, n in counts.items() if self.units[unit_id].path.startswith(unit.path)
        )


async def generated_tree(session: AsyncSession, seed: int) -> tuple[Unit, Campaign, Expected]:
    """A random four-level tree with members, commitments and initiatives of two campaigns."""
    rng = random.Random(seed)
    expected = Expected()
    root = await add_unit(session, "ROOT", "Liên đoàn Lao động tỉnh", kind=UnitKind.PROVINCE)
    expected.units[root.id] = root
    campaign = await add_campaign(session, root)
    # Last year's campaign: its initiatives and commitments must count nowhere.
    old = Campaign(
        code="NT-2022",
        name="Phong trào thi đua năm 2022",
        year=2022,
        root_unit_id=root.id,
        starts_on=date(2022, 2, 1),
        ends_on=date(2022, 12, 31),
        created_at=T0,
        updated_at=T0,
    )
    session.add(old)
    await session.flush()
    uppers = [root]
    for number in range(40):
        parent = rng.choice(uppers)
        upper = parent.depth < 2 and rng.random() < 0.4
        unit = await add_unit(
            session,
            f"U{number}",
            f"Công đoàn số {number}",
            parent=parent,
            kind=UnitKind.UPPER if upper else UnitKind.GRASSROOTS,
        )
        expected.units[unit.id] = unit
        if upper:
            uppers.append(unit)
    # Another province in the same database: none of it is under ROOT.
    other = await add_unit(session, "OTHER", "Liên đoàn Lao động tỉnh khác", kind=UnitKind.PROVINCE)
    expected.units[other.id] = other
    accepted, waiting = InitiativeStatus.ACCEPTED, InitiativeStatus.SUBMITTED
    for unit in list(expected.units.values()):
        for person in range(rng.randint(0, 3)):
            pending = rng.random() < 0.2
            member = await add_member(
                session,
                unit,
                f"Người {unit.code}-{person}",
                status=MemberStatus.PENDING if pending else MemberStatus.ACTIVE,
            )
            if pending:
                continue
            expected.members[unit.id] = expected.members.get(unit.id, 0) + 1
            if unit is other:
                continue
            if rng.random() < 0.7:
                await add_commitment(session, campaign.id, member)
                expected.commitments[unit.id] = expected.commitments.get(unit.id, 0) + 1
            if rng.random() < 0.2:
                await add_commitment(
                    session, campaign.id, member, status=CommitmentStatus.WITHDRAWN
                )
            statuses = [rng.choice(list(InitiativeStatus)) for _ in range(rng.randint(0, 6))]
            await add_initiatives(session, campaign.id, member, statuses)
            await add_initiatives(session, old.id, member, [accepted, waiting])
            for status in statuses:
                if status != InitiativeStatus.DRAFT:
                    expected.submitted[unit.id] = expected.submitted.get(unit.id, 0) + 1
                if status == accepted:
                    expected.accepted[unit.id] = expected.accepted.get(unit.id, 0) + 1
                if status == waiting:
                    expected.waiting[unit.id] = expected.waiting.get(unit.id, 0) + 1
    return root, campaign, expected


def assert_figures(figures: progress_store.Figures, unit: Unit, expected: Expected) -> None:
    assert figures.members == expected.total(expected.members, unit), unit.code
    assert figures.commitments == expected.total(expected.commitments, unit), unit.code
    assert figures.initiatives_accepted == expected.total(expected.accepted, unit), unit.code
    assert figures.initiatives_waiting == expected.total(expected.waiting, unit), unit.code


@pytest.mark.parametrize("seed", [1, 2])
async def test_standings_roll_each_subtree_up_on_a_generated_tree(
    sessions: SessionFactory, seed: int
) -> None:
    async with sessions() as session, session.begin():
        root, campaign, expected = await generated_tree(session, seed)

    async with sessions() as session:
        uppers = [
            u
            for u in expected.units.values()
            if u.kind != UnitKind.GRASSROOTS and u.code != "OTHER"
        ]
        leaf = next(u for u in expected.units.values() if u.kind == UnitKind.GRASSROOTS)
        assert len(uppers) > 3
        for parent in [*uppers, leaf]:
            own, below = await progress_store.standings(session, parent, campaign.id)
            assert own.unit.id == parent.id
            assert_figures(own.figures, parent, expected)
            children = sorted(
                (u for u in expected.units.values() if u.parent_id == parent.id),
                key=lambda u: u.name,
            )
            assert [s.unit.id for s in below] == [u.id for u in children]
            for standing in below:
                assert_figures(standing.figures, standing.unit, expected)

        everything = await progress_store.progress(session, root, campaign.id)
        assert set(everything.units) == {u.id for u in expected.units.values() if u.code != "OTHER"}
        for unit in everything.units.values():
            figures = everything.of(unit)
            assert_figures(figures, unit, expected)
            assert figures.initiatives_submitted == expected.total(expected.submitted, unit)


async def test_standings_carry_targets_and_rank_the_furthest_behind_first(
    sessions: SessionFactory, org: dict[str, int]
) -> None:
    async with sessions() as session, session.begin():
        units = {code: await session.get(Unit, unit_id) for code, unit_id in org.items()}
        root, kcn = units["LDLD-NT"], units["CD-KCN"]
        assert root is not None
        assert kcn is not None
        campaign = await add_campaign(session, root)
        for code, value in (("CD-KCN", 10), ("CDCS-MAYNT", 4), ("CDCS-MUOI", 0)):
            await targets.put(
                session,
                unit_id=org[code],
                campaign_id=campaign.id,
                metric=targets.INITIATIVES,
                value=value,
                now=T0,
            )
        for code, count in (("CDCS-MAYNT", 3), ("CDCS-MUOI", 1), ("CDCS-CVA", 2)):
            unit = units[code]
            assert unit is not None
            author = await add_member(session, unit, f"Tác giả {code}")
            await add_initiatives(session, campaign.id, author, [InitiativeStatus.ACCEPTED] * count)

    async with sessions() as session:
        own, below = await progress_store.standings(session, root, campaign.id)
        assert (own.achieved, own.target, own.percent) == (6, None, None)
        assert [(s.unit.code, s.achieved, s.target, s.percent) for s in below] == [
            ("CD-KCN", 4, 10, 40),
            ("CD-GD", 2, None, None),
        ]
        _, kcn_below = await progress_store.standings(session, kcn, campaign.id)
    ranked = progress_store.worst_first(kcn_below)
    # A target of zero gives no percentage: listed with the units without a target, last.
    assert [(s.unit.code, s.percent) for s in ranked] == [("CDCS-MAYNT", 75), ("CDCS-MUOI", None)]


# --- the chart ----------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 4, 25])
def test_the_chart_is_a_png_of_the_expected_size_with_every_vietnamese_letter(count: int) -> None:
    names = [
        "Công đoàn cơ sở Công ty TNHH May Ninh Thuận",
        "Công đoàn cơ sở Trường THPT Chuyên Lê Quý Đôn",
        "Công đoàn cơ sở Ủy ban nhân dân phường Phủ Hà",
        "Công đoàn ngành Giáo dục – Đào tạo",
    ]
    bars = [
        Bar(names[i % len(names)], None if i % 5 == 3 else float(i * 13), f"{i}/20")
        for i in range(count)
    ]
    with warnings.catch_warnings():
        # Matplotlib warns "Glyph ... missing from font(s)" for a letter it cannot draw.
        warnings.simplefilter("error")
        png = draw_bars(
            "Tiến độ sáng kiến so với chỉ tiêu\nLiên đoàn Lao động tỉnh Ninh Thuận",
            "% chỉ tiêu đã đạt",
            bars,
        )

    assert png.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.size == bars_size(count)
        image.verify()
    width, height = bars_size(count)
    assert width == 1000
    assert height == round(100 * (1.45 + 0.42 * count))


def test_the_console_names_a_chart_it_cannot_show() -> None:
    texts = Catalogue.load()
    chart = Attachment.generated("photo", "tien-do.png", b"\x89PNG...", "image/png")
    shown = render(
        Reply("Tiến độ", attachments=(chart, Attachment("photo", "AgAC-file-id"))), texts
    )
    assert shown.splitlines() == ["Tiến độ", "  [ảnh: tien-do.png]", "  📎 photo"]


# --- /tiendo on Telegram ------------------------------------------------------------------------


@pytest.fixture
async def campaign_with_initiatives(sessions: SessionFactory, org: dict[str, int]) -> int:
    """Targets: province 30, CD-KCN 10 (CDCS-MAYNT 4, CDCS-MUOI 6); initiatives in three CĐCS."""
    async with sessions() as session, session.begin():
        units = {code: await session.get(Unit, unit_id) for code, unit_id in org.items()}
        root, maynt, muoi, cva = (
            units["LDLD-NT"],
            units["CDCS-MAYNT"],
            units["CDCS-MUOI"],
            units["CDCS-CVA"],
        )
        assert root is not None
        assert maynt is not None
        assert muoi is not None
        assert cva is not None
        campaign = await add_campaign(session, root)
        await add_member(session, root, "Hồ Thị Phương", role=Role.OFFICER, telegram_id=PHUONG)
        for code, value in (("LDLD-NT", 30), ("CD-KCN", 10), ("CDCS-MAYNT", 4), ("CDCS-MUOI", 6)):
            await targets.put(
                session,
                unit_id=org[code],
                campaign_id=campaign.id,
                metric=targets.INITIATIVES,
                value=value,
                now=T0,
            )
        s = InitiativeStatus
        tu = await add_member(session, maynt, "Lê Văn Tư")
        await add_initiatives(
            session, campaign.id, tu, [s.ACCEPTED, s.ACCEPTED, s.ACCEPTED, s.SUBMITTED, s.DRAFT]
        )
        await add_commitment(session, campaign.id, tu)
        hung = await add_member(session, muoi, "Phạm Văn Hùng")
        await add_initiatives(
            session, campaign.id, hung, [s.ACCEPTED, s.SUBMITTED, s.SUBMITTED, s.REJECTED]
        )
        cuc = await add_member(session, cva, "Võ Thị Cúc")
        await add_initiatives(session, campaign.id, cuc, [s.ACCEPTED, s.CHANGES_REQUESTED])
        return campaign.id


async def test_a_member_sees_their_units_count_against_its_target(
    bot: TelegramBot, campaign_with_initiatives: int
) -> None:
    lan = bot.user(LAN, "Lan")

    answer = await lan.send("/tiendo")

    assert [m.method for m in answer] == ["sendMessage"]
    assert answer[0].text == (
        "📊 Tiến độ sáng kiến – Phong trào thi đua yêu nước năm 2023\n"
        f"{MAYNT}\n"
        "Sáng kiến được công nhận: 3 / chỉ tiêu 4 (đạt 75%)\n"
        "Đang chờ duyệt: 1"
    )


async def test_an_officer_gets_the_units_below_worst_first_and_two_charts(
    bot: TelegramBot, campaign_with_initiatives: int
) -> None:
    minh = bot.user(MINH, "Minh")

    answer = await minh.send("/tiendo")

    assert [m.method for m in answer] == ["sendMessage", "sendPhoto", "sendPhoto"]
    text = answer[0].text
    assert text.splitlines()[:3] == [
        "📊 Tiến độ sáng kiến – Phong trào thi đua yêu nước năm 2023",
        f"{KCN}: 4 sáng kiến được công nhận / chỉ tiêu 10 (đạt 40%), 3 đang chờ duyệt.",
        "Các đơn vị trực thuộc, chậm nhất trước:",
    ]
    # Hùng's unit is at 1 of 6, Lan's at 3 of 4: Hùng's first.
    assert f"1. {MUOI}\n" in text
    assert f"2. {MAYNT}\n" in text
    assert (
        "   Đoàn viên: 2 · Đăng ký thi đua: 1\n"
        "   Sáng kiến: 3 công nhận, 1 chờ duyệt · Chỉ tiêu: 4 · đạt 75%"
    ) in text
    assert "   Sáng kiến: 1 công nhận, 2 chờ duyệt · Chỉ tiêu: 6 · đạt 17%" in text
    assert "⚠️" not in text

    for chart, name, size in (
        (answer[1], "tien-do-sang-kien.png", bars_size(2)),
        (answer[2], "xu-huong-sang-kien.png", trend_size()),
    ):
        assert chart.file_id == name
        assert chart.content is not None
        assert chart.content.startswith(PNG_SIGNATURE)
        with Image.open(io.BytesIO(chart.content)) as image:
            assert image.format == "PNG"
            assert image.size == size


async def test_the_province_officer_sees_upper_unions_and_the_target_shortfall(
    bot: TelegramBot, campaign_with_initiatives: int
) -> None:
    phuong = bot.user(PHUONG, "Phương")

    answer = await phuong.send("/progress")

    text = answer[0].text
    assert (
        "⚠️ Tổng chỉ tiêu của các đơn vị trực thuộc (10) thấp hơn chỉ tiêu của "
        "Liên đoàn Lao động tỉnh Ninh Thuận (30): còn thiếu 20 sáng kiến. "
        "Có 1 đơn vị chưa được giao chỉ tiêu."
    ) in text
    # The whole subtree counts: CD-GD's initiative is in the province's 5.
    assert "Liên đoàn Lao động tỉnh Ninh Thuận: 5 sáng kiến được công nhận / chỉ tiêu 30" in text
    assert text.index(f"1. {KCN}") < text.index(f"2. {GD}")
    assert "   Sáng kiến: 1 công nhận, 0 chờ duyệt · Chỉ tiêu: chưa giao · –" in text
    assert [m.method for m in answer[1:]] == ["sendPhoto", "sendPhoto"]


async def test_progress_can_be_looked_at_in_the_middle_of_setting_targets(
    bot: TelegramBot, campaign_with_initiatives: int
) -> None:
    minh = bot.user(MINH, "Minh")
    await minh.send("/chitieu")
    await minh.press(MAYNT)

    await minh.send("/tiendo")
    done = await minh.send("5")

    assert done[0].text == f"✅ Đã đổi chỉ tiêu sáng kiến của {MAYNT}: 4 → 5."
