"""Import unit targets from a CSV or XLSX file: every row, or nothing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import targets
from storage.importers.units import (
    ImportProblem,
    UnitImportError,
    _key,
    find_columns,
    read_table,
)
from storage.models import Campaign, Target, Unit
from storage.targets import Shortfall

COLUMNS = ("unit_code", "campaign", "metric", "value")

PROBLEM_KINDS = (
    "missing_column",
    "empty_file",
    "unknown_unit",
    "unknown_campaign",
    "outside_campaign",
    "bad_metric",
    "bad_value",
    "too_large",
    "duplicate",
    "unreadable_file",
)

# Keys are folded (see units._key): spellings with or without accents, in any case.
_METRICS: Mapping[str, str] = {
    "initiatives": targets.INITIATIVES,
    "initiative": targets.INITIATIVES,
    "sang kien": targets.INITIATIVES,
    "sk": targets.INITIATIVES,
    "sang kien cai tien ky thuat": targets.INITIATIVES,
    "sang kien cai tien": targets.INITIATIVES,
}


class TargetImportError(Exception):
    """A target file that cannot be imported, with every problem found in it."""

    def __init__(self, problems: list[ImportProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__(f"{len(self.problems)} problem(s) in the target file")


@dataclass(frozen=True)
class TargetRow:
    """One data row of a target file, with the line a spreadsheet user sees it on."""

    line: int
    unit_code: str
    campaign: str
    metric: str
    value: str


@dataclass(frozen=True)
class ShortfallNote:
    """A unit of the file, or the parent of one, whose children's targets fall short of its own."""

    unit_code: str
    unit_name: str
    campaign_code: str
    metric: str
    shortfall: Shortfall


@dataclass
class TargetImportReport:
    """What an import changed, and the parents whose children now fall short of them."""

    created: int
    updated: int
    unchanged: int
    shortfalls: list[ShortfallNote] = field(default_factory=list)


@dataclass(frozen=True)
class _Parsed:
    line: int
    unit_id: int
    campaign_id: int
    metric: str
    value: int


def read_target_rows(path: Path) -> list[TargetRow]:
    """Read the data rows of a CSV or XLSX target file, raising TargetImportError if unusable."""
    try:
        header_line, columns, rows = find_columns(read_table(path), COLUMNS)
    except UnitImportError as error:
        raise TargetImportError(error.problems) from None
    result = [
        TargetRow(
            line=number,
            unit_code=columns.cell(cells, "unit_code").strip(),
            campaign=columns.cell(cells, "campaign").strip(),
            metric=columns.cell(cells, "metric").strip(),
            value=columns.cell(cells, "value").strip(),
        )
        for number, cells in rows
    ]
    if not result:
        raise TargetImportError([ImportProblem(header_line, "empty_file")])
    return result


async def import_targets(session: AsyncSession, path: Path, now: datetime) -> TargetImportReport:
    """Set the targets of a file by unit, campaign and metric; change nothing on any problem."""
    rows = read_target_rows(path)
    unit_rows = (await session.execute(select(Unit.code, Unit.id, Unit.path, Unit.parent_id))).all()
    unit_by_code = {code: (unit_id, unit_path) for code, unit_id, unit_path, _ in unit_rows}
    path_of = {unit_id: unit_path for _, unit_id, unit_path, _ in unit_rows}
    parent_of = {unit_id: parent_id for _, unit_id, _, parent_id in unit_rows}
    campaigns = {c.code: c for c in (await session.scalars(select(Campaign))).all()}
    roots = {c.id: path_of.get(c.root_unit_id) for c in campaigns.values()}

    parsed: list[_Parsed] = []
    first_line: dict[tuple[int, int, str], int] = {}
    problems: list[ImportProblem] = []
    for row in rows:
        code = row.unit_code.upper()
        unit = unit_by_code.get(code)
        if unit is None:
            problems.append(ImportProblem(row.line, "unknown_unit", {"code": row.unit_code}))
        campaign = campaigns.get(row.campaign.upper())
        if campaign is None:
            problems.append(ImportProblem(row.line, "unknown_campaign", {"code": row.campaign}))
        metric = _METRICS.get(_key(row.metric))
        if metric is None:
            problems.append(ImportProblem(row.line, "bad_metric", {"value": row.metric}))
        value = targets.parse_count(row.value)
        if value is None:
            problems.append(ImportProblem(row.line, "bad_value", {"value": row.value}))
        elif value > targets.MAX_VALUE:
            fields = {"value": row.value, "maximum": _thousands(targets.MAX_VALUE)}
            problems.append(ImportProblem(row.line, "too_large", fields))
            value = None
        if unit is None or campaign is None:
            continue
        root_path = roots.get(campaign.id)
        if root_path is None or not unit[1].startswith(root_path):
            fields = {"code": code, "campaign": campaign.code}
            problems.append(ImportProblem(row.line, "outside_campaign", fields))
            continue
        if metric is None or value is None:
            continue
        key = (unit[0], campaign.id, metric)
        if key in first_line:
            fields = {
                "code": code,
                "campaign": campaign.code,
                "first_line": str(first_line[key]),
            }
            problems.append(ImportProblem(row.line, "duplicate", fields))
            continue
        first_line[key] = row.line
        parsed.append(_Parsed(row.line, unit[0], campaign.id, metric, value))
    if problems:
        raise TargetImportError(problems)
    return await _apply(session, parsed, campaigns.values(), parent_of, now)


async def _apply(
    session: AsyncSession,
    parsed: list[_Parsed],
    campaigns: Iterable[Campaign],
    parent_of: Mapping[int, int | None],
    now: datetime,
) -> TargetImportReport:
    campaign_ids = {p.campaign_id for p in parsed}
    existing = {
        (unit_id, campaign_id, metric): int(value)
        for unit_id, campaign_id, metric, value in (
            await session.execute(
                select(Target.unit_id, Target.campaign_id, Target.metric, Target.value).where(
                    Target.campaign_id.in_(campaign_ids)
                )
            )
        ).all()
    }
    report = TargetImportReport(created=0, updated=0, unchanged=0)
    changed: list[dict[str, Any]] = []
    for row in parsed:
        old = existing.get((row.unit_id, row.campaign_id, row.metric))
        if old == row.value:
            report.unchanged += 1
            continue
        if old is None:
            report.created += 1
        else:
            report.updated += 1
        changed.append(
            {
                "unit_id": row.unit_id,
                "campaign_id": row.campaign_id,
                "metric": row.metric,
                "value": row.value,
                "set_by_id": None,
                "updated_at": now,
            }
        )
    await targets.upsert(session, changed)

    # The file may have raised a parent's target or lowered a child's: check both.
    touched = {p.unit_id for p in parsed}
    parents = {parent for unit_id in touched if (parent := parent_of[unit_id]) is not None}
    by_id = {c.id: c for c in campaigns}
    for campaign_id, metric in sorted({(p.campaign_id, p.metric) for p in parsed}):
        found = await targets.shortfalls(session, campaign_id, metric)
        report.shortfalls += [
            ShortfallNote(unit.code, unit.name, by_id[campaign_id].code, metric, short)
            for unit, short in found
            if unit.id in touched or unit.id in parents
        ]
    return report


def _thousands(value: int) -> str:
    return f"{value:,}".replace(",", ".")
