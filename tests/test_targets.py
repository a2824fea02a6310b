"""Targets (chỉ tiêu): the number parser, the file importer and /chitieu on Telegram."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import select

from handlers.i18n import Catalogue
from storage import targets
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.importers.targets import (
    PROBLEM_KINDS,
    TargetImportError,
    TargetImportReport,
    import_targets,
)
from storage.importers.units import UNREADABLE_REASONS
from storage.models import Member, Role, Target, Unit
from tests.builders import T0, add_campaign, add_member, add_unit
from tests.telegram_harness import TelegramBot

HEADER = "unit_code,campaign,metric,value"
MINH, LAN, HOA, PHUONG = 9001, 1001, 9002, 9000
KCN = "Công đoàn các Khu công nghiệp tỉnh Ninh Thuận"
MAYNT = "Công đoàn cơ sở Công ty TNHH May Ninh Thuận"
MUOI = "Công đoàn cơ sở Công ty Cổ phần Muối Ninh Thuận"
CVA = "Công đoàn cơ sở Trường THPT Chu Văn An"
OUTSIDE = "Bạn chỉ thao tác được với đơn vị của mình và các đơn vị cấp dưới."


@pytest.fixture
async def campaign(sessions: SessionFactory, org: dict[str, int]) -> int:
    """The 2023 campaign of the province; Hoa is an officer of CDCS-MAYNT, Phương of it all."""
    async with sessions() as session, session.begin():
        root = await session.get(Unit, org["LDLD-NT"])
        maynt = await session.get(Unit, org["CDCS-MAYNT"])
        assert root is not None
        assert maynt is not None
        found = await add_campaign(session, root)
        await add_member(session, maynt, "Đỗ Thị Hoa", role=Role.OFFICER, telegram_id=HOA)
        await add_member(session, root, "Hồ Thị Phương", role=Role.OFFICER, telegram_id=PHUONG)
        return found.id


def target_csv(folder: Path, *rows: str, header: str = HEADER, name: str = "targets.csv") -> Path:
    path = folder / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


async def run_import(
    sessions: SessionFactory, path: Path, clock: ManualClock
) -> TargetImportReport:
    async with sessions() as session, session.begin():
        return await import_targets(session, path, clock.now())


async def all_targets(sessions: SessionFactory) -> dict[str, int]:
    """Every target, as {unit code: value}."""
    async with sessions() as session:
        rows = await session.execute(
            select(Unit.code, Target.value).join(Target, Target.unit_id == Unit.id)
        )
        return {code: int(value) for code, value in rows.all()}


async def set_target(sessions: SessionFactory, unit_id: int, campaign_id: int, value: int) -> None:
    async with sessions() as session, session.begin():
        await targets.put(
            session,
            unit_id=unit_id,
            campaign_id=campaign_id,
            metric=targets.INITIATIVES,
            value=value,
            now=T0,
        )


# --- reading numbers ----------------------------------------------------------------------------

NUMBERS = {
    "25": 25,
    " 7 ": 7,
    "0": 0,
    "1000": 1000,
    "1.000": 1000,
    "1,000": 1000,
    "1 000": 1000,
    "12.500": 12500,
    "1.000.000": 1_000_000,
    "1,000,000": 1_000_000,
    "1,5": None,  # a decimal, not a thousand
    "1.5": None,
    "12.50": None,
    "1.000,000": None,  # mixed separators
    "-5": None,
    "mười": None,
    "": None,
    "25%": None,
    "1.0000": None,
}


@pytest.mark.parametrize("text", NUMBERS)
def test_counts_are_read_the_vietnamese_and_the_english_way(text: str) -> None:
    assert targets.parse_count(text) == NUMBERS[text]


# --- importing ----------------------------------------------------------------------------------


async def test_a_file_sets_targets_and_reimporting_it_changes_nothing(
    sessions: SessionFactory, campaign: int, clock: ManualClock, tmp_path: Path
) -> None:
    path = target_csv(
        tmp_path,
        "LDLD-NT,NT-2023,initiatives,1.000",
        "cd-kcn,nt-2023,sáng kiến,600",
        "CD-GD,NT-2023,Sang kien,400",
        '"CDCS-MAYNT",NT-2023,initiatives,"1,000"',
    )

    report = await run_import(sessions, path, clock)

    assert (report.created, report.updated, report.unchanged) == (4, 0, 0)
    assert await all_targets(sessions) == {
        "LDLD-NT": 1000,
        "CD-KCN": 600,
        "CD-GD": 400,
        "CDCS-MAYNT": 1000,
    }
    # CDCS-MAYNT alone is above CD-KCN's 600; CD-GD's CĐCS have nothing yet.
    assert [(n.unit_code, n.campaign_code, n.shortfall) for n in report.shortfalls] == [
        ("CD-GD", "NT-2023", targets.Shortfall(400, 0, 1))
    ]

    clock.advance(timedelta(days=1))
    again = await run_import(sessions, path, clock)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)


async def test_a_file_updates_targets_and_reports_parents_left_short(
    sessions: SessionFactory, campaign: int, clock: ManualClock, tmp_path: Path
) -> None:
    first = target_csv(
        tmp_path, "LDLD-NT,NT-2023,initiatives,1000", "CD-KCN,NT-2023,initiatives,600"
    )
    await run_import(sessions, first, clock)
    second = target_csv(
        tmp_path,
        "CD-KCN,NT-2023,initiatives,700",
        "CDCS-MAYNT,NT-2023,initiatives,300",
        name="second.csv",
    )

    report = await run_import(sessions, second, clock)

    assert (report.created, report.updated, report.unchanged) == (1, 1, 0)
    assert await all_targets(sessions) == {"LDLD-NT": 1000, "CD-KCN": 700, "CDCS-MAYNT": 300}
    short = {note.unit_code: note.shortfall for note in report.shortfalls}
    # The province (parent of CD-KCN): 700 given of 1000, CD-GD without a target.
    assert short["LDLD-NT"] == targets.Shortfall(1000, 700, 1)
    # CD-KCN: 300 given of 700 to its two CĐCS, CDCS-MUOI without one.
    assert short["CD-KCN"] == targets.Shortfall(700, 300, 1)
    assert short["CD-KCN"].missing == 400


async def test_an_xlsx_file_imports_with_numbers_as_spreadsheets_store_them(
    sessions: SessionFactory, campaign: int, clock: ManualClock, tmp_path: Path
) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Value", "Metric", "Unit_Code", "Campaign", "note"])
    sheet.append([1500.0, "initiatives", "LDLD-NT", "NT-2023", "cả tỉnh"])
    sheet.append([None, None, None, None, None])
    sheet.append([25, "sáng kiến", "CDCS-CVA", "NT-2023", None])
    sheet.append(["1.200", "initiatives", "CD-GD", "NT-2023", None])
    path = tmp_path / "targets.xlsx"
    workbook.save(path)

    report = await run_import(sessions, path, clock)

    assert report.created == 3
    assert await all_targets(sessions) == {"LDLD-NT": 1500, "CDCS-CVA": 25, "CD-GD": 1200}


BAD_CASES: dict[str, tuple[list[str], list[tuple[int, str, dict[str, str]]]]] = {
    "unknown unit": (
        ["NOPE,NT-2023,initiatives,5"],
        [(2, "unknown_unit", {"code": "NOPE"})],
    ),
    "unknown campaign": (
        ["CD-KCN,NT-2099,initiatives,5"],
        [(2, "unknown_campaign", {"code": "NT-2099"})],
    ),
    "bad metric": (
        ["CD-KCN,NT-2023,đoàn viên,5"],
        [(2, "bad_metric", {"value": "đoàn viên"})],
    ),
    "bad values": (
        [
            'CD-KCN,NT-2023,initiatives,"1,5"',
            "CD-GD,NT-2023,initiatives,-3",
            "CDCS-CVA,NT-2023,initiatives,",
        ],
        [
            (2, "bad_value", {"value": "1,5"}),
            (3, "bad_value", {"value": "-3"}),
            (4, "bad_value", {"value": ""}),
        ],
    ),
    "too large": (
        ["CD-KCN,NT-2023,initiatives,20.000.000"],
        [(2, "too_large", {"value": "20.000.000", "maximum": "10.000.000"})],
    ),
    "duplicate": (
        [
            "CD-KCN,NT-2023,initiatives,5",
            "CD-GD,NT-2023,initiatives,5",
            "cd-kcn,NT-2023,sáng kiến,7",
        ],
        [(4, "duplicate", {"code": "CD-KCN", "campaign": "NT-2023", "first_line": "2"})],
    ),
    "several problems on several lines": (
        [
            "CD-KCN,NT-2023,initiatives,5",
            "NOPE,NT-2099,initiatives,x",
            "CD-GD,NT-2023,initiatives,5",
        ],
        [
            (3, "unknown_unit", {"code": "NOPE"}),
            (3, "unknown_campaign", {"code": "NT-2099"}),
            (3, "bad_value", {"value": "x"}),
        ],
    ),
}


@pytest.mark.parametrize("case", BAD_CASES)
async def test_a_file_with_problems_is_rejected_whole(
    sessions: SessionFactory,
    org: dict[str, int],
    campaign: int,
    clock: ManualClock,
    tmp_path: Path,
    case: str,
) -> None:
    await set_target(sessions, org["LDLD-NT"], campaign, 900)
    before = await all_targets(sessions)
    lines, expected = BAD_CASES[case]
    # A good row too: it is not imported either.
    path = target_csv(tmp_path, *lines, "LDLD-NT,NT-2023,initiatives,1000")

    with pytest.raises(TargetImportError) as caught:
        await run_import(sessions, path, clock)

    found = [(p.line, p.kind, p.fields) for p in caught.value.problems]
    assert sorted(found, key=lambda p: (p[0], p[1])) == sorted(expected, key=lambda p: (p[0], p[1]))
    assert await all_targets(sessions) == before


async def test_a_unit_outside_the_campaign_is_refused(
    sessions: SessionFactory, campaign: int, clock: ManualClock, tmp_path: Path
) -> None:
    async with sessions() as session, session.begin():
        await add_unit(session, "LDLD-KH", "Liên đoàn Lao động tỉnh Khánh Hòa")
    path = target_csv(tmp_path, "LDLD-KH,NT-2023,initiatives,50")

    with pytest.raises(TargetImportError) as caught:
        await run_import(sessions, path, clock)

    assert [(p.line, p.kind, p.fields) for p in caught.value.problems] == [
        (2, "outside_campaign", {"code": "LDLD-KH", "campaign": "NT-2023"})
    ]


async def test_unreadable_files_and_headers_are_explained(
    sessions: SessionFactory, campaign: int, clock: ManualClock, tmp_path: Path
) -> None:
    cases = {
        target_csv(tmp_path, "CD-KCN,NT-2023,5", header="unit_code,campaign,value"): [
            (1, "missing_column", {"column": "metric"})
        ],
        target_csv(tmp_path, header=HEADER, name="empty.csv"): [(1, "empty_file", {})],
        tmp_path / "targets.txt": [(1, "unreadable_file", {"reason": "unsupported_type"})],
    }
    (tmp_path / "targets.txt").write_text("x", encoding="utf-8")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(f"{HEADER}\nCD-KCN,NT-2023,sáng,5\n".encode("latin-1"))
    cases[latin] = [(2, "unreadable_file", {"reason": "not_utf8"})]
    for path, expected in cases.items():
        with pytest.raises(TargetImportError) as caught:
            await run_import(sessions, path, clock)
        assert [(p.line, p.kind, p.fields) for p in caught.value.problems] == expected, path


def test_every_problem_has_a_text_with_its_fields() -> None:
    texts = Catalogue.load()
    fields = {
        "missing_column": {"column": "metric"},
        "empty_file": {},
        "unknown_unit": {"code": "X"},
        "unknown_campaign": {"code": "X"},
        "outside_campaign": {"code": "X", "campaign": "Y"},
        "bad_metric": {"value": "x"},
        "bad_value": {"value": "x"},
        "too_large": {"value": "x", "maximum": "10"},
        "duplicate": {"code": "X", "campaign": "Y", "first_line": "2"},
        "unreadable_file": {"reason": "x"},
    }
    assert set(fields) == set(PROBLEM_KINDS)
    for kind, values in fields.items():
        text = texts(f"targets.import.{kind}", line=3, **values)
        assert text.startswith("Dòng 3:")
    for reason in UNREADABLE_REASONS:
        assert texts.has(f"import.reason.{reason}")


# --- shortfalls ---------------------------------------------------------------------------------


async def test_shortfall_counts_children_without_a_target_as_zero(
    sessions: SessionFactory, org: dict[str, int], campaign: int
) -> None:
    await set_target(sessions, org["CD-KCN"], campaign, 50)
    await set_target(sessions, org["CDCS-MAYNT"], campaign, 20)
    async with sessions() as session:
        kcn = await session.get(Unit, org["CD-KCN"])
        province = await session.get(Unit, org["LDLD-NT"])
        assert kcn is not None
        assert province is not None
        assert await targets.shortfall(
            session, kcn, campaign, targets.INITIATIVES
        ) == targets.Shortfall(50, 20, 1)
        # No target of its own: nothing to fall short of.
        assert await targets.shortfall(session, province, campaign, targets.INITIATIVES) is None
    await set_target(sessions, org["CDCS-MUOI"], campaign, 30)
    async with sessions() as session:
        kcn = await session.get(Unit, org["CD-KCN"])
        assert kcn is not None
        assert await targets.shortfall(session, kcn, campaign, targets.INITIATIVES) is None


# --- /chitieu on Telegram -----------------------------------------------------------------------


async def test_an_officer_sets_the_targets_of_the_units_below_and_is_warned_when_short(
    bot: TelegramBot, sessions: SessionFactory, org: dict[str, int], campaign: int
) -> None:
    await set_target(sessions, org["CD-KCN"], campaign, 50)
    minh = bot.user(MINH, "Minh")

    overview = await minh.send("/chitieu")

    text = overview[-1].text
    assert f"{KCN}: chỉ tiêu 50 sáng kiến." in text
    assert "Đã giao cho 0/2 đơn vị trực thuộc, tổng cộng 0 sáng kiến." in text
    assert "⚠️ Tổng chỉ tiêu của các đơn vị trực thuộc (0) thấp hơn chỉ tiêu" in text
    assert "Có 2 đơn vị chưa được giao chỉ tiêu." in text
    assert overview[-1].labels == [f"{MUOI}: chưa giao", f"{MAYNT}: chưa giao"]

    asked = await minh.press(MAYNT)
    assert f"Chỉ tiêu sáng kiến của {MAYNT} (hiện chưa có)." in asked[-1].text

    # Words and decimals are refused with the unit kept: typing again is enough.
    wrong = await minh.send("hai mươi")
    assert wrong[-1].text.startswith('"hai mươi" không phải là một số nguyên.')
    wrong = await minh.send("2,5")
    assert "không phải là một số nguyên" in wrong[-1].text
    assert MAYNT in wrong[-1].text
    too_many = await minh.send("20.000.000")
    assert "Chỉ tiêu tối đa là 10.000.000 sáng kiến." in too_many[-1].text

    done = await minh.send("20 sáng kiến")
    assert done[0].text == f"✅ Đã giao chỉ tiêu 20 sáng kiến cho {MAYNT}."
    assert "Đã giao cho 1/2 đơn vị trực thuộc, tổng cộng 20 sáng kiến." in done[-1].text
    assert "thấp hơn chỉ tiêu của" in done[-1].text
    assert "còn thiếu 30 sáng kiến" in done[-1].text
    assert done[-1].labels == [f"{MUOI}: chưa giao", f"{MAYNT}: 20"]

    # A second unit, found by typing part of its name; 1.000 is a thousand.
    found = await minh.send("muoi")
    assert found[-1].labels == [f"{MUOI}: chưa giao"]
    await minh.press(MUOI)
    done = await minh.send("1.000")
    assert done[0].text == f"✅ Đã giao chỉ tiêu 1.000 sáng kiến cho {MUOI}."
    assert "⚠️" not in done[-1].text

    # Changing one says what it was.
    await minh.press(MAYNT)
    changed = await minh.send("25")
    assert changed[0].text == f"✅ Đã đổi chỉ tiêu sáng kiến của {MAYNT}: 20 → 25."

    async with sessions() as session:
        rows = (await session.execute(select(Target.unit_id, Target.value, Target.set_by_id))).all()
        minh_id = await session.scalar(select(Member.id).where(Member.full_name == "Trần Văn Minh"))
    assert sorted((unit_id, value, by) for unit_id, value, by in rows) == sorted(
        [
            (org["CD-KCN"], 50, None),
            (org["CDCS-MAYNT"], 25, minh_id),
            (org["CDCS-MUOI"], 1000, minh_id),
        ]
    )


async def test_a_forged_choice_cannot_set_a_target_outside_the_units_below(
    bot: TelegramBot, sessions: SessionFactory, org: dict[str, int], campaign: int
) -> None:
    minh = bot.user(MINH, "Minh")
    overview = await minh.send("/chitieu")
    data = overview[-1].callback_data(MAYNT)
    prefix = data.rsplit(":", 1)[0]

    # Sideways (CD-GD's CĐCS), above (the province) and his own unit: all refused.
    for unit in ("CDCS-CVA", "LDLD-NT", "CD-KCN"):
        refused = await minh.press_data(f"{prefix}:u{org[unit]}")
        assert refused[-1].text == OUTSIDE, unit
    # Still choosing: a real choice works afterwards.
    asked = await minh.press_data(data)
    assert MAYNT in asked[-1].text
    await minh.send("10")
    assert await all_targets(sessions) == {"CDCS-MAYNT": 10}


async def test_members_and_officers_without_units_below_cannot_set_targets(
    bot: TelegramBot, sessions: SessionFactory, org: dict[str, int], campaign: int
) -> None:
    lan = bot.user(LAN, "Lan")
    answer = await lan.send("/targets")
    assert answer[-1].text == "Chức năng này chỉ dành cho cán bộ công đoàn."

    hoa = bot.user(HOA, "Hoa")
    answer = await hoa.send("/chitieu")
    assert answer[-1].text.startswith(f"{MAYNT} không có đơn vị trực thuộc")

    # The province officer sets those of the upper unions, not of the CĐCS under them.
    phuong = bot.user(PHUONG, "Phương")
    overview = await phuong.send("/chitieu")
    assert overview[-1].labels == [
        f"{KCN}: chưa giao",
        "Công đoàn ngành Giáo dục tỉnh Ninh Thuận: chưa giao",
    ]
    prefix = overview[-1].callback_data(KCN).rsplit(":", 1)[0]
    refused = await phuong.press_data(f"{prefix}:u{org['CDCS-MAYNT']}")
    assert refused[-1].text == OUTSIDE
    assert await all_targets(sessions) == {}


async def test_many_units_below_are_shown_a_page_at_a_time(
    bot: TelegramBot, sessions: SessionFactory, org: dict[str, int], campaign: int
) -> None:
    async with sessions() as session, session.begin():
        kcn = await session.get(Unit, org["CD-KCN"])
        assert kcn is not None
        for number in range(11):
            await add_unit(session, f"CDCS-X{number:02}", f"CĐCS Xí nghiệp {number:02}", parent=kcn)
    minh = bot.user(MINH, "Minh")

    first = await minh.send("/chitieu")

    assert "Đã giao cho 0/13 đơn vị trực thuộc" in first[-1].text
    assert len(first[-1].labels) == 11
    assert first[-1].labels[-1] == "Trang sau ▶"
    page_one = first[-1].labels[:-1]  # the press takes the buttons off the message
    second = await minh.press("Trang sau")
    assert second[-1].labels[-1] == "◀ Trang trước"
    # Every unit once, over the two pages (the order of names is the database's collation).
    units = page_one + second[-1].labels[:-1]
    assert sorted(units) == sorted(
        [f"{MAYNT}: chưa giao", f"{MUOI}: chưa giao"]
        + [f"CĐCS Xí nghiệp {number:02}: chưa giao" for number in range(11)]
    )
    asked = await minh.press(": chưa giao")
    assert "Gõ số sáng kiến đơn vị cần đạt" in asked[-1].text
    back = await minh.press("Chọn đơn vị khác")
    assert back[-1].labels[-1] == "Trang sau ▶"
