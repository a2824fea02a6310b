"""Import the organisation tree from a CSV or XLSX file: every row, or nothing."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import openpyxl
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Sector, Unit, UnitKind
from storage.text import clean_line, fold

COLUMNS = ("code", "name", "parent_code", "kind", "sector")
# Optional: a file without the column leaves the units' clusters as they are.
OPTIONAL_COLUMNS = ("cluster",)

PROBLEM_KINDS = (
    "missing_column",
    "empty_file",
    "bad_code",
    "bad_name",
    "name_too_long",
    "bad_kind",
    "missing_kind",
    "too_many_cells",
    "bad_sector",
    "bad_cluster",
    "duplicate_code",
    "unknown_parent",
    "cycle",
    "parent_is_grassroots",
    "province_with_parent",
    "too_deep",
    "unreadable_file",
)

# Values of the `reason` field of an "unreadable_file" problem.
UNREADABLE_REASONS = ("cannot_open", "unsupported_type", "not_utf8", "bad_csv", "bad_xlsx")

MAX_NAME_LENGTH = 255
# Levels below the top a tree may have: a province's has three or four; this bound also keeps
# every unit's materialized path within its column.
MAX_DEPTH = 11
MAX_CLUSTER_LENGTH = 64
_CODE = re.compile(r"[A-Z0-9._-]{1,32}")
_NOT_WORD = re.compile(r"[^0-9a-z]+")

# Keys are folded (see _key): officers type these with or without accents, in any case.
_KINDS: Mapping[str, UnitKind] = {
    "province": UnitKind.PROVINCE,
    "tinh": UnitKind.PROVINCE,
    "ldld tinh": UnitKind.PROVINCE,
    "lien doan lao dong tinh": UnitKind.PROVINCE,
    "upper": UnitKind.UPPER,
    "cap tren": UnitKind.UPPER,
    "cap tren truc tiep co so": UnitKind.UPPER,
    "cong doan cap tren": UnitKind.UPPER,
    "cong doan cap tren truc tiep co so": UnitKind.UPPER,
    "grassroots": UnitKind.GRASSROOTS,
    "co so": UnitKind.GRASSROOTS,
    "cdcs": UnitKind.GRASSROOTS,
    "cong doan co so": UnitKind.GRASSROOTS,
}
_SECTORS: Mapping[str, Sector] = {
    "enterprise": Sector.ENTERPRISE,
    "doanh nghiep": Sector.ENTERPRISE,
    "khoi doanh nghiep": Sector.ENTERPRISE,
    "administrative": Sector.ADMINISTRATIVE,
    "hanh chinh": Sector.ADMINISTRATIVE,
    "hanh chinh su nghiep": Sector.ADMINISTRATIVE,
    "khu vuc hanh chinh su nghiep": Sector.ADMINISTRATIVE,
    "hcsn": Sector.ADMINISTRATIVE,
}


@dataclass(frozen=True)
class UnitRow:
    """One data row of a unit file, with the line a spreadsheet user sees it on."""

    line: int
    code: str
    name: str
    parent_code: str
    kind: str
    sector: str
    # The emulation cluster (khối, cụm thi đua); None when the file has no cluster column.
    cluster: str | None = None
    # Cells with text beyond the header's last column: a name with an unquoted comma.
    cells: int = 0
    columns: int = 0


@dataclass(frozen=True)
class ImportProblem:
    """One thing wrong with a file; `kind` names the catalogue text `import.<kind>`."""

    line: int
    kind: str
    fields: dict[str, str] = field(default_factory=dict)


class UnitImportError(Exception):
    """A unit file that cannot be imported, with every problem found in it."""

    def __init__(self, problems: list[ImportProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__(f"{len(self.problems)} problem(s) in the unit file")


@dataclass
class ImportReport:
    """How many units an import created, updated and found already up to date."""

    created: int
    updated: int
    unchanged: int


@dataclass(frozen=True)
class _Parsed:
    line: int
    code: str
    name: str
    parent_code: str | None
    kind: UnitKind | None
    sector: Sector | None
    cluster: str | None = None
    cluster_given: bool = False  # the file has a cluster column


@dataclass(frozen=True)
class _Existing:
    id: int
    code: str
    name: str
    name_folded: str
    kind: UnitKind
    sector: Sector | None
    parent_id: int | None
    path: str
    depth: int
    cluster: str | None = None


# ---------------------------------------------------------------------------------------------
# Reading


def read_unit_rows(path: Path) -> list[UnitRow]:
    """Read the data rows of a CSV or XLSX unit file, raising UnitImportError if unusable."""
    header_line, columns, rows = find_columns(read_table(path), COLUMNS)
    width = 1 + max(index for name, index in columns.positions.items() if name)
    result = [
        UnitRow(
            line=number,
            code=columns.cell(cells, "code"),
            name=columns.cell(cells, "name"),
            parent_code=columns.cell(cells, "parent_code"),
            kind=columns.cell(cells, "kind"),
            sector=columns.cell(cells, "sector"),
            cluster=columns.cell(cells, "cluster") if "cluster" in columns.positions else None,
            cells=sum(1 for cell in cells if cell.strip()) if _overflows(cells, width) else 0,
            columns=width,
        )
        for number, cells in rows
    ]
    if not result:
        raise UnitImportError([ImportProblem(header_line, "empty_file")])
    return result


def read_table(path: Path) -> list[tuple[int, list[str]]]:
    """Read a CSV or XLSX file as numbered rows of text cells, raising UnitImportError."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise _unreadable("unsupported_type")
    try:
        content = path.read_bytes()
    except OSError:
        raise _unreadable("cannot_open") from None
    return _csv_table(content) if suffix == ".csv" else _xlsx_table(content)


