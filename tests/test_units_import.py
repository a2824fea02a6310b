"""Importing the organisation tree from CSV and XLSX files, on SQLite and PostgreSQL."""

from __future__ import annotations

import unicodedata
from datetime import timedelta
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import func, select

from handlers.i18n import Catalogue
from storage import units
from storage.clock import ManualClock
from storage.engine import SessionFactory
from storage.importers.units import (
    PROBLEM_KINDS,
    UNREADABLE_REASONS,
    ImportProblem,
    ImportReport,
    UnitImportError,
    import_units,
    read_unit_rows,
)
from storage.models import Sector, Unit, UnitKind

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample-units.csv"
HEADER = "code,name,parent_code,kind,sector"
SAMPLE_SIZE = 17

Snapshot = list[tuple[str, str, str]]


# --- helpers ----------------------------------------------------------------------------------


def unit_csv(folder: Path, *rows: str, header: str = HEADER, name: str = "units.csv") -> Path:
    """Write a CSV unit file: a header line, then one line per row."""
    path = folder / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


async def run_import(sessions: SessionFactory, path: Path, clock: ManualClock) -> ImportReport:
    async with sessions() as session, session.begin():
        return await import_units(session, path, clock.now())


async def load_sample(sessions: SessionFactory, clock: ManualClock) -> ImportReport:
    return await run_import(sessions, SAMPLE, clock)


async def all_units(sessions: SessionFactory) -> dict[str, Unit]:
    async with sessions() as session:
        return {u.code: u for u in (await session.scalars(select(Unit))).all()}


async def snapshot(sessions: SessionFactory) -> Snapshot:
    async with sessions() as session:
        rows = await session.execute(select(Unit.code, Unit.name, Unit.path).order_by(Unit.code))
        return [(code, name, path) for code, name, path in rows]


async def unit_count(sessions: SessionFactory) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Unit)) or 0)


async def rejected(sessions: SessionFactory, path: Path, clock: ManualClock) -> list[ImportProblem]:
    """Import a bad file; return its problems after checking that nothing changed."""
    before = await snapshot(sessions)
    with pytest.raises(UnitImportError) as caught:
        await run_import(sessions, path, clock)
    assert await snapshot(sessions) == before
    return caught.value.problems


def assert_tree_consistent(found: dict[str, Unit]) -> None:
    """Every unit's path is its parent's path plus its own id, and depth matches."""
    by_id = {u.id: u for u in found.values()}
    for unit in found.values():
        parent_path = by_id[unit.parent_id].path if unit.parent_id is not None else "/"
        assert unit.path == f"{parent_path}{unit.id}/", unit.code
        assert unit.depth == unit.path.count("/") - 2, unit.code


# --- importing good files ---------------------------------------------------------------------


async def test_sample_file_builds_the_province_tree(
    sessions: SessionFactory, clock: ManualClock
) -> None:
    report = await load_sample(sessions, clock)

    assert report == ImportReport(created=SAMPLE_SIZE, updated=0, unchanged=0)
    found = await all_units(sessions)
    assert len(found) == SAMPLE_SIZE
    root, kcn, garment = found["LDLD-NT"], found["CD-KCN"], found["CDCS-MAYNT"]
    assert root.path == f"/{root.id}/"
    assert (root.depth, root.parent_id, root.kind) == (0, None, UnitKind.PROVINCE)
    assert kcn.path.startswith(root.path)
    assert (kcn.depth, kcn.parent_id, kcn.kind) == (1, root.id, UnitKind.UPPER)
    assert garment.path.startswith(kcn.path)
    assert len(garment.path.strip("/").split("/")) == 3
    assert (garment.depth, garment.parent_id) == (2, kcn.id)
    assert (garment.kind, garment.sector) == (UnitKind.GRASSROOTS, Sector.ENTERPRISE)
    assert found["CDCS-THPT-CVA"].sector is Sector.ADMINISTRATIVE
    assert garment.created_at == garment.updated_at == clock.now()
    assert_tree_consistent(found)


