"""The `thidua` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from telegram import Bot
from telegram.error import TelegramError

from bot import logs
from bot.app import BotRuntime
from bot.settings import Settings, SettingsError, load_settings
from handlers.i18n import Catalogue
from storage import app_state, invitations, units
from storage.clock import SystemClock
from storage.engine import create_engine, create_session_factory
from storage.importers.units import ImportProblem, UnitImportError, import_units
from storage.migrate import current_revision, upgrade
from storage.models import Role

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thidua", description="Trợ lý phong trào thi đua.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the bot (Telegram polling or webhook)")
    commands.add_parser("demo", help="chat with the bot in the terminal, on sample data")
    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_commands.add_parser("upgrade", help="apply every migration")
    units_parser = commands.add_parser("units", help="the organisation tree")
    units_commands = units_parser.add_subparsers(
        dest="units_command", metavar="ACTION", required=True
    )
    importer = units_commands.add_parser("import", help="import units from CSV or XLSX")
    importer.add_argument("file", type=Path)
    invite = commands.add_parser("invite", help="create an invitation code for a unit")
    invite.add_argument("unit_code")
    invite.add_argument("--role", choices=[Role.MEMBER.value, Role.OFFICER.value], default="member")
    invite.add_argument("--uses", type=int, default=None, help="how many people may use it")
    invite.add_argument("--days", type=int, default=None, help="how many days it stays valid")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command and return the process exit status."""
    args = build_parser().parse_args(argv)
    texts = Catalogue.load()
    try:
        settings = load_settings()
    except SettingsError as error:
        print(texts("cli.settings_error", problem=error), file=sys.stderr)
        return EXIT_USAGE
    logs.configure(settings.log_level)
    command = args.command or "run"
    actions: dict[str, Callable[[], Coroutine[Any, Any, int]]] = {
        "run": lambda: _run(settings),
        "demo": lambda: _demo(settings),
        "db": lambda: _db_upgrade(settings, texts),
        "units": lambda: _units_import(settings, texts, args.file),
        "invite": lambda: _invite(settings, texts, args),
    }
    try:
        return asyncio.run(actions[command]())
    except KeyboardInterrupt:
        print(texts("cli.interrupted"), file=sys.stderr)
        return EXIT_FAILED


async def _run(settings: Settings) -> int:
    runtime = BotRuntime(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    await runtime.start()
    try:
        await stop.wait()
    finally:
        await runtime.stop()
    return EXIT_OK


async def _demo(settings: Settings) -> int:
    from bot.demo import run_demo

    # The terminal is the chat here: only warnings and errors may interrupt it.
    if settings.log_level in ("DEBUG", "INFO"):
        logs.configure("WARNING")
    await run_demo(settings)
    return EXIT_OK


async def _db_upgrade(settings: Settings, texts: Catalogue) -> int:
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        print(texts("cli.migrated", revision=await current_revision(engine)))
    finally:
        await engine.dispose()
    return EXIT_OK


async def _units_import(settings: Settings, texts: Catalogue, path: Path) -> int:
    if not await asyncio.to_thread(path.is_file):
        print(texts("cli.file_missing", path=path), file=sys.stderr)
        return EXIT_FAILED
    engine = create_engine(settings.database_url)
    sessions = create_session_factory(engine)
    try:
        await upgrade(engine)
        async with sessions() as session, session.begin():
            report = await import_units(session, path, SystemClock().now())
    except UnitImportError as error:
        print(texts("cli.units_rejected", path=path, count=len(error.problems)), file=sys.stderr)
        for problem in error.problems:
            print(
                texts(f"import.{problem.kind}", line=problem.line, **problem.fields),
                file=sys.stderr,
            )
        return EXIT_FAILED
    finally:
        await engine.dispose()
    print(
        texts(
            "cli.units_imported",
            created=report.created,
            updated=report.updated,
            unchanged=report.unchanged,
        )
    )
    return EXIT_OK


def describe_problem(texts: Catalogue, problem: ImportProblem) -> str:
    """Say in Vietnamese what is wrong with one line of an imported file."""
    fields = dict(problem.fields)
    if "reason" in fields:
        fields["reason"] = texts(f"import.reason.{fields['reason']}")
    return texts(f"import.{problem.kind}", line=problem.line, **fields)


async def _invite(settings: Settings, texts: Catalogue, args: argparse.Namespace) -> int:
    role = Role(args.role)
    default_uses = 1 if role == Role.OFFICER else settings.invite_default_uses
    uses = args.uses if args.uses is not None else default_uses
    days = args.days if args.days is not None else settings.invite_default_days
    if uses < 1 or days < 1:
        print(texts("cli.invite_bad_numbers"), file=sys.stderr)
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
            invitation = await invitations.create(
                session, unit=unit, role=role, uses=uses, days=days, now=runtime.clock.now()
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