@dataclass(frozen=True)
class Columns:
    """Where each named column of a table is, by its header."""

    positions: dict[str, int]

    def cell(self, cells: list[str], column: str) -> str:
        """Return the row's cell of `column`, empty where the row is short."""
        index = self.positions[column]
        return cells[index] if index < len(cells) else ""


def find_columns(
    table: Iterable[tuple[int, list[str]]], required: Sequence[str]
) -> tuple[int, Columns, list[tuple[int, list[str]]]]:
    """Find the header row and the required columns; return it, them and the non-blank rows."""
    rows = iter(table)
    header = next(((n, cells) for n, cells in rows if not _is_blank(cells)), None)
    if header is None:
        raise UnitImportError([ImportProblem(1, "empty_file")])
    header_line, names = header
    positions: dict[str, int] = {}
    for index, name in enumerate(names):
        positions.setdefault(name.replace("\ufeff", "").strip().lower(), index)
    missing = [column for column in required if column not in positions]
    if missing:
        # One problem naming them all: a title row above the header lacks every column.
        columns = '", "'.join(missing)  # the text quotes the value: "code", "name"
        raise UnitImportError([ImportProblem(header_line, "missing_column", {"column": columns})])
    return header_line, Columns(positions), [(n, c) for n, c in rows if not _is_blank(c)]


def _overflows(cells: list[str], width: int) -> bool:
    """Tell whether a row has text in cells beyond the header's last column."""
    return any(cell.strip() for cell in cells[width:])


def _unreadable(reason: str, line: int = 1) -> UnitImportError:
    return UnitImportError([ImportProblem(line, "unreadable_file", {"reason": reason})])


def _csv_table(content: bytes) -> list[tuple[int, list[str]]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        # Point at the line with the first foreign byte: usually a name typed in another encoding.
        line = content[: error.start].count(b"\n") + 1
        raise _unreadable("not_utf8", line) from None
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    # Spreadsheets in a Vietnamese locale save CSV with ";" as the list separator.
    delimiter = max(",;\t", key=first_line.count)
    try:
        # Numbered by record, not physical line: a quoted multi-line name is one spreadsheet row.
        return [
            (number, row)
            for number, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), 1)
        ]
    except csv.Error:
        raise _unreadable("bad_csv") from None