async def test_imported_units_are_found_by_search_without_accents(
    sessions: SessionFactory, clock: ManualClock
) -> None:
    await load_sample(sessions, clock)

    async with sessions() as session:
        found = await units.search(session, "cong ty may")
        root = await units.get_by_code(session, "ldld-nt")
        assert root is not None
        everything = await units.subtree(session, root)

    assert [u.code for u in found] == ["CDCS-MAYNT"]
    assert len(everything) == SAMPLE_SIZE


async def test_reimporting_the_same_file_changes_nothing(
    sessions: SessionFactory, clock: ManualClock
) -> None:
    await load_sample(sessions, clock)
    first = await all_units(sessions)
    clock.advance(timedelta(days=1))

    report = await load_sample(sessions, clock)

    assert report == ImportReport(created=0, updated=0, unchanged=SAMPLE_SIZE)
    again = await all_units(sessions)
    assert await unit_count(sessions) == SAMPLE_SIZE
    assert {c: (u.id, u.path, u.updated_at) for c, u in again.items()} == {
        c: (u.id, u.path, u.updated_at) for c, u in first.items()
    }


async def test_renaming_a_unit_updates_it_in_place(
    sessions: SessionFactory, clock: ManualClock, tmp_path: Path
) -> None:
    await load_sample(sessions, clock)
    before = (await all_units(sessions))["CDCS-MAYNT"]
    clock.advance(timedelta(hours=2))
    # Typed on a phone keyboard that sends decomposed accents, with stray blanks.
    new_name = unicodedata.normalize("NFD", "  Công đoàn cơ sở  Công ty TNHH May Phước Nam ")
    path = unit_csv(tmp_path, f"cdcs-maynt,{new_name},CD-KCN,grassroots,enterprise")

    report = await run_import(sessions, path, clock)

    assert report == ImportReport(created=0, updated=1, unchanged=0)
    after = (await all_units(sessions))["CDCS-MAYNT"]
    assert after.id == before.id
    assert after.name == "Công đoàn cơ sở Công ty TNHH May Phước Nam"
    assert unicodedata.is_normalized("NFC", after.name)
    assert after.name_folded == "cong doan co so cong ty tnhh may phuoc nam"
    assert after.path == before.path
    assert (after.created_at, after.updated_at) == (before.created_at, clock.now())
    assert await unit_count(sessions) == SAMPLE_SIZE


async def test_new_unit_may_hang_under_a_unit_already_in_the_database(
    sessions: SessionFactory, clock: ManualClock, tmp_path: Path
) -> None:
    await load_sample(sessions, clock)
    path = unit_csv(
        tmp_path,
        "CDCS-THPT-PHANCHUTRINH,Công đoàn cơ sở Trường THPT Phan Chu Trinh,cd-gd,co so,hcsn",
    )

    report = await run_import(sessions, path, clock)

    assert report == ImportReport(created=1, updated=0, unchanged=0)
    found = await all_units(sessions)
    school, education = found["CDCS-THPT-PHANCHUTRINH"], found["CD-GD"]
    assert school.path == f"{education.path}{school.id}/"
    assert school.depth == 2
    assert_tree_consistent(found)


async def test_vietnamese_spellings_of_kind_and_sector_are_understood(
    sessions: SessionFactory, clock: ManualClock, tmp_path: Path
) -> None:
    path = unit_csv(
        tmp_path,
        "T,Liên đoàn Lao động tỉnh,,LĐLĐ tỉnh,",
        "U1,Công đoàn ngành Y tế,T,Cấp trên trực tiếp cơ sở,",
        "U2,Công đoàn Viên chức,T,cap tren,",
        "G1,CĐCS Bệnh viện,U1,CĐCS,Hành chính - sự nghiệp",
        "G2,CĐCS Công ty Cổ phần,U2,Cơ sở,Doanh Nghiệp",
        "G3,CĐCS Sở Tài chính,U2,grassroots,HCSN",
    )

    await run_import(sessions, path, clock)

    found = await all_units(sessions)
    assert {c: (u.kind, u.sector) for c, u in found.items()} == {
        "T": (UnitKind.PROVINCE, None),
        "U1": (UnitKind.UPPER, None),
        "U2": (UnitKind.UPPER, None),
        "G1": (UnitKind.GRASSROOTS, Sector.ADMINISTRATIVE),
        "G2": (UnitKind.GRASSROOTS, Sector.ENTERPRISE),
        "G3": (UnitKind.GRASSROOTS, Sector.ADMINISTRATIVE),
    }


