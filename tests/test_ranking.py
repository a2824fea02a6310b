"""Emulation clusters: the units file's cluster column, and /bangxephang ranking a cluster."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import ranking
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.importers.units import ImportReport, import_units
from storage.models import (
    Campaign,
    Initiative,
    InitiativeStatus,
    Member,
    MemberStatus,
    Role,
    Target,
    Unit,
    UnitKind,
)
from tests.builders import T0, add_campaign, add_member, add_unit
from tests.telegram_harness import TelegramBot

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample-units.csv"
ENTERPRISES = "Khối doanh nghiệp"
PUBLIC = "Khối hành chính sự nghiệp"
UPPER = "Cụm thi đua công đoàn cấp trên cơ sở"
MINH, LAN, TAM, THU = 9001, 1001, 1002, 9003


async def run_import(sessions: SessionFactory, path: Path, clock: ManualClock) -> ImportReport:
    async with sessions() as session, session.begin():
        return await import_units(session, path, clock.now())


async def clusters(sessions: SessionFactory) -> dict[str, str | None]:
    async with sessions() as session:
        rows = await session.execute(select(Unit.code, Unit.cluster))
        return {code: cluster for code, cluster in rows.all()}


# --- the units file ---------------------------------------------------------------------------


async def test_the_sample_file_puts_units_in_clusters(
    sessions: SessionFactory, clock: ManualClock
) -> None:
    await run_import(sessions, SAMPLE, clock)

    found = await clusters(sessions)
    assert found["LDLD-NT"] is None
    assert {found[c] for c in ("CD-PRTC", "CD-KCN", "CD-GD")} == {UPPER}
    assert found["CDCS-MAYNT"] == found["CDCS-DIENLUC"] == ENTERPRISES
    assert found["CDCS-BVDK"] == found["CDCS-THPT-CVA"] == PUBLIC


async def test_a_file_without_the_column_keeps_clusters_and_an_empty_cell_clears_one(
    sessions: SessionFactory, clock: ManualClock, tmp_path: Path
) -> None:
    await run_import(sessions, SAMPLE, clock)
    old = tmp_path / "old.csv"
    old.write_text(
        "code,name,parent_code,kind,sector\n"
        "CDCS-MAYNT,Công đoàn cơ sở Công ty TNHH May Ninh Thuận,CD-KCN,grassroots,enterprise\n"
        "CDCS-MOI,Công đoàn cơ sở Công ty Mới,CD-KCN,grassroots,enterprise\n",
        encoding="utf-8",
    )

    report = await run_import(sessions, old, clock)

    assert report == ImportReport(created=1, updated=0, unchanged=1)
    found = await clusters(sessions)
    assert found["CDCS-MAYNT"] == ENTERPRISES
    assert found["CDCS-MOI"] is None

    moved = tmp_path / "moved.csv"
    # Typed on a phone with decomposed accents and stray blanks: stored clean (NFC).
    decomposed = unicodedata.normalize("NFD", "  Khối   doanh nghiệp KCN ")
    moved.write_text(
        "code,name,parent_code,kind,sector,cluster\n"
        "CDCS-MAYNT,Công đoàn cơ sở Công ty TNHH May Ninh Thuận,CD-KCN,grassroots,enterprise,"
        f"{decomposed}\n"
        "CDCS-GIAYTH,Công đoàn cơ sở Công ty TNHH Giày da Thành Hải,CD-KCN,grassroots,"
        "enterprise,\n",
        encoding="utf-8",
    )

    report = await run_import(sessions, moved, clock)

    assert report == ImportReport(created=0, updated=2, unchanged=0)
    found = await clusters(sessions)
    assert found["CDCS-MAYNT"] == "Khối doanh nghiệp KCN"
    assert found["CDCS-GIAYTH"] is None
    assert found["CDCS-DUOCNT"] == ENTERPRISES
    # The same file again changes nothing.
    assert await run_import(sessions, moved, clock) == ImportReport(0, 0, 2)


# --- ranking ----------------------------------------------------------------------------------


async def add_initiatives(
    session: AsyncSession, campaign: Campaign, author: Member, accepted: int, other: int = 0
) -> None:
    statuses = [InitiativeStatus.ACCEPTED] * accepted + [InitiativeStatus.SUBMITTED] * other
    for status in statuses:
        session.add(
            Initiative(
                campaign_id=campaign.id,
                author_id=author.id,
                unit_id=author.unit_id,
                title="Sáng kiến",
                title_folded="sang kien",
                status=status,
                submitted_at=T0,
                created_at=T0,
                updated_at=T0,
            )
        )


async def add_target(session: AsyncSession, campaign: Campaign, unit: Unit, value: int) -> None:
    session.add(
        Target(
            unit_id=unit.id,
            campaign_id=campaign.id,
            metric="initiatives",
            value=value,
            updated_at=T0,
        )
    )


@pytest.fixture
async def league(sessions: SessionFactory) -> dict[str, int]:
    """A province whose enterprise unions compete in one cluster:

    - An (Công ty An): 10 members, 2 accepted (one by a member of its sub-unit), target 4;
    - Bình: 5 members, 1 accepted, target 0 (no target to measure against);
    - Cường: 3 members, nothing accepted (3 waiting), target 2;
    - Dũng: no members yet, target 1.
    An and Bình tie per member (0,2), Cường and Dũng tie on their targets (0%). A school in
    another cluster, and a unit in no cluster at all.
    """
    async with sessions() as session, session.begin():
        province = await add_unit(
            session, "LDLD", "Liên đoàn Lao động tỉnh", kind=UnitKind.PROVINCE, sector=None
        )
        kcn = await add_unit(
            session, "CD-KCN", "Công đoàn KCN", parent=province, kind=UnitKind.UPPER, sector=None
        )
        gd = await add_unit(
            session, "CD-GD", "Công đoàn Giáo dục", parent=province, kind=UnitKind.UPPER
        )
        an = await add_unit(session, "AN", "Công ty An", parent=kcn, kind=UnitKind.UPPER)
        an_branch = await add_unit(session, "AN-1", "Phân xưởng An 1", parent=an)
        binh = await add_unit(session, "BINH", "Công ty Bình", parent=kcn)
        cuong = await add_unit(session, "CUONG", "Công ty Cường", parent=kcn)
        dung = await add_unit(session, "DUNG", "Công ty Dũng", parent=province)
        school = await add_unit(session, "TRUONG", "Trường Tiểu học", parent=gd)
        loner = await add_unit(session, "LE", "Công ty Lẻ", parent=gd)
        for unit in (an, binh, cuong, dung):
            unit.cluster = ENTERPRISES
        school.cluster = PUBLIC
        kcn.cluster = gd.cluster = UPPER
        campaign = await add_campaign(session, province)
        minh = await add_member(session, kcn, "Trần Văn Minh", role=Role.OFFICER, telegram_id=MINH)
        thu = await add_member(session, gd, "Trần Thị Thu", role=Role.OFFICER, telegram_id=THU)
        lan = await add_member(session, binh, "Nguyễn Thị Lan", telegram_id=LAN)
        await add_member(session, loner, "Lê Văn Tâm", telegram_id=TAM)
        an_members = [await add_member(session, an, f"Đoàn viên An {i}") for i in range(9)]
        an_members.append(await add_member(session, an_branch, "Đoàn viên An 1"))
        binh_members = [lan] + [await add_member(session, binh, f"Bình {i}") for i in range(4)]
        cuong_members = [await add_member(session, cuong, f"Cường {i}") for i in range(3)]
        # Neither a pending nor a rejected member counts.
        await add_member(session, dung, "Chờ duyệt", status=MemberStatus.PENDING)
        await add_member(session, cuong, "Bị từ chối", status=MemberStatus.REJECTED)
        await add_initiatives(session, campaign, an_members[0], 1)
        await add_initiatives(session, campaign, an_members[-1], 1)
        await add_initiatives(session, campaign, binh_members[1], 1)
        await add_initiatives(session, campaign, cuong_members[0], 0, other=3)
        await add_initiatives(session, campaign, minh, 4)  # CD-KCN's own: not in any entry
        await add_initiatives(session, campaign, thu, 1)
        for unit, value in ((an, 4), (binh, 0), (cuong, 2), (dung, 1)):
            await add_target(session, campaign, unit, value)
        await session.flush()
        return {u.code: u.id for u in (province, kcn, gd, an, binh, cuong, dung, school, loner)} | {
            "campaign": campaign.id
        }


async def test_units_are_ranked_per_member_and_by_target_with_ties_and_empty_units(
    sessions: SessionFactory, league: dict[str, int]
) -> None:
    async with sessions() as session:
        province = await session.get(Unit, league["LDLD"])
        assert province is not None
        units = await ranking.cluster_units(session, province, ENTERPRISES)
        found = await ranking.entries(session, units, league["campaign"])

    figures = {e.unit.code: (e.members, e.accepted, e.target) for e in found}
    assert figures == {
        "AN": (10, 2, 4),
        "BINH": (5, 1, 0),
        "CUONG": (3, 0, 2),
        "DUNG": (0, 0, 1),
    }
    per_member = ranking.by_member(found)
    assert [(r.rank, r.entry.unit.code) for r in per_member.ranked] == [
        (1, "AN"),  # 0.2, with more accepted than Bình
        (1, "BINH"),  # 0.2
        (3, "CUONG"),  # 0
    ]
    assert [e.unit.code for e in per_member.unranked] == ["DUNG"]
    of_target = ranking.by_target(found)
    assert [(r.rank, r.entry.unit.code) for r in of_target.ranked] == [
        (1, "AN"),  # 50%
        (2, "CUONG"),  # 0%
        (2, "DUNG"),  # 0%
    ]
    assert [e.unit.code for e in of_target.unranked] == ["BINH"]


async def test_a_member_sees_their_cluster_ranked(bot: TelegramBot, league: dict[str, int]) -> None:
    lan = bot.user(LAN, "Lan")

    shown = await lan.send("/bangxephang")

    assert shown[-1].buttons == []
    assert shown[-1].text == "\n".join(
        [
            "🏆 Bảng xếp hạng Khối doanh nghiệp",
            "Phong trào thi đua yêu nước năm 2023 – 4 đơn vị",
            "",
            "💡 Sáng kiến được công nhận trên mỗi đoàn viên:",
            "1. Công ty An: 0,20 (2 sáng kiến / 10 đoàn viên)",
            "1. Công ty Bình 👈: 0,20 (1 sáng kiến / 5 đoàn viên)",
            "3. Công ty Cường: 0,00 (0 sáng kiến / 3 đoàn viên)",
            "",
            "Chưa có đoàn viên trên hệ thống, chưa xếp hạng: Công ty Dũng",
            "",
            "🎯 Tỷ lệ hoàn thành chỉ tiêu sáng kiến:",
            "1. Công ty An: 50% (2/4 sáng kiến)",
            "2. Công ty Cường: 0% (0/2 sáng kiến)",
            "2. Công ty Dũng: 0% (0/1 sáng kiến)",
            "",
            "Chưa được giao chỉ tiêu, chưa xếp hạng: Công ty Bình",
            "",
            "Các đơn vị bằng nhau có cùng thứ hạng.",
        ]
    )


async def test_a_member_outside_any_cluster_is_told_how_clusters_are_made(
    bot: TelegramBot, league: dict[str, int]
) -> None:
    tam = bot.user(TAM, "Tâm")

    shown = await tam.send("/ranking")

    # Công ty Lẻ has no cluster, but the union above it has: that is the one shown.
    assert shown[-1].text.startswith(f"🏆 Bảng xếp hạng {UPPER}")


async def test_an_officer_picks_a_cluster_of_their_subtree(
    bot: TelegramBot, sessions: SessionFactory, league: dict[str, int]
) -> None:
    minh = bot.user(MINH, "Minh")

    asked = await minh.send("/bangxephang")

    assert asked[-1].text == "🏆 Xem bảng xếp hạng của khối, cụm thi đua nào?"
    # Their own unit's cluster first, then those with units under them; not the school's.
    assert asked[-1].labels == [UPPER, ENTERPRISES]
    shown = await minh.press(ENTERPRISES)
    assert shown[-1].text.startswith("🏆 Bảng xếp hạng Khối doanh nghiệp")
    assert "1. Công ty An: 0,20" in shown[-1].text

    upper = await minh.send("/bangxephang")
    shown = await minh.press(UPPER, upper[-1])
    lines = shown[-1].text.splitlines()
    # Everything under each union counts: CD-KCN 10+5+3 members and its officer, 2+1+4 accepted.
    assert "1. Công đoàn Giáo dục: 0,50 (1 sáng kiến / 2 đoàn viên)" in lines
    assert "2. Công đoàn KCN 👈: 0,37 (7 sáng kiến / 19 đoàn viên)" in lines
    assert lines[-1] == "Chưa được giao chỉ tiêu, chưa xếp hạng: Công đoàn Giáo dục, Công đoàn KCN"


async def test_a_cluster_that_left_the_officers_subtree_is_refused(
    bot: TelegramBot, sessions: SessionFactory, league: dict[str, int]
) -> None:
    minh = bot.user(MINH, "Minh")
    asked = await minh.send("/bangxephang")
    async with sessions() as session, session.begin():
        # The enterprise cluster now holds only a unit outside Minh's branch.
        await session.execute(
            update(Unit).where(Unit.code.in_(["AN", "BINH", "CUONG"])).values(cluster="Khối khác")
        )

    refused = await minh.press(ENTERPRISES, asked[-1])

    assert refused[-1].text.startswith("Khối, cụm thi đua này không còn đơn vị nào")


async def test_a_forged_cluster_index_is_asked_again(
    bot: TelegramBot, league: dict[str, int]
) -> None:
    thu = bot.user(THU, "Thu")
    asked = await thu.send("/bangxephang")
    assert asked[-1].labels == [UPPER, PUBLIC]
    data = asked[-1].callback_data(PUBLIC)
    forged = data[: data.rindex(":") + 1] + "k7"

    again = await thu.press_data(forged, asked[-1].message_id)

    assert again[-1].text.startswith("Vui lòng chọn khối, cụm thi đua")
    assert again[-1].labels == [UPPER, PUBLIC]


async def test_without_any_cluster_the_officer_is_told(
    bot: TelegramBot, sessions: SessionFactory, league: dict[str, int]
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(update(Unit).values(cluster=None))
    minh = bot.user(MINH, "Minh")
    lan = bot.user(LAN, "Lan")

    told = await minh.send("/bangxephang")
    assert told[-1].text.startswith("Chưa có khối, cụm thi đua nào trong Công đoàn KCN.")
    told = await lan.send("/bangxephang")
    assert told[-1].text.startswith("Công ty Bình chưa thuộc khối, cụm thi đua nào.")


def test_ties_compare_exactly() -> None:
    unit = Unit(code="X", name="X")
    # 1/3 and 2/6 are the same ratio and share a rank; B comes first with more accepted.
    entries = [
        ranking.Entry(Unit(code="A", name="A"), 3, 1, None),
        ranking.Entry(Unit(code="B", name="B"), 6, 2, None),
        ranking.Entry(unit, 7, 2, None),
    ]
    ranked = ranking.by_member(entries).ranked
    assert [(r.rank, r.entry.unit.code) for r in ranked] == [(1, "B"), (1, "A"), (3, "X")]
