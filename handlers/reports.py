"""/baocao: an officer receives a spreadsheet of their subtree's campaign, optionally one phase.

The data is read in the message's session (storage.reports); the workbook is built from it in
a worker thread, so a large subtree does not hold up other people's messages. The same tables
are written as CSV files in a ZIP archive by `thidua report --format csv`.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from handlers import audit_log
from handlers.context import Context
from handlers.parsing import parse_id
from handlers.permissions import Action, refusal
from handlers.scope import Scope, member_scope
from handlers.types import Attachment, Choice, Reply
from storage import campaigns
from storage import reports as report_store
from storage.models import Phase, UnitKind
from storage.reports import ReportData
from storage.text import fold

FLOW = "report"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Telegram takes documents up to 50 MB from bots.
MAX_SEND_MB = 50

Texts = Callable[..., str]
CellKind = Literal["text", "long", "int", "date", "money", "percent"]
CellValue = str | int | float | date | None

_WIDTH_MIN, _WIDTH_TEXT, _WIDTH_LONG = 8, 45, 70
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_DATE_FORMAT = "DD/MM/YYYY"
_MONEY_FORMAT = "#,##0"
_HEADER_FONT = Font(bold=True)
_HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
_HEADER_ALIGNMENT = Alignment(vertical="center", wrap_text=True)


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    kind: CellKind = "text"


@dataclass(slots=True)
class Table:
    """One sheet: a header row and data rows, values already in the reader's terms."""

    key: str
    title: str
    columns: list[Column]
    rows: list[list[CellValue]] = field(default_factory=list)
    # The summary's tree: each row's indentation of the cell in column `indent_column`.
    indents: list[int] = field(default_factory=list)
    indent_column: int = 1


# ---------------------------------------------------------------------------------------------
# The tables of a report