async def test_csv_saved_with_a_byte_order_mark_imports(
    sessions: SessionFactory, clock: ManualClock, tmp_path: Path
) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + SAMPLE.read_bytes())

    report = await run_import(sessions, path, clock)

    assert report.created == SAMPLE_SIZE
    assert_tree_consistent(await all_units(sessions))


async def test_xlsx_file_imports_with_free_column_order(
    sessions: SessionFactory, clock: ManualClock, tmp_path: Path
) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append([" Name ", "CODE", "Kind", "Parent_Code", "cluster", "Sector"])
    sheet.append(["Liên đoàn Lao động tỉnh Ninh Thuận", "LDLD-NT", "province", None, "A", None])
    sheet.append([None, None, None, None, None, None])
    sheet.append(["Công đoàn cơ sở Xã Phước Dinh", 101, "grassroots", "ldld-nt", "B", "hcsn"])
    path = tmp_path / "units.xlsx"
    workbook.save(path)

    report = await run_import(sessions, path, clock)

    assert report.created == 2
    found = await all_units(sessions)
    assert found["101"].name == "Công đoàn cơ sở Xã Phước Dinh"
    assert found["101"].parent_id == found["LDLD-NT"].id
    assert found["101"].sector is Sector.ADMINISTRATIVE
    assert_tree_consistent(found)


async def test_moving_a_unit_moves_its_whole_subtree(
    sessions: SessionFactory, clock: ManualClock, tmp_path: Path
) -> None:
    first = unit_csv(
        tmp_path,
        "ROOT,Liên đoàn Lao động tỉnh,,province,",
        "CITY,Liên đoàn Lao động thành phố,ROOT,upper,",
        "ZONE,Công đoàn các Khu công nghiệp,ROOT,upper,",
        "WARD,Công đoàn khối phường,CITY,upper,",
        "W1,CĐCS Phường Phủ Hà,WARD,grassroots,administrative",
        "W2,CĐCS Phường Kinh Dinh,WARD,grassroots,administrative",
        name="first.csv",
    )
    await run_import(sessions, first, clock)
    before = await all_units(sessions)
    # WARD goes one level deeper, under a group that does not exist yet.
    second = unit_csv(
        tmp_path,
        "GROUP,Công đoàn khối dịch vụ,ZONE,upper,",
        "WARD,Công đoàn khối phường,GROUP,upper,",
        name="second.csv",
    )

    report = await run_import(sessions, second, clock)

    assert report == ImportReport(created=1, updated=1, unchanged=0)
    after = await all_units(sessions)
    zone, group, ward = after["ZONE"], after["GROUP"], after["WARD"]
    assert ward.id == before["WARD"].id
    assert ward.path == f"{zone.path}{group.id}/{ward.id}/"
    assert ward.depth == 3
    for code in ("W1", "W2"):
        assert after[code].path == f"{ward.path}{after[code].id}/"
        assert after[code].depth == 4
        assert after[code].updated_at == before[code].updated_at
    assert_tree_consistent(after)
    async with sessions() as session:
        in_city = {u.code for u in await units.subtree(session, after["CITY"])}
        in_zone = {u.code for u in await units.subtree(session, zone)}
    assert in_city == {"CITY"}
    assert in_zone == {"ZONE", "GROUP", "WARD", "W1", "W2"}


@pytest.mark.slow
async def test_ten_thousand_units_import_in_bulk(
    sessions: SessionFactory, clock: ManualClock, tmp_path: Path
) -> None:
    rows = ["ROOT,Liên đoàn Lao động tỉnh,,province,"]
    rows += [f"U{u},Công đoàn cấp trên số {u},ROOT,upper," for u in range(99)]
    rows += [f"G{g},Công đoàn cơ sở số {g},U{g % 99},grassroots,enterprise" for g in range(9900)]
    path = unit_csv(tmp_path, *rows)

    assert await run_import(sessions, path, clock) == ImportReport(10_000, 0, 0)
    assert await run_import(sessions, path, clock) == ImportReport(0, 0, 10_000)
    found = await all_units(sessions)
    assert len(found) == 10_000
    assert_tree_consistent(found)


