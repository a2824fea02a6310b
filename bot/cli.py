"""The `thidua` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from alembic.util import CommandError
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Bot
from telegram.error import InvalidToken, TelegramError

from bot import logs, serving
from bot.app import BotRuntime, ListenError
from bot.settings import Settings, SettingsError, load_settings
from bot.telegram.channel import opt_in_to_timedelta_periods
from handlers import reports, schedule_view
from handlers.audit_log import action_label, actor_name
from handlers.i18n import Catalogue
from storage import app_state, audit, campaigns, invitations, schedule, units
from storage import reports as report_store
from storage.backup import BackupError, backup_sqlite, restore_sqlite, sqlite_path
from storage.campaign_file import (
    MAX_YEAR,
    MIN_YEAR,
    CampaignFileError,
    CampaignProblem,
    load_campaign_file,
)
from storage.campaign_template import TemplateNote, new_campaign_text
from storage.clock import SystemClock
from storage.engine import create_engine, create_session_factory
from storage.importers.campaigns import import_campaign
from storage.importers.targets import TargetImportError, import_targets
from storage.importers.units import ImportProblem, UnitImportError, import_units
from storage.migrate import current_revision, upgrade
from storage.models import Role
from storage.schedule import PlanConfig

log = logging.getLogger(__name__)

CLI_VIA = "cli"

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# A file wrong on every line would print thousands: its first problems say enough.
PROBLEMS_SHOWN = 50


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thidua", description="Trợ lý phong trào thi đua.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the bot (Telegram polling or webhook)")
    commands.add_parser("demo", help="chat with the bot in the terminal, on sample data")
    backup = commands.add_parser("backup", help="copy the SQLite database, even while running")
    backup.add_argument("--out", type=Path, required=True)
    restore = commands.add_parser("restore", help="replace the SQLite database by a backup")
    restore.add_argument("file", type=Path)
    restore.add_argument("--yes", action="store_true", help="confirm replacing the database")
    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_commands.add_parser("upgrade", help="apply every migration")
    units_parser = commands.add_parser("units", help="the organisation tree")
    units_commands = units_parser.add_subparsers(
        dest="units_command", metavar="ACTION", required=True
    )
    importer = units_commands.add_parser("import", help="import units from CSV or XLSX")
    importer.add_argument("file", type=Path)
    publish = units_commands.add_parser(
        "publish", help="the Telegram channel or group where a unit's approved stories go"
    )
    publish.add_argument("unit_code")
    publish.add_argument("chat_id", nargs="?", help="-100... or @channelname")
    publish.add_argument("--clear", action="store_true", help="remove the unit's own channel")
    targets_parser = commands.add_parser("targets", help="the units' targets (chỉ tiêu)")
    targets_commands = targets_parser.add_subparsers(
        dest="targets_command", metavar="ACTION", required=True
    )
    targets_import = targets_commands.add_parser(
        "import", help="import targets from CSV or XLSX: unit_code,campaign,metric,value"
    )
    targets_import.add_argument("file", type=Path)
    campaign = commands.add_parser("campaign", help="the yearly campaign file")
    campaign_commands = campaign.add_subparsers(
        dest="campaign_command", metavar="ACTION", required=True
    )
    campaign_import = campaign_commands.add_parser("import", help="import a campaign YAML file")
    campaign_import.add_argument("file", type=Path)
    campaign_new = campaign_commands.add_parser(
        "new", help="write next year's campaign file from this year's"
    )
    campaign_new.add_argument("--from", dest="source", type=Path, required=True)
    campaign_new.add_argument("--year", type=int, required=True)
    campaign_new.add_argument("--out", type=Path, default=None, help="default: standard output")
    schedule_parser = commands.add_parser("schedule", help="what the bot sends on its own")
    schedule_commands = schedule_parser.add_subparsers(
        dest="schedule_command", metavar="ACTION", required=True
    )
    schedule_list = schedule_commands.add_parser("list", help="the coming runs, local time")
    schedule_list.add_argument("--days", type=int, default=30, help="how far ahead (default 30)")
    schedule_list.add_argument(
        "--from",
        dest="start",
        type=date.fromisoformat,
        default=None,
        help="list as if it were this day, YYYY-MM-DD (default: now)",
    )
    report = commands.add_parser(
        "report", help="a unit's campaign report as a spreadsheet (xlsx) or CSV files (zip)"
    )
    report.add_argument("--unit", required=True, help="the unit code: its whole subtree")
    report.add_argument("--phase", type=int, default=None, help="only this phase (1, 2, ...)")
    report.add_argument(
        "--format",
        choices=["xlsx", "csv"],
        default="xlsx",
        help="xlsx (default), or csv: a ZIP of one UTF-8 CSV file per sheet",
    )
    report.add_argument("--out", type=Path, required=True, help="the file to write")
    audit_parser = commands.add_parser("audit", help="the log of officers' and admins' actions")
    audit_commands = audit_parser.add_subparsers(
        dest="audit_command", metavar="ACTION", required=True
    )
    audit_export = audit_commands.add_parser(
        "export", help="write the audit log as CSV (UTF-8 with BOM) or XLSX, by the file's suffix"
    )
    audit_export.add_argument("--out", type=Path, required=True, help="a .csv or .xlsx file")
    audit_export.add_argument("--from", dest="start", default=None, help="first day, dd/mm/yyyy")
    audit_export.add_argument("--to", dest="end", default=None, help="last day, dd/mm/yyyy")
    invite = commands.add_parser("invite", help="create an invitation code for a unit")
    invite.add_argument("unit_code")
    invite.add_argument("--role", choices=[Role.MEMBER.value, Role.OFFICER.value], default="member")
    invite.add_argument("--uses", type=int, default=None, help="how many people may use it")
    invite.add_argument("--days", type=int, default=None, help="how many days it stays valid")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command and return the process exit status."""
    opt_in_to_timedelta_periods()
    args = build_parser().parse_args(argv)
    texts = Catalogue.load()
    try:
        settings = load_settings()
    except SettingsError as error:
        print(texts("cli.settings_error", problem=error), file=sys.stderr)
        return EXIT_USAGE
    logs.configure(settings.log_level, _secrets(settings))
    command = args.command or "run"
    if command != "run" and settings.log_level != "DEBUG":
        # A one-off command answers in one Vietnamese line, not after Alembic's English ones.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    actions: dict[str, Callable[[], Coroutine[Any, Any, int]]] = {
        "run": lambda: _run(settings, texts),
        "demo": lambda: _demo(settings),
        "db": lambda: _db_upgrade(settings, texts),
        "units": lambda: (
            _units_publish(settings, texts, args)
            if args.units_command == "publish"
            else _units_import(settings, texts, args.file)
        ),
        "targets": lambda: _targets_import(settings, texts, args.file),
        "campaign": lambda: _campaign(settings, texts, args),
        "invite": lambda: _invite(settings, texts, args),
        "backup": lambda: _backup(settings, texts, args.out),
        "restore": lambda: _restore(settings, texts, args.file, confirmed=args.yes),
        "report": lambda: _report(settings, texts, args),
        "audit": lambda: _audit_export(settings, texts, args),
        "schedule": lambda: _schedule_list(settings, texts, args.days, args.start),
    }
    try:
        # The bot itself runs on uvloop where installed (bot.serving); one-off commands do not.
        return (serving.run if command == "run" else asyncio.run)(actions[command]())
    except KeyboardInterrupt:
        print(texts("cli.interrupted"), file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # the reader of our output went away (`thidua schedule | head`)
        return EXIT_FAILED
    except (DBAPIError, CommandError, ConnectionError, socket.gaierror, TimeoutError) as error:
        # A wrong host, port, password or database name is the usual first-day mistake.
        log.debug("database unusable", exc_info=True)
        print(_database_problem(texts, settings.database_url, error), file=sys.stderr)
        return EXIT_FAILED


def _secrets(settings: Settings) -> list[str]:
    """Return the secret settings' values, to be masked wherever a log line holds them."""
    values = (getattr(settings, name) for name in type(settings).model_fields)
    return [v.get_secret_value() for v in values if isinstance(v, SecretStr)]


def _database_problem(texts: Catalogue, url: str, error: BaseException) -> str:
    """Say in one line that the database cannot be used, naming DATABASE_URL without a password."""
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        shown = "?"
    if isinstance(error, CommandError) and "Can't locate revision" in str(error):
        return texts("cli.database_newer", url=shown)
    cause = getattr(error, "orig", None) or error
    detail = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    return texts("cli.database_unusable", url=shown, problem=detail[:200])


async def _run(settings: Settings, texts: Catalogue) -> int:
    runtime = BotRuntime(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await runtime.start()
    except (ListenError, InvalidToken, TelegramError) as error:
        await _stop_quietly(runtime)
        if isinstance(error, ListenError):
            print(texts("cli.cannot_listen", problem=error), file=sys.stderr)
            return EXIT_USAGE
        if isinstance(error, InvalidToken):
            print(texts("cli.token_rejected"), file=sys.stderr)
            return EXIT_USAGE
        print(texts("cli.telegram_failed", problem=logs.redact(str(error))), file=sys.stderr)
        return EXIT_FAILED
    except BaseException:
        await _stop_quietly(runtime)
        raise
    serving.tune_gc()
    try:
        await stop.wait()
    finally:
        await runtime.stop()
    return EXIT_OK


async def _stop_quietly(runtime: BotRuntime) -> None:
    """Stop what a failed start had started, without hiding why it failed."""
    try:
        await runtime.stop()
    except Exception:
        log.debug("stopping after a failed start", exc_info=True)


async def _demo(settings: Settings) -> int:
    from bot.demo import run_demo

    # The terminal is the chat here: only warnings and errors may interrupt it.
    if settings.log_level in ("DEBUG", "INFO"):
        logs.configure("WARNING", _secrets(settings))
    await run_demo(settings)
    return EXIT_OK


async def _backup(settings: Settings, texts: Catalogue, out: Path) -> int:
    database = sqlite_path(settings.database_url)
    if database is None:
        print(texts("cli.backup_postgres"), file=sys.stderr)
        return EXIT_USAGE
    try:
        size = await asyncio.to_thread(backup_sqlite, database, out)
    except BackupError as error:
        print(texts(f"cli.backup_{error.problem}", **error.fields), file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:
        print(texts("cli.backup_failed", problem=error.strerror or error), file=sys.stderr)
        return EXIT_FAILED
    print(texts("cli.backup_done", path=out, size=round(size / 1024)))
    return EXIT_OK


async def _restore(settings: Settings, texts: Catalogue, backup: Path, *, confirmed: bool) -> int:
    database = sqlite_path(settings.database_url)
    if database is None:
        print(texts("cli.backup_postgres"), file=sys.stderr)
        return EXIT_USAGE
    if not confirmed:
        print(texts("cli.restore_confirm", database=database, path=backup), file=sys.stderr)
        return EXIT_USAGE
    try:
        await asyncio.to_thread(restore_sqlite, backup, database)
    except BackupError as error:
        print(texts(f"cli.backup_{error.problem}", **error.fields), file=sys.stderr)
        return EXIT_FAILED
    # A backup from an older version is brought up to date at once.
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    print(texts("cli.restore_done", database=database, path=backup))
    return EXIT_OK


async def _db_upgrade(settings: Settings, texts: Catalogue) -> int:
    engine = create_engine(settings.database_url)
    try:
        before = await current_revision(engine)
        await upgrade(engine)
        after = await current_revision(engine)
        key = "cli.migrated" if after == before else "cli.upgraded"
        print(texts(key, revision=after, previous=before or "—"))
    finally:
        await engine.dispose()
    return EXIT_OK


class _ImportCounts(Protocol):
    created: int
    updated: int
    unchanged: int


_Report = TypeVar("_Report", bound=_ImportCounts)


async def _import_audited(
    settings: Settings,
    path: Path,
    action: str,
    importer: Callable[[AsyncSession, Path, datetime], Awaitable[_Report]],
) -> _Report:
    """Migrate, then import `path` and audit it in one transaction; importer errors propagate."""
    engine = create_engine(settings.database_url)
    sessions = create_session_factory(engine)
    try:
        await upgrade(engine)
        async with sessions() as session, session.begin():
            now = SystemClock().now()
            report = await importer(session, path, now)
            _audit(
                session,
                now,
                action,
                file=path.name,
                created=report.created,
                updated=report.updated,
                unchanged=report.unchanged,
            )
            return report
    finally:
        await engine.dispose()


async def _units_import(settings: Settings, texts: Catalogue, path: Path) -> int:
    if not await asyncio.to_thread(path.is_file):
        print(texts("cli.file_missing", path=path), file=sys.stderr)
        return EXIT_FAILED
    try:
        report = await _import_audited(settings, path, "units.import", import_units)
    except UnitImportError as error:
        print(texts("cli.units_rejected", path=path, count=len(error.problems)), file=sys.stderr)
        _print_problems(texts, error.problems, "import")
        return EXIT_FAILED
    print(
        texts(
            "cli.units_imported",
            created=report.created,
            updated=report.updated,
            unchanged=report.unchanged,
        )
    )
    return EXIT_OK


# A Telegram chat a bot can post to: a numeric chat id, or a public channel's @username.
_PUBLISH_CHAT = re.compile(r"-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31}")


async def _units_publish(settings: Settings, texts: Catalogue, args: argparse.Namespace) -> int:
    """Set (or clear) where a unit's approved exemplar stories are published."""
    chat = None if args.clear else (args.chat_id or "").strip()
    if chat is not None and not chat:
        print(texts("cli.publish_missing"), file=sys.stderr)
        return EXIT_USAGE
    if chat is not None and not _PUBLISH_CHAT.fullmatch(chat):
        print(texts("cli.publish_bad_chat", chat=chat), file=sys.stderr)
        return EXIT_USAGE
    engine = create_engine(settings.database_url)
    sessions = create_session_factory(engine)
    try:
        await upgrade(engine)
        async with sessions() as session, session.begin():
            unit = await units.get_by_code(session, args.unit_code)
            if unit is None:
                print(texts("cli.unit_unknown", code=args.unit_code), file=sys.stderr)
                return EXIT_FAILED
            unit.publish_chat = chat
            name, code = unit.name, unit.code
            _audit(session, SystemClock().now(), "unit.publish", unit_id=unit.id, chat=chat)
    finally:
        await engine.dispose()
    if chat is None:
        print(texts("cli.publish_cleared", unit=name, code=code))
    else:
        print(texts("cli.publish_set", unit=name, code=code, chat=chat))
    return EXIT_OK


async def _targets_import(settings: Settings, texts: Catalogue, path: Path) -> int:
    """Import a target file; list every problem by line, or warn of parents left short."""
    if not await asyncio.to_thread(path.is_file):
        print(texts("cli.file_missing", path=path), file=sys.stderr)
        return EXIT_FAILED
    try:
        report = await _import_audited(settings, path, "targets.import", import_targets)
    except TargetImportError as error:
        print(texts("targets.cli.rejected", path=path, count=len(error.problems)), file=sys.stderr)
        _print_problems(texts, error.problems, "targets.import")
        return EXIT_FAILED
    print(
        texts(
            "targets.cli.imported",
            created=report.created,
            updated=report.updated,
            unchanged=report.unchanged,
        )
    )
    for note in report.shortfalls:
        short = note.shortfall
        print(
            texts(
                "targets.cli.shortfall",
                code=note.unit_code,
                unit=note.unit_name,
                campaign=note.campaign_code,
                total=short.children_total,
                target=short.parent_target,
                missing=short.missing,
                without=short.children_without,
            )
        )
    return EXIT_OK


def _print_problems(texts: Catalogue, problems: Sequence[ImportProblem], prefix: str) -> None:
    """List a rejected file's problems on stderr, the first ones only for a file all wrong."""
    for problem in problems[:PROBLEMS_SHOWN]:
        print(describe_problem(texts, problem, prefix=prefix), file=sys.stderr)
    if len(problems) > PROBLEMS_SHOWN:
        print(texts("cli.more_problems", count=len(problems) - PROBLEMS_SHOWN), file=sys.stderr)


def describe_problem(texts: Catalogue, problem: ImportProblem, prefix: str = "import") -> str:
    """Say in Vietnamese what is wrong with one line of an imported file."""
    fields = dict(problem.fields)
    if "reason" in fields:
        fields["reason"] = texts(f"import.reason.{fields['reason']}")
    return texts(f"{prefix}.{problem.kind}", line=problem.line, **fields)


async def _campaign(settings: Settings, texts: Catalogue, args: argparse.Namespace) -> int:
    if args.campaign_command == "import":
        return await _campaign_import(settings, texts, args.file)
    return await _campaign_new(texts, args.source, args.year, args.out)


async def _campaign_import(settings: Settings, texts: Catalogue, path: Path) -> int:
    if not await asyncio.to_thread(path.is_file):
        print(texts("cli.file_missing", path=path), file=sys.stderr)
        return EXIT_FAILED
    engine = create_engine(settings.database_url)
    sessions = create_session_factory(engine)
    try:
        # A file with problems is rejected before the database is opened.
        campaign_file = await asyncio.to_thread(load_campaign_file, path)
        await upgrade(engine)
        async with sessions() as session, session.begin():
            now = SystemClock().now()
            report = await import_campaign(session, campaign_file, now)
            _audit(
                session,
                now,
                "campaign.import",
                subject=f"campaign:{report.campaign_id}",
                file=path.name,
                code=report.code,
            )
    except CampaignFileError as error:
        count = len(error.problems)
        print(texts("campaign_file.cli.rejected", path=path, count=count), file=sys.stderr)
        _print_campaign_problems(texts, error)
        return EXIT_FAILED
    finally:
        await engine.dispose()
    info = campaign_file.campaign
    print(
        texts(
            "campaign_file.cli.imported",
            code=info.code,
            name=campaign_file.render(info.name),
            start=info.starts_on.strftime("%d/%m/%Y"),
            end=info.ends_on.strftime("%d/%m/%Y"),
        )
    )
    for section in ("campaign", "movements", "phases", "milestones", "deadlines"):
        counts = getattr(report, section)
        print(
            texts(
                "campaign_file.cli.section_line",
                section=texts(f"campaign_file.section.{section}"),
                created=counts.created,
                updated=counts.updated,
                unchanged=counts.unchanged,
                deactivated=counts.deactivated,
            )
        )
    return EXIT_OK


async def _campaign_new(texts: Catalogue, source: Path, year: int, out: Path | None) -> int:
    if not MIN_YEAR <= year <= MAX_YEAR:
        print(
            texts("campaign_file.cli.bad_year", minimum=MIN_YEAR, maximum=MAX_YEAR), file=sys.stderr
        )
        return EXIT_USAGE
    if not await asyncio.to_thread(source.is_file):
        print(texts("cli.file_missing", path=source), file=sys.stderr)
        return EXIT_FAILED
    if out is not None and await asyncio.to_thread(out.exists):
        print(texts("campaign_file.cli.out_exists", path=out), file=sys.stderr)
        return EXIT_FAILED
    try:
        text, notes = await asyncio.to_thread(new_campaign_text, source, year)
    except CampaignFileError as error:
        count = len(error.problems)
        print(texts("campaign_file.cli.source_rejected", path=source, count=count), file=sys.stderr)
        _print_campaign_problems(texts, error)
        return EXIT_FAILED
    described = [describe_note(texts, note) for note in notes]
    header = [
        texts("campaign_file.cli.header", year=year, source=source.name),
        texts("campaign_file.cli.header_comments"),
    ]
    if described:
        header += [texts("campaign_file.cli.notes", count=len(described)), *described]
    document = "".join(f"# {line}\n" for line in header) + "\n" + text
    if out is None:
        print(document, end="")
        stream = sys.stderr
    else:
        try:
            await asyncio.to_thread(out.write_text, document, "utf-8")
        except OSError:
            print(texts("campaign_file.cli.cannot_write", path=out), file=sys.stderr)
            return EXIT_FAILED
        print(texts("campaign_file.cli.written", path=out, year=year, source=source))
        stream = sys.stdout
    if described:
        print(texts("campaign_file.cli.notes", count=len(described)), file=stream)
        for line in described:
            print(line, file=stream)
    return EXIT_OK


def _print_campaign_problems(texts: Catalogue, error: CampaignFileError) -> None:
    for problem in error.problems:
        print(describe_campaign_problem(texts, problem), file=sys.stderr)


def describe_campaign_problem(texts: Catalogue, problem: CampaignProblem) -> str:
    """Say in Vietnamese what is wrong at one line of a campaign file."""
    fields = dict(problem.fields)
    if "reason" in fields:
        fields["reason"] = texts(f"campaign_file.reason.{fields['reason']}")
    if "expected" in fields:
        fields["expected"] = texts(f"campaign_file.expected.{fields['expected']}")
    text = texts(f"campaign_file.problem.{problem.kind}", **fields)
    if problem.path:
        return texts("campaign_file.at_path", line=problem.line, path=problem.path, text=text)
    return texts("campaign_file.at_line", line=problem.line, text=text)


def describe_note(texts: Catalogue, note: TemplateNote) -> str:
    """Say in Vietnamese what to check in a file made by `thidua campaign new`."""
    text = texts(f"campaign_file.note.{note.kind}", **note.fields)
    return texts("campaign_file.cli.note_line", path=note.path, text=text)


async def _schedule_list(
    settings: Settings, texts: Catalogue, days: int, start: date | None
) -> int:
    if not 1 <= days <= 366:
        print(texts("cli.schedule_bad_days"), file=sys.stderr)
        return EXIT_USAGE
    engine = create_engine(settings.database_url)
    sessions = create_session_factory(engine)
    config = PlanConfig(zone=settings.zone, run_time=settings.run_time)
    try:
        await upgrade(engine)
        async with sessions() as session:
            now = SystemClock().now()
            if start is not None:
                now = datetime.combine(start, time(0, 0), tzinfo=settings.zone)
            coming = await schedule.coming(session, config, now, days)
            print(texts("cli.schedule_title", days=days, count=len(coming)))
            for run in coming:
                scope = await schedule.scope_of(session, run)
                size = await schedule.audience_size(session, run, scope) if scope else 0
                moment = schedule_view.when(run, config, settings.quiet)
                print(
                    texts(
                        "cli.schedule_line",
                        when=moment.strftime("%d/%m/%Y %H:%M"),
                        what=schedule_view.describe(texts, run),
                        audience=size,
                        key=run.key,
                    )
                )
    finally:
        await engine.dispose()
    return EXIT_OK


async def _write_out(texts: Catalogue, cannot_write: str, path: Path, content: bytes) -> bool:
    """Write an export; on failure print the `cannot_write` message and return False."""
    try:
        await asyncio.to_thread(path.write_bytes, content)
    except OSError:
        print(texts(cannot_write, path=path), file=sys.stderr)
        return False
    return True


async def _report(settings: Settings, texts: Catalogue, args: argparse.Namespace) -> int:
    """Write a unit's campaign report, its whole subtree, optionally one phase."""
    engine = create_engine(settings.database_url)
    sessions = create_session_factory(engine)
    now = SystemClock().now()
    try:
        await upgrade(engine)
        async with sessions() as session:
            unit = await units.get_by_code(session, args.unit)
            if unit is None:
                print(texts("cli.unit_unknown", code=args.unit), file=sys.stderr)
                return EXIT_FAILED
            campaign = await campaigns.for_unit(session, unit, now.astimezone(settings.zone).date())
            if campaign is None:
                print(texts("report.cli.no_campaign", code=unit.code), file=sys.stderr)
                return EXIT_FAILED
            phase = None
            if args.phase is not None:
                phases = await campaigns.phases(session, campaign.id)
                phase = next((p for p in phases if p.number == args.phase), None)
                if phase is None:
                    numbers = ", ".join(str(p.number) for p in phases) or "–"
                    print(
                        texts(
                            "report.cli.unknown_phase",
                            campaign=campaign.name,
                            number=args.phase,
                            numbers=numbers,
                        ),
                        file=sys.stderr,
                    )
                    return EXIT_FAILED
            data = await report_store.load(session, unit, campaign, phase=phase, zone=settings.zone)
    finally:
        await engine.dispose()

    def render() -> tuple[int, bytes]:
        sheets = reports.tables(data, texts, settings.zone, now)
        if args.format == "csv":
            return len(sheets), reports.csv_zip_bytes(sheets, now, settings.zone)
        return len(sheets), reports.xlsx_bytes(sheets)

    files, content = await asyncio.to_thread(render)
    if not await _write_out(texts, "report.cli.cannot_write", args.out, content):
        return EXIT_FAILED
    await _audit_apart(
        settings,
        "report.export",
        unit_id=data.root.id,
        subject=f"campaign:{data.campaign_code}",
        phase=args.phase,
        format=args.format,
        file=args.out.name,
    )
    total = data.summary_of(data.root.id)
    figures = {
        "path": args.out,
        "units": len(data.units),
        "members": total.members,
        "commitments": total.commitments,
        "initiatives": len(data.initiatives),
        "commendations": total.commendations,
    }
    if args.format == "csv":
        print(texts("report.cli.written_csv", files=files, **figures))
    else:
        print(texts("report.cli.written", **figures))
    return EXIT_OK


async def _invite(settings: Settings, texts: Catalogue, args: argparse.Namespace) -> int:
    role = Role(args.role)
    default_uses = 1 if role == Role.OFFICER else settings.invite_default_uses
    uses = args.uses if args.uses is not None else default_uses
    days = args.days if args.days is not None else settings.invite_default_days
    if not (1 <= uses <= invitations.USES_MAX and 1 <= days <= invitations.DAYS_MAX):
        print(
            texts(
                "cli.invite_bad_numbers",
                uses_max=invitations.USES_MAX,
                days_max=invitations.DAYS_MAX,
            ),
            file=sys.stderr,
        )
        return EXIT_USAGE
    runtime = BotRuntime(settings)
    try:
        await runtime.prepare()
        username = await _telegram_username(settings) or runtime.identity.telegram_username
        async with runtime.sessions() as session, session.begin():
            unit = await units.get_by_code(session, args.unit_code)
            if unit is None:
                print(texts("cli.unit_unknown", code=args.unit_code), file=sys.stderr)
                return EXIT_FAILED
            if not invitations.admits(role, unit):
                print(texts("cli.invite_member_needs_grassroots", unit=unit.name), file=sys.stderr)
                return EXIT_USAGE
            invitation = await invitations.create(
                session, unit=unit, role=role, uses=uses, days=days, now=runtime.clock.now()
            )
            _audit(
                session,
                runtime.clock.now(),
                "invite.create",
                unit_id=unit.id,
                subject=f"invitation:{invitation.id}",
                role=role.value,
                uses=uses,
                days=days,
            )
            if username:
                await app_state.put(session, app_state.TELEGRAM_USERNAME, username)
        expires = invitation.expires_at.astimezone(settings.zone).strftime("%d/%m/%Y %H:%M")
        print(
            texts(
                "cli.invite_created",
                unit=unit.name,
                code_unit=unit.code,
                role=texts(f"role.{role.value}"),
                uses=uses,
                expires=expires,
            )
        )
        if username:
            link = f"https://t.me/{username}?start={invitation.code}"
            print(texts("cli.invite_link", link=link))
        else:
            print(texts("cli.invite_no_link", code=invitation.code))
        print(invitation.code)
    finally:
        await runtime.stop()
    return EXIT_OK


def _audit(
    session: AsyncSession,
    now: datetime,
    action: str,
    *,
    unit_id: int | None = None,
    subject: str | None = None,
    **detail: object,
) -> None:
    """Record an operator's command in the audit log, in the command's own transaction."""
    audit.record(
        session,
        now=now,
        actor=None,
        via=CLI_VIA,
        action=action,
        unit_id=unit_id,
        subject=subject,
        detail={key: value for key, value in detail.items() if value is not None},
    )


async def _audit_apart(
    settings: Settings,
    action: str,
    *,
    unit_id: int | None = None,
    subject: str | None = None,
    **detail: object,
) -> None:
    """Record a command whose effect is a file, once the file is written."""
    engine = create_engine(settings.database_url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            _audit(session, SystemClock().now(), action, unit_id=unit_id, subject=subject, **detail)
    finally:
        await engine.dispose()


def _local_day(value: str | None) -> date | None:
    """Read a dd/mm/yyyy day; raise ValueError when it is not one."""
    if value is None:
        return None
    return datetime.strptime(value.strip(), "%d/%m/%Y").date()


async def _audit_export(settings: Settings, texts: Catalogue, args: argparse.Namespace) -> int:
    """Write the audit log, newest first, optionally between two local days (both included)."""
    suffix = args.out.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        print(texts("audit.cli.bad_suffix", path=args.out), file=sys.stderr)
        return EXIT_USAGE
    days: list[date | None] = []
    for raw in (args.start, args.end):
        try:
            days.append(_local_day(raw))
        except ValueError:
            print(texts("audit.cli.bad_date", value=raw), file=sys.stderr)
            return EXIT_USAGE
    start, end = days
    if start is not None and end is not None and start > end:
        print(
            texts("audit.cli.bad_range", start=args.start, end=args.end),
            file=sys.stderr,
        )
        return EXIT_USAGE
    zone = settings.zone
    since = datetime.combine(start, time(0), tzinfo=zone).astimezone(UTC) if start else None
    until = (
        datetime.combine(end + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
        if end
        else None
    )
    engine = create_engine(settings.database_url)
    sessions = create_session_factory(engine)
    try:
        await upgrade(engine)
        async with sessions() as session:
            found = await audit.rows(session, since=since, until=until)
    finally:
        await engine.dispose()

    def render() -> bytes:
        table = audit_table(texts, found, zone)
        return reports.xlsx_bytes([table]) if suffix == ".xlsx" else reports.csv_bytes(table)

    content = await asyncio.to_thread(render)
    if not await _write_out(texts, "audit.cli.cannot_write", args.out, content):
        return EXIT_FAILED
    await _audit_apart(
        settings,
        "audit.export",
        file=args.out.name,
        start=start.isoformat() if start else None,
        end=end.isoformat() if end else None,
        rows=len(found),
    )
    print(texts("audit.cli.written", count=len(found), path=args.out))
    return EXIT_OK


AUDIT_COLUMNS = ("time", "actor", "via", "action", "unit_code", "unit_name", "subject", "detail")


def audit_table(texts: Catalogue, found: Sequence[audit.Row], zone: ZoneInfo) -> reports.Table:
    """Lay the entries out as one sheet, in the reader's terms and local time."""
    table = reports.Table(
        key="audit",
        title=texts("audit.sheet"),
        columns=[reports.Column(texts(f"audit.column.{key}")) for key in AUDIT_COLUMNS],
    )
    for row in found:
        entry = row.entry
        detail = (
            json.dumps(entry.detail, ensure_ascii=False, sort_keys=True) if entry.detail else None
        )
        table.rows.append(
            [
                entry.at.astimezone(zone).strftime("%d/%m/%Y %H:%M:%S"),
                actor_name(texts, row),
                entry.via,
                action_label(texts, texts.has, entry.action),
                row.unit_code,
                row.unit_name,
                entry.subject,
                detail,
            ]
        )
    return table


async def _telegram_username(settings: Settings) -> str | None:
    """Ask Telegram for the bot's username when a token is configured."""
    token = settings.telegram_bot_token
    if token is None:
        return None
    try:
        bot = Bot(token.get_secret_value(), base_url=f"{settings.telegram_api_base_url}/bot")
        async with bot:
            return bot.username
    except TelegramError as error:
        log.warning("could not ask Telegram for the bot's name: %s", logs.redact(str(error)))
        return None


if __name__ == "__main__":
    sys.exit(main())