def tables(data: ReportData, t: Texts, zone: ZoneInfo, now: datetime) -> list[Table]:
    """Turn a report's data into its sheets: summary, six lists, and what the report covers."""
    units = data.units

    def day(moment: datetime | None) -> date | None:
        return moment.astimezone(zone).date() if moment is not None else None

    def col(key: str, kind: CellKind = "text") -> Column:
        return Column(t(f"report.column.{key}"), kind)

    def value(key: str) -> str:
        return t(f"report.value.{key}")

    def yes_no(flag: bool) -> str:
        return value("yes" if flag else "no")

    unit_code, unit_name = col("unit_code"), col("unit")

    summary = Table(
        "summary",
        t("report.sheet.summary"),
        [
            unit_code,
            unit_name,
            col("summary_kind"),
            col("summary_cluster"),
            col("summary_members", "int"),
            col("summary_commitments", "int"),
            col("summary_pacts", "int"),
            col("summary_grassroots", "int"),
            col("summary_with_work", "int"),
            col("summary_works_completed", "int"),
            col("summary_work_status"),
            col("summary_accepted", "int"),
            col("summary_waiting", "int"),
            col("summary_target", "int"),
            col("summary_percent", "percent"),
            col("summary_commendations", "int"),
        ],
    )
    for s in data.summaries:
        work = (
            value(f"work_{s.work_status.value}" if s.work_status else "work_none")
            if s.unit.kind == UnitKind.GRASSROOTS
            else None
        )
        summary.rows.append(
            [
                s.unit.code,
                s.unit.name,
                value(f"kind_{s.unit.kind.value}"),
                s.unit.cluster,
                s.members,
                s.commitments,
                s.pacts,
                s.grassroots,
                s.grassroots_with_work,
                s.works_completed,
                work,
                s.initiatives_accepted,
                s.initiatives_waiting,
                s.target,
                s.percent,
                s.commendations,
            ]
        )
        summary.indents.append(s.unit.depth - data.root.depth)

    members = Table(
        "members",
        t("report.sheet.members"),
        [
            col("member_name"),
            unit_code,
            unit_name,
            col("member_role"),
            col("member_joined", "date"),
            col("member_commitments", "int"),
            col("member_accepted", "int"),
        ],
    )
    for m in data.members:
        unit = units[m.unit_id]
        members.rows.append(
            [
                m.name,
                unit.code,
                unit.name,
                value(f"role_{m.role.value}"),
                day(m.joined_at),
                m.commitments,
                m.initiatives_accepted,
            ]
        )

    commitments = Table(
        "commitments",
        t("report.sheet.commitments"),
        [
            col("commitment_reference"),
            col("commitment_date", "date"),
            unit_code,
            unit_name,
            col("commitment_author"),
            col("commitment_kind"),
            col("commitment_movement"),
            col("commitment_content", "long"),
            col("commitment_target"),
            col("commitment_progress", "int"),
            col("commitment_status"),
            col("commitment_late"),
        ],
    )
    for c in data.commitments:
        unit = units[c.unit_id]
        target = (
            " ".join(p for p in (_number(c.target_value), c.target_unit or "") if p)
            if c.target_value is not None
            else None
        )
        commitments.rows.append(
            [
                c.reference,
                day(c.created_at),
                unit.code,
                unit.name,
                c.author,
                value(f"commitment_{c.kind.value}"),
                c.movement,
                c.content,
                target,
                c.progress_percent,
                value(f"commitment_{c.status.value}"),
                yes_no(c.late),
            ]
        )

    pacts = Table(
        "pacts",
        t("report.sheet.pacts"),
        [
            col("pact_reference"),
            col("pact_date", "date"),
            unit_code,
            col("pact_unit"),
            col("pact_proposer"),
            col("pact_counterpart"),
            col("pact_counterpart_unit"),
            col("pact_status"),
            col("pact_responded", "date"),
        ],
    )
    for p in data.pacts:
        unit = units[p.unit_id]
        pacts.rows.append(
            [
                p.commitment_reference,
                day(p.created_at),
                unit.code,
                unit.name,
                p.proposer,
                p.counterpart_member,
                p.counterpart_unit,
                value(f"pact_{p.status.value}"),
                day(p.responded_at),
            ]
        )

    works = Table(
        "works",
        t("report.sheet.works"),
        [
            col("work_reference"),
            unit_code,
            unit_name,
            col("work_title", "long"),
            col("work_status"),
            col("work_progress", "int"),
            col("work_registered_by"),
            col("work_date", "date"),
            col("work_updated", "date"),
            col("work_late"),
        ],
    )
    for w in data.works:
        unit = units[w.unit_id]
        works.rows.append(
            [
                w.reference,
                unit.code,
                unit.name,
                w.title,
                value(f"work_{w.status.value}"),
                w.progress_percent,
                w.registered_by,
                day(w.created_at),
                day(w.updated_at),
                yes_no(w.late),
            ]
        )

    initiatives = Table(
        "initiatives",
        t("report.sheet.initiatives"),
        [
            col("initiative_reference"),
            col("initiative_title", "long"),
            unit_code,
            unit_name,
            col("initiative_author"),
            col("initiative_co_authors"),
            col("initiative_field"),
            col("initiative_submitted", "date"),
            col("initiative_status"),
            col("initiative_estimated", "money"),
            col("initiative_recognised", "money"),
            col("initiative_level"),
            col("initiative_reviewer"),
            col("initiative_reviewed", "date"),
            col("initiative_note", "long"),
        ],
    )
    for i in data.initiatives:
        unit = units[i.unit_id]
        level = i.recognised_level
        initiatives.rows.append(
            [
                i.reference,
                i.title,
                unit.code,
                unit.name,
                i.author,
                ", ".join(i.co_authors) or None,
                i.field,
                day(i.submitted_at),
                value(f"initiative_{i.status.value}"),
                i.estimated_value,
                i.recognised_value,
                value(f"level_{level}") if level in ("unit", "higher") else level,
                i.reviewer,
                day(i.reviewed_at),
                i.review_note,
            ]
        )

    commendations = Table(
        "commendations",
        t("report.sheet.commendations"),
        [
            col("commendation_date", "date"),
            col("commendation_title"),
            col("commendation_subject"),
            col("commendation_member"),
            unit_code,
            unit_name,
            col("commendation_reason", "long"),
            col("commendation_phase"),
            col("commendation_awarded_by"),
        ],
    )
    for k in data.commendations:
        unit = units[k.unit_id]
        commendations.rows.append(
            [
                day(k.created_at),
                k.title,
                value("subject_member" if k.member is not None else "subject_unit"),
                k.member,
                unit.code,
                unit.name,
                k.reason,
                k.phase,
                k.awarded_by,
            ]
        )

    about = Table(
        "about",
        t("report.sheet.about"),
        [col("about_item"), col("about_value", "long")],
    )
    about.rows = [
        [t("report.about.title"), None],
        [t("report.about.unit"), f"{data.root.name} ({data.root.code})"],
        [t("report.about.campaign"), data.campaign_name],
        [t("report.about.period"), period_text(data, t)],
        [t("report.about.generated"), now.astimezone(zone).strftime("%d/%m/%Y %H:%M")],
        [
            t("report.about.note_phase"),
            t("report.about.note_phase_text" if data.period else "report.about.note_whole_text"),
        ],
    ]
    return [summary, members, commitments, pacts, works, initiatives, commendations, about]