# --- reading ----------------------------------------------------------------------------------


def test_rows_are_numbered_as_a_spreadsheet_shows_them(tmp_path: Path) -> None:
    path = unit_csv(
        tmp_path,
        "A,Tên A,,province,",
        "",
        'B,"Tên B\ntrên hai dòng",A,upper,',
        "C,Tên C,A,upper,",
    )

    rows = read_unit_rows(path)

    assert [(r.line, r.code) for r in rows] == [(2, "A"), (4, "B"), (5, "C")]


def test_semicolon_separated_csv_is_read(tmp_path: Path) -> None:
    path = unit_csv(tmp_path, "A;Tên A;;province;", header=HEADER.replace(",", ";"))

    rows = read_unit_rows(path)

    assert [(r.line, r.code, r.name, r.kind) for r in rows] == [(2, "A", "Tên A", "province")]


# --- rejecting bad files ----------------------------------------------------------------------

GARMENT = "CDCS-MAYNT"

# Each case: the file's lines after the header (or None for raw bytes), and the expected
# (line, kind, fields) of every problem. The sample is loaded first.
BAD_CSV_CASES: dict[str, tuple[list[str], list[tuple[int, str, dict[str, str]]]]] = {
    "unknown parent": (
        ["X,Công đoàn cơ sở X,NOPE,grassroots,"],
        [(2, "unknown_parent", {"code": "X", "parent_code": "NOPE"})],
    ),
    "cycle in the file": (
        [
            "A,Công đoàn A,B,upper,",
            "OK,Công đoàn OK,LDLD-NT,upper,",
            "B,Công đoàn B,A,upper,",
        ],
        [(2, "cycle", {"codes": "A → B → A"})],
    ),
    "cycle through the database": (
        ["LDLD-NT,Liên đoàn Lao động tỉnh Ninh Thuận,CD-GD,province,"],
        [(2, "cycle", {"codes": "LDLD-NT → CD-GD → LDLD-NT"})],
    ),
    "province under another unit": (
        ["P2,Liên đoàn Lao động tỉnh thứ hai,CD-GD,province,"],
        [(2, "province_with_parent", {"code": "P2", "parent_code": "CD-GD"})],
    ),
    "a chain deeper than a union tree goes": (
        [
            f"A{n},Công đoàn cấp trên số {n},{f'A{n - 1}' if n > 1 else 'LDLD-NT'},upper,"
            for n in range(1, 13)
        ],
        [(13, "too_deep", {"code": "A12", "levels": "12"})],
    ),
    "unit under itself": (
        ["A,Công đoàn A,A,upper,"],
        [(2, "cycle", {"codes": "A → A"})],
    ),
    "duplicate code": (
        ["A,Công đoàn A,LDLD-NT,upper,", "OK,Công đoàn OK,LDLD-NT,upper,", " a ,Lặp,A,upper,"],
        [(4, "duplicate_code", {"code": "A", "first_line": "2"})],
    ),
    "bad kind": (
        ["A,Công đoàn A,LDLD-NT,huyện,"],
        [(2, "bad_kind", {"value": "huyện"})],
    ),
    "missing kind": (
        ["A,Công đoàn A,LDLD-NT,,"],
        [(2, "missing_kind", {"code": "A"})],
    ),
    "bad sector": (
        ["A,Công đoàn A,LDLD-NT,upper,tư nhân"],
        [(2, "bad_sector", {"value": "tư nhân"})],
    ),
    "bad code": (
        ["CĐ KCN,Công đoàn A,LDLD-NT,upper,", "B" * 33 + ",Công đoàn B,LDLD-NT,upper,"],
        [(2, "bad_code", {"value": "CĐ KCN"}), (3, "bad_code", {"value": "B" * 33})],
    ),
    "bad name": (
        ["A,  ,LDLD-NT,upper,", "B," + "x" * 256 + ",LDLD-NT,upper,"],
        [
            (2, "bad_name", {"code": "A"}),
            (3, "name_too_long", {"code": "B", "length": "256", "maximum": "255"}),
        ],
    ),
    "a name with an unquoted comma": (
        [
            "X1,Công đoàn cơ sở Công ty TNHH Xây dựng, Thương mại Phước Hải,"
            "CD-PRTC,grassroots,enterprise"
        ],
        [(2, "too_many_cells", {"count": "6", "columns": "5"})],
    ),
    "parent is grassroots": (
        [f"X,Tổ công đoàn,{GARMENT},grassroots,enterprise"],
        [(2, "parent_is_grassroots", {"code": "X", "parent_code": GARMENT})],
    ),
    "upper union turned into a grassroots one": (
        ["CD-GD,Công đoàn ngành Giáo dục tỉnh Ninh Thuận,LDLD-NT,grassroots,"],
        [
            (2, "parent_is_grassroots", {"code": code, "parent_code": "CD-GD"})
            for code in ("CDCS-THPT-CVA", "CDCS-THPT-LQD", "CDCS-THPT-THAPCHAM")
        ],
    ),
}