def _xlsx_table(content: bytes) -> list[tuple[int, list[str]]]:
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception:
        # openpyxl raises zip, XML, key and value errors alike on a damaged or foreign file.
        raise _unreadable("bad_xlsx") from None
    try:
        sheet = workbook.worksheets[0]
        # Some exporters write a wrong sheet size; without this, rows past it would be lost.
        sheet.reset_dimensions()
        return [
            (number, [_cell_text(value) for value in values])
            for number, values in enumerate(sheet.iter_rows(values_only=True), 1)
        ]
    except Exception:
        raise _unreadable("bad_xlsx") from None
    finally:
        workbook.close()


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).upper()
    if isinstance(value, float) and value.is_integer():
        # Spreadsheets store every number as a float: code 101 must not become "101.0".
        return str(int(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def _is_blank(cells: Iterable[str]) -> bool:
    return all(not cell.strip() for cell in cells)


# ---------------------------------------------------------------------------------------------
# Validation


def _normalize_code(value: str) -> str:
    return value.strip().upper()


def _key(value: str) -> str:
    """Fold a spelling to lower-case words without accents or punctuation."""
    return " ".join(_NOT_WORD.sub(" ", fold(value)).split())


def _parse_rows(rows: list[UnitRow]) -> tuple[dict[str, _Parsed], set[str], list[ImportProblem]]:
    """Check each row alone; return the usable rows by code, every code seen, and problems."""
    parsed: dict[str, _Parsed] = {}
    seen: set[str] = set()
    problems: list[ImportProblem] = []
    for row in rows:
        code = _normalize_code(row.code)
        seen.add(code)
        if row.cells:
            # Its cells are shifted: every check after the comma would blame the wrong column.
            fields = {"count": str(row.cells), "columns": str(row.columns)}
            problems.append(ImportProblem(row.line, "too_many_cells", fields))
            continue
        code_ok = _CODE.fullmatch(code) is not None
        if not code_ok:
            problems.append(ImportProblem(row.line, "bad_code", {"value": row.code.strip()}))
        name = clean_line(row.name)
        if not name:
            problems.append(ImportProblem(row.line, "bad_name", {"code": code}))
        elif len(name) > MAX_NAME_LENGTH:
            fields = {"code": code, "length": str(len(name)), "maximum": str(MAX_NAME_LENGTH)}
            problems.append(ImportProblem(row.line, "name_too_long", fields))
        kind = _KINDS.get(_key(row.kind))
        if kind is None and not row.kind.strip():
            problems.append(ImportProblem(row.line, "missing_kind", {"code": code}))
        elif kind is None:
            problems.append(ImportProblem(row.line, "bad_kind", {"value": row.kind.strip()}))
        sector: Sector | None = None
        if _key(row.sector):
            sector = _SECTORS.get(_key(row.sector))
            if sector is None:
                problems.append(
                    ImportProblem(row.line, "bad_sector", {"value": row.sector.strip()})
                )
        cluster = clean_line(row.cluster) if row.cluster is not None else None
        if cluster is not None and len(cluster) > MAX_CLUSTER_LENGTH:
            fields = {"code": code, "maximum": str(MAX_CLUSTER_LENGTH)}
            problems.append(ImportProblem(row.line, "bad_cluster", fields))
        if not code_ok:
            continue
        first = parsed.get(code)
        if first is not None:
            problems.append(
                ImportProblem(
                    row.line, "duplicate_code", {"code": code, "first_line": str(first.line)}
                )
            )
            continue
        parent_code = _normalize_code(row.parent_code) or None
        parsed[code] = _Parsed(
            row.line,
            code,
            name,
            parent_code,
            kind,
            sector,
            cluster=cluster or None,
            cluster_given=row.cluster is not None,
        )
    return parsed, seen, problems


def _final_parents(
    parsed: Mapping[str, _Parsed], existing: Mapping[str, _Existing]
) -> dict[str, str | None]:
    """Return the parent code of every unit once the file is applied; unknown parents as None."""
    code_of = {unit.id: unit.code for unit in existing.values()}
    parents: dict[str, str | None] = {
        code: code_of.get(unit.parent_id) if unit.parent_id is not None else None
        for code, unit in existing.items()
    }
    for code, row in parsed.items():
        known = row.parent_code in parsed or row.parent_code in existing
        parents[code] = row.parent_code if known else None
    return parents


def _tree_problems(
    parsed: Mapping[str, _Parsed],
    seen: set[str],
    existing: Mapping[str, _Existing],
    parents: Mapping[str, str | None],
) -> list[ImportProblem]:
    """Check the combined tree (database and file): parents exist, no cycles, no leaf parents."""
    problems: list[ImportProblem] = []
    for code, row in parsed.items():
        parent = row.parent_code
        # A parent whose own row was rejected (bad code) is reported there, not once per child.
        if parent is not None and parent not in seen and parent not in existing:
            fields = {"code": code, "parent_code": parent}
            problems.append(ImportProblem(row.line, "unknown_parent", fields))

    def kind_of(code: str) -> UnitKind | None:
        return parsed[code].kind if code in parsed else existing[code].kind

    for code, parent in parents.items():
        if parent is None or kind_of(parent) is not UnitKind.GRASSROOTS:
            continue
        if code in parsed:
            line = parsed[code].line
        elif parent in parsed:
            # A unit already under `parent` that the file turns into a grassroots union.
            line = parsed[parent].line
        else:
            continue
        fields = {"code": code, "parent_code": parent}
        problems.append(ImportProblem(line, "parent_is_grassroots", fields))

    cycles = list(_cycles(parsed, parents))
    if cycles:  # the levels below mean nothing in a loop
        return [*problems, *cycles]
    for code, row in parsed.items():
        parent = parents.get(code)
        if parent is not None and row.kind is UnitKind.PROVINCE:
            # A province federation is the top of its tree.
            fields = {"code": code, "parent_code": parent}
            problems.append(ImportProblem(row.line, "province_with_parent", fields))
    problems.extend(_too_deep(parsed, parents))
    return problems


def _too_deep(
    parsed: Mapping[str, _Parsed], parents: Mapping[str, str | None]
) -> Iterator[ImportProblem]:
    """Yield a problem for each row of the file that puts a unit deeper than a tree goes.

    Units already in the database count too: a row moving a unit carries its subtree along,
    and is the line to blame.
    """
    depths: dict[str, int] = {}
    blamed: set[str] = set()
    for code in parents:
        chain: list[str] = []
        node: str | None = code
        while node is not None and node not in depths:
            chain.append(node)
            node = parents.get(node)
        depth = -1 if node is None else depths[node]
        for step in reversed(chain):
            depth += 1
            depths[step] = depth
        if depths[code] <= MAX_DEPTH:
            continue
        # The row nearest the unit on its way up: the unit's own, or a moved ancestor's.
        row_code: str | None = code
        while row_code is not None and row_code not in parsed:
            row_code = parents.get(row_code)
        if row_code is not None and row_code not in blamed:
            blamed.add(row_code)
            fields = {"code": code, "levels": str(MAX_DEPTH + 1)}
            yield ImportProblem(parsed[row_code].line, "too_deep", fields)


def _cycles(
    parsed: Mapping[str, _Parsed], parents: Mapping[str, str | None]
) -> Iterator[ImportProblem]:
    """Yield one problem per cycle of parent links, on the cycle's first line in the file."""
    done: set[str] = set()
    # The database holds no cycle, so every cycle passes through a row of the file.
    for start in sorted(parsed, key=lambda c: parsed[c].line):
        walk: list[str] = []
        on_walk: set[str] = set()
        node: str | None = start
        while node is not None and node not in done and node not in on_walk:
            walk.append(node)
            on_walk.add(node)
            node = parents.get(node)
        if node is not None and node in on_walk:
            cycle = walk[walk.index(node) :]
            first = min(
                (c for c in cycle if c in parsed), key=lambda c: parsed[c].line, default=start
            )
            turn = cycle.index(first) if first in cycle else 0
            ordered = cycle[turn:] + cycle[:turn]
            codes = " → ".join([*ordered, ordered[0]])
            yield ImportProblem(parsed[first].line, "cycle", {"codes": codes})
        done.update(walk)


# ---------------------------------------------------------------------------------------------
# Writing


async def import_units(session: AsyncSession, path: Path, now: datetime) -> ImportReport:
    """Create or update the units of a file by code; change nothing if any row is wrong."""
    rows = read_unit_rows(path)
    parsed, seen, problems = _parse_rows(rows)
    existing = await _load_existing(session)
    parents = _final_parents(parsed, existing)
    problems.extend(_tree_problems(parsed, seen, existing, parents))
    if problems:
        raise UnitImportError(problems)
    return await _apply(session, parsed, existing, parents, now)


async def _load_existing(session: AsyncSession) -> dict[str, _Existing]:
    result = await session.execute(
        select(
            Unit.id,
            Unit.code,
            Unit.name,
            Unit.name_folded,
            Unit.kind,
            Unit.sector,
            Unit.parent_id,
            Unit.path,
            Unit.depth,
            Unit.cluster,
        )
    )
    return {row.code: _Existing(*tuple(row)) for row in result}


def _depths(parents: Mapping[str, str | None]) -> dict[str, int]:
    depths: dict[str, int] = {}
    for start in parents:
        chain: list[str] = []
        node: str | None = start
        while node is not None and node not in depths:
            if len(chain) > len(parents):
                raise RuntimeError(f"the unit tree has a cycle through {start}")
            chain.append(node)
            node = parents[node]
        depth = -1 if node is None else depths[node]
        for code in reversed(chain):
            depth += 1
            depths[code] = depth
    return depths


async def _apply(
    session: AsyncSession,
    parsed: Mapping[str, _Parsed],
    existing: Mapping[str, _Existing],
    parents: Mapping[str, str | None],
    now: datetime,
) -> ImportReport:
    depths = _depths(parents)
    ids = {code: unit.id for code, unit in existing.items()}

    # Parents first, so that ids grow down the tree; paths need ids, so they are set afterwards.
    new = sorted(
        (c for c in parsed if c not in existing), key=lambda c: (depths[c], parsed[c].line)
    )
    if new:
        rows = [
            {
                **_unit_values(parsed[code]),
                "code": code,
                "parent_id": None,
                # Unique placeholder ("#" is never in a real path) until the id is known.
                "path": f"#{code}",
                "depth": depths[code],
                "created_at": now,
                "updated_at": now,
            }
            for code in new
        ]
        inserted = await session.execute(insert(Unit).returning(Unit.id, Unit.code), rows)
        ids.update({code: unit_id for unit_id, code in inserted})

    paths: dict[str, str] = {}
    for code in sorted(parents, key=depths.__getitem__):
        parent = parents[code]
        paths[code] = (paths[parent] if parent is not None else "/") + f"{ids[code]}/"

    changed: list[dict[str, Any]] = []
    placed: list[dict[str, Any]] = []
    updated = unchanged = 0
    for code in parents:
        parent = parents[code]
        tree_values = {
            "id": ids[code],
            "parent_id": ids[parent] if parent is not None else None,
            "path": paths[code],
            "depth": depths[code],
        }
        old = existing.get(code)
        row = parsed.get(code)
        if old is not None and row is not None:
            values = _unit_values(row)
            current = {
                "name": old.name,
                "name_folded": old.name_folded,
                "kind": old.kind,
                "sector": old.sector,
                "parent_id": old.parent_id,
            }
            if row.cluster_given:
                current["cluster"] = old.cluster
            if values | {"parent_id": tree_values["parent_id"]} != current:
                updated += 1
                changed.append(values | tree_values | {"updated_at": now})
                continue
            unchanged += 1
        # New units get their place; unchanged ones still follow an ancestor that moved.
        if old is None or (old.parent_id, old.path, old.depth) != (
            tree_values["parent_id"],
            tree_values["path"],
            tree_values["depth"],
        ):
            placed.append(tree_values)

    # No two units ever share a final path (it ends with the unit's own id), so updating rows
    # one after another cannot trip the unique index on the way.
    for batch in (changed, placed):
        if batch:
            await session.execute(update(Unit), batch)
    return ImportReport(created=len(new), updated=updated, unchanged=unchanged)


def _unit_values(row: _Parsed) -> dict[str, Any]:
    values = {
        "name": row.name,
        "name_folded": fold(row.name)[:MAX_NAME_LENGTH],
        "kind": row.kind,
        "sector": row.sector,
    }
    if row.cluster_given:
        values["cluster"] = row.cluster
    return values