def period_text(data: ReportData, t: Texts) -> str:
    """Say which part of the campaign a report covers."""
    period = data.period
    if period is None:
        return t(
            "report.period_whole",
            start=_day(data.campaign_starts_on),
            end=_day(data.campaign_ends_on),
        )
    return t(
        "report.period_phase",
        name=period.name,
        start=_day(period.starts_on),
        end=_day(period.ends_on),
    )


def file_stem(data: ReportData, t: Texts, now: datetime, zone: ZoneInfo) -> str:
    """Name a report's file without accents: unit code, period and the local day."""
    period = (
        t("report.file_phase", number=data.period.number)
        if data.period is not None
        else t("report.file_whole")
    )
    stem = t(
        "report.file_name",
        unit=data.root.code,
        period=period,
        day=now.astimezone(zone).strftime("%Y%m%d"),
    )
    return _slug(stem)


def _day(value: date) -> str:
    return value.strftime("%d/%m/%Y")


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value).replace(".", ",")


def _slug(text: str) -> str:
    """Make a file name of lower-case ASCII letters, digits, dots, dashes and underscores."""
    return re.sub(r"[^0-9a-z._-]+", "-", fold(text)).strip("-")


# ---------------------------------------------------------------------------------------------
# Writing: XLSX and CSV


def xlsx_bytes(sheets: Sequence[Table]) -> bytes:
    """Write the tables as a workbook: header row frozen, filters on, columns wide enough."""
    workbook = Workbook(write_only=True)
    for table in sheets:
        sheet = workbook.create_sheet(title=_sheet_title(table.title))
        widths = _widths(table)
        for index, width in enumerate(widths, 1):
            sheet.column_dimensions[get_column_letter(index)].width = width
        sheet.freeze_panes = "A2"
        last = get_column_letter(len(table.columns))
        sheet.auto_filter.ref = f"A1:{last}{len(table.rows) + 1}"
        header = []
        for column in table.columns:
            cell = WriteOnlyCell(sheet, value=column.title)
            cell.font = _HEADER_FONT
            cell.fill = _HEADER_FILL
            cell.alignment = _HEADER_ALIGNMENT
            header.append(cell)
        sheet.append(header)
        for number, row in enumerate(table.rows):
            cells: list[object] = []
            for index, (column, value) in enumerate(zip(table.columns, row, strict=True)):
                if value is None:
                    cells.append(None)
                elif column.kind == "date":
                    cell = WriteOnlyCell(sheet, value=value)
                    cell.number_format = _DATE_FORMAT
                    cells.append(cell)
                elif column.kind == "money":
                    cell = WriteOnlyCell(sheet, value=value)
                    cell.number_format = _MONEY_FORMAT
                    cells.append(cell)
                elif isinstance(value, str):
                    tree = table.indents and index == table.indent_column
                    indent = table.indents[number] if tree else 0
                    cells.append(_text_cell(sheet, value, indent))
                else:
                    cells.append(value)
            sheet.append(cells)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _text_cell(sheet: object, value: str, indent: int) -> object:
    """Write text as text: never as a formula, whatever a member typed ("=HYPERLINK(...)")."""
    value = ILLEGAL_CHARACTERS_RE.sub("", value)
    if not indent and not value.startswith("="):
        return value
    cell = WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"
    if indent:
        cell.alignment = Alignment(indent=indent)
    return cell


def csv_zip_bytes(sheets: Sequence[Table], now: datetime, zone: ZoneInfo) -> bytes:
    """Write each table as a CSV file (UTF-8 with BOM, so Excel reads Vietnamese) in a ZIP."""
    stamp = now.astimezone(zone).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for number, table in enumerate(sheets, 1):
            name = f"{number:02d}-{_slug(table.title)}.csv"
            archive.writestr(zipfile.ZipInfo(name, date_time=stamp), csv_bytes(table))
    return buffer.getvalue()