@pytest.mark.parametrize("case", BAD_CSV_CASES)
async def test_bad_rows_reject_the_whole_file(
    sessions: SessionFactory, clock: ManualClock, tmp_path: Path, case: str
) -> None:
    lines, expected = BAD_CSV_CASES[case]
    await load_sample(sessions, clock)
    # A good row first: it must not be imported either.
    path = unit_csv(tmp_path, *lines, "NEW,Công đoàn cơ sở mới,CD-KCN,grassroots,")

    problems = await rejected(sessions, path, clock)

    assert sorted(problems, key=repr) == sorted(
        (ImportProblem(line, kind, fields) for line, kind, fields in expected), key=repr
    )
    assert "NEW" not in await all_units(sessions)


FILE_CASES: dict[str, tuple[str, bytes, ImportProblem]] = {
    "missing column": (
        "units.csv",
        b"code,name,parent_code,sector\nA,Ten,,\n",
        ImportProblem(1, "missing_column", {"column": "kind"}),
    ),
    "empty file": ("units.csv", b"", ImportProblem(1, "empty_file")),
    "blank lines only": ("units.csv", b"\n , , \n\n", ImportProblem(1, "empty_file")),
    "header only": ("units.csv", HEADER.encode() + b"\n", ImportProblem(1, "empty_file")),
    "not utf-8": (
        "units.csv",
        (HEADER + "\nA,Công đoàn,,province,\nB,Công đoàn,A,upper,\n").encode("cp1258"),
        ImportProblem(2, "unreadable_file", {"reason": "not_utf8"}),
    ),
    "corrupt xlsx": (
        "units.xlsx",
        b"PK\x03\x04 this is not really a workbook",
        ImportProblem(1, "unreadable_file", {"reason": "bad_xlsx"}),
    ),
    "word document": (
        "units.docx",
        b"PK\x03\x04",
        ImportProblem(1, "unreadable_file", {"reason": "unsupported_type"}),
    ),
    "cluster name too long": (
        "units.csv",
        (HEADER + ",cluster\nA,Công đoàn A,LDLD-NT,upper,," + "K" * 65 + "\n").encode(),
        ImportProblem(2, "bad_cluster", {"code": "A", "maximum": "64"}),
    ),
}


@pytest.mark.parametrize("case", FILE_CASES)
async def test_unusable_files_are_rejected(
    sessions: SessionFactory, clock: ManualClock, tmp_path: Path, case: str
) -> None:
    name, content, expected = FILE_CASES[case]
    await load_sample(sessions, clock)
    path = tmp_path / name
    path.write_bytes(content)

    assert await rejected(sessions, path, clock) == [expected]


async def test_missing_file_is_reported(sessions: SessionFactory, clock: ManualClock) -> None:
    problems = await rejected(sessions, Path("/nonexistent/units.csv"), clock)

    assert problems == [ImportProblem(1, "unreadable_file", {"reason": "cannot_open"})]


async def test_every_problem_of_a_file_is_reported_in_line_order(
    sessions: SessionFactory, clock: ManualClock, tmp_path: Path
) -> None:
    await load_sample(sessions, clock)
    path = unit_csv(
        tmp_path,
        "A,Công đoàn A,LDLD-NT,upper,",
        "B,Công đoàn B,NOPE,upper,",
        "C D,Công đoàn C,LDLD-NT,upper,",
        "E,Công đoàn E,LDLD-NT,district,private",
        "F,Công đoàn F,A,grassroots,",
        "G,Công đoàn G,F,grassroots,",
        "a,Công đoàn A lần hai,LDLD-NT,upper,",
        # Children of the rejected "C D" are not blamed for it.
        "H,Công đoàn H,C D,grassroots,",
    )

    problems = await rejected(sessions, path, clock)

    assert [(p.line, p.kind) for p in problems] == [
        (3, "unknown_parent"),
        (4, "bad_code"),
        (5, "bad_kind"),
        (5, "bad_sector"),
        (7, "parent_is_grassroots"),
        (8, "duplicate_code"),
    ]


# --- texts ------------------------------------------------------------------------------------


def test_every_problem_kind_is_exercised_by_a_test() -> None:
    exercised = {kind for _, cases in BAD_CSV_CASES.values() for _, kind, _ in cases}
    exercised |= {problem.kind for _, _, problem in FILE_CASES.values()}

    assert exercised == set(PROBLEM_KINDS)


@pytest.mark.parametrize(
    "problem",
    [
        *(
            ImportProblem(line, kind, fields)
            for cases in BAD_CSV_CASES.values()
            for line, kind, fields in cases[1]
        ),
        *(problem for _, _, problem in FILE_CASES.values()),
    ],
    ids=lambda problem: problem.kind,
)
def test_every_problem_has_a_vietnamese_text(problem: ImportProblem) -> None:
    catalogue = Catalogue.load()

    text = catalogue(f"import.{problem.kind}", line=problem.line, **problem.fields)

    assert text.startswith(f"Dòng {problem.line}:")
    assert catalogue.fields(f"import.{problem.kind}") == {"line", *problem.fields}
    assert "{" not in text


@pytest.mark.parametrize("reason", UNREADABLE_REASONS)
def test_every_unreadable_reason_has_a_vietnamese_text(reason: str) -> None:
    catalogue = Catalogue.load()

    detail = catalogue(f"import.reason.{reason}")
    text = catalogue("import.unreadable_file", line=1, reason=detail)

    assert detail in text


async def test_a_title_row_above_the_header_is_one_problem_saying_so(
    sessions: SessionFactory, clock: ManualClock, tmp_path: Path
) -> None:
    path = tmp_path / "titled.csv"
    path.write_text(
        "DANH SÁCH CÔNG ĐOÀN CƠ SỞ TRỰC THUỘC,,,,\n\n"
        "code,name,parent_code,kind,sector\n"
        "X,Công đoàn cơ sở X,,grassroots,enterprise\n",
        encoding="utf-8",
    )

    problems = await rejected(sessions, path, clock)

    assert [(p.line, p.kind) for p in problems] == [(1, "missing_column")]
    text = Catalogue.load()("import.missing_column", line=1, **problems[0].fields)
    assert 'thiếu cột "code", "name", "parent_code", "kind", "sector"' in text
    assert "Dòng đầu tiên có chữ của tệp phải là dòng tiêu đề" in text


async def test_moving_a_unit_down_a_long_chain_blames_its_row_for_its_subtree(
    sessions: SessionFactory, clock: ManualClock, tmp_path: Path
) -> None:
    await load_sample(sessions, clock)
    chain = [
        f"A{n},Công đoàn cấp trên số {n},{f'A{n - 1}' if n > 1 else 'LDLD-NT'},upper,"
        for n in range(1, 11)
    ]
    # CD-KCN goes to level 12 of the tree, and its CĐCS, already stored, to level 13.
    path = unit_csv(tmp_path, *chain, "CD-KCN,Công đoàn các Khu công nghiệp tỉnh,A10,upper,")

    problems = await rejected(sessions, path, clock)

    assert [(p.line, p.kind) for p in problems] == [(12, "too_deep")]
    assert problems[0].fields["code"].startswith("CDCS-")