def csv_bytes(table: Table) -> bytes:
    """Write one table as CSV: UTF-8 with a BOM, dates dd/mm/yyyy, CRLF line ends."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([c.title for c in table.columns])
    for row in table.rows:
        writer.writerow([_csv_value(v) for v in row])
    return text.getvalue().encode("utf-8-sig")


def _csv_value(value: CellValue) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return _day(value)
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        # A spreadsheet would run it as a formula: an apostrophe keeps it text.
        return "'" + value
    return str(value)


def _sheet_title(title: str) -> str:
    """Excel names sheets in at most 31 characters, without []:*?/\\."""
    return re.sub(r"[\[\]:*?/\\]", " ", title)[:31]


def _widths(table: Table) -> list[float]:
    """Return a width per column that fits its header and values, within reason."""
    widths = []
    for index, column in enumerate(table.columns):
        longest = max((len(word) for word in column.title.split()), default=0)
        header = min(len(column.title), _WIDTH_TEXT)
        longest = max(longest, header)
        for number, row in enumerate(table.rows):
            value = row[index]
            if value is None:
                continue
            if column.kind == "date":
                size = 10
            elif column.kind == "money" and isinstance(value, int):
                size = len(f"{value:,}")
            else:
                size = len(str(value))
                if table.indents and index == table.indent_column:
                    size += 2 * table.indents[number]
            longest = max(longest, size)
        limit = _WIDTH_LONG if column.kind == "long" else _WIDTH_TEXT
        widths.append(float(max(_WIDTH_MIN, min(longest, limit)) + 2))
    return widths


# ---------------------------------------------------------------------------------------------
# The conversation


async def start(ctx: Context) -> None:
    """Offer the whole campaign or one of its phases; `/baocao 2` asks for phase 2 at once."""
    scope = await _officer_scope(ctx)
    if scope is None:
        return
    phases = await campaigns.phases(ctx.session, scope.campaign.id)
    argument = ctx.text.partition(" ")[2].strip()
    if argument:
        number = parse_id(argument)
        phase = next((p for p in phases if p.number == number), None)
        if phase is None:
            ctx.say("report.unknown_phase", number=argument[:10])
            return
        await _send(ctx, scope, phase)
        return
    if not phases:
        await _send(ctx, scope, None)
        return
    ctx.enter(FLOW, "period")
    ctx.say(
        "report.ask_period",
        unit=scope.unit.name,
        campaign=scope.campaign.name,
        choices=_period_choices(ctx, phases),
    )


async def resume(ctx: Context) -> None:
    """Make the report for the period pressed."""
    scope = await _officer_scope(ctx)
    if scope is None:
        ctx.leave()
        return
    phases = await campaigns.phases(ctx.session, scope.campaign.id)
    pressed = ctx.pressed
    if pressed == "all":
        await _send(ctx, scope, None)
        return
    phase = next((p for p in phases if pressed == f"p{p.id}"), None)
    if phase is None:
        ctx.say("report.choose_period", choices=_period_choices(ctx, phases))
        return
    await _send(ctx, scope, phase)


def _period_choices(ctx: Context, phases: Sequence[Phase]) -> list[Choice]:
    choices = [ctx.choice(ctx.t("report.whole"), "all")]
    choices += [
        ctx.choice(
            ctx.t(
                "report.phase_button",
                name=p.name,
                start=p.starts_on.strftime("%d/%m"),
                end=p.ends_on.strftime("%d/%m"),
            ),
            f"p{p.id}",
        )
        for p in phases
    ]
    return choices


async def _officer_scope(ctx: Context) -> Scope | None:
    scope = await member_scope(ctx)
    if scope is None:
        return None
    key = refusal(scope.member, Action.EXPORT_REPORT, scope.unit, scope.unit)
    if key is not None:
        ctx.say(key)
        return None
    return scope


async def build(
    data: ReportData, t: Texts, zone: ZoneInfo, now: datetime
) -> tuple[list[Table], bytes]:
    """Build a report's tables and workbook in a worker thread."""

    def work() -> tuple[list[Table], bytes]:
        sheets = tables(data, t, zone, now)
        return sheets, xlsx_bytes(sheets)

    return await asyncio.to_thread(work)


async def _send(ctx: Context, scope: Scope, phase: Phase | None) -> None:
    ctx.leave()
    zone = ctx.services.config.timezone
    data = await report_store.load(ctx.session, scope.unit, scope.campaign, phase=phase, zone=zone)
    _sheets, content = await build(data, ctx.t, zone, ctx.now)
    if len(content) > MAX_SEND_MB * 1024 * 1024:
        size = round(len(content) / 1024 / 1024, 1)
        ctx.say("report.too_big", unit=scope.unit.name, size=size, maximum=MAX_SEND_MB)
        return
    root = data.summary_of(data.root.id)
    text = ctx.t(
        "report.sent",
        unit=scope.unit.name,
        campaign=scope.campaign.name,
        period=period_text(data, ctx.t),
        units=len(data.units),
        members=root.members,
        commitments=root.commitments,
        accepted=root.initiatives_accepted,
        commendations=root.commendations,
    )
    name = file_stem(data, ctx.t, ctx.now, zone) + ".xlsx"
    audit_log.note(
        ctx,
        "report.export",
        unit_id=scope.unit.id,
        subject=f"campaign:{scope.campaign.id}",
        phase=phase.number if phase is not None else None,
        format="xlsx",
        file=name,
    )
    attachment = Attachment.generated("document", name, content, XLSX_MIME)
    ctx.outcome.replies.append(Reply(text=text, attachments=(attachment,)))
