"""`thidua demo`: the bot on its own SQLite file with sample data, chatting in the terminal."""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from bot.app import BotRuntime
from bot.console import ConsoleChannel, ConsoleChat, Persona
from bot.settings import Settings
from storage import units
from storage.campaign_file import load_campaign_file
from storage.clock import Clock, MovableClock, ShiftedClock
from storage.engine import SessionFactory
from storage.importers.campaigns import import_campaign
from storage.importers.units import import_units
from storage.members import new_member
from storage.models import ChannelAccount, MemberStatus, Role

PROJECT = Path(__file__).resolve().parent.parent
SAMPLE_UNITS = PROJECT / "data" / "sample-units.csv"
PLAN_2023 = PROJECT / "campaigns" / "ninh-thuan-2023.yaml"
DEMO_DATABASE = Path("data") / "demo.db"
# The demo lives on Sunday 05/03/2023 09:00 in Hanoi, ten days before the plan's registration
# deadline: `:clock +3d` passes Monday's digest and the first reminder, a week ahead.
DEMO_START = datetime(2023, 3, 5, 2, 0, tzinfo=UTC)
_STEP = re.compile(r"^\+(\d{1,4})\s*([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}

PERSONAS = {
    "member": Persona("member", "demo-member", "Nguyễn Thị Lan"),
    "officer": Persona("officer", "demo-officer", "Trần Văn Minh"),
    "newcomer": Persona("newcomer", "demo-newcomer", "Người mới"),
}
# Who the demo people are: (persona, full name, unit code, role); the newcomer has no record.
DEMO_PEOPLE = [
    ("member", "Nguyễn Thị Lan", "CDCS-MAYNT", Role.MEMBER),
    ("officer", "Trần Văn Minh", "CD-KCN", Role.OFFICER),
]


def demo_settings(base: Settings, database: Path = DEMO_DATABASE) -> Settings:
    """Return settings for the demo: its own database file and no messenger."""
    return base.model_copy(
        update={
            "database_url": f"sqlite+aiosqlite:///{database}",
            "telegram_bot_token": None,
            "telegram_webhook_url": None,
            # A script piping lines in is not someone flooding the bot: every transcript the
            # same, whatever the machine's speed (the flood guard is shown by its own tests).
            "flood_rate": 1000.0,
            "flood_burst": 1000,
        }
    )


def fresh_database(path: Path) -> None:
    """Start every demo from an empty database, so it always tells the same story."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def seed(sessions: SessionFactory, clock: Clock) -> None:
    """Load the sample units and the 2023 plan, and create the demo officer and member."""
    now = clock.now()
    plan = await asyncio.to_thread(load_campaign_file, PLAN_2023)
    async with sessions() as session, session.begin():
        await import_units(session, SAMPLE_UNITS, now)
        await import_campaign(session, plan, now)
        for persona_key, name, unit_code, role in DEMO_PEOPLE:
            unit = await units.get_by_code(session, unit_code)
            if unit is None:
                raise RuntimeError(f"sample units lack {unit_code}")
            member = new_member(
                full_name=name,
                unit=unit,
                role=role,
                status=MemberStatus.ACTIVE,
                now=now,
                consent_version="1",
            )
            session.add(member)
            await session.flush()
            persona = PERSONAS[persona_key]
            session.add(
                ChannelAccount(
                    channel="console",
                    external_id=persona.external_id,
                    chat_id=persona.external_id,
                    member_id=member.id,
                    display_name=name,
                    reachable=True,
                    last_seen_at=now,
                    created_at=now,
                )
            )


async def run_demo(
    base: Settings,
    *,
    clock: MovableClock | None = None,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    database: Path = DEMO_DATABASE,
) -> None:
    """Prepare the demo database and chat until the input ends."""
    out = out or sys.stdout
    fresh_database(database)
    demo_clock: MovableClock = clock or ShiftedClock(DEMO_START)
    runtime = BotRuntime(demo_settings(base, database), demo_clock)
    try:
        await runtime.prepare()
        await seed(runtime.sessions, demo_clock)
        runtime.add_channel(ConsoleChannel(out, PERSONAS, runtime.texts))

        async def move_clock(argument: str) -> str:
            """Show the demo's time; with +3d, +2h or +30m move it and run what fell due."""
            if argument:
                step = _STEP.match(argument.replace(" ", ""))
                if step is None:
                    return runtime.texts("console.clock_usage")
                target = demo_clock.now() + timedelta(**{_UNITS[step.group(2)]: int(step.group(1))})
                # Time passes with the bot running: every run on the way fires at its moment.
                while (
                    moment := await runtime.scheduler.next_run(demo_clock.now(), target)
                ) is not None:
                    demo_clock.advance(moment - demo_clock.now())
                    await runtime.scheduler.tick()
                    await runtime.deliverer.drain()
                demo_clock.advance(target - demo_clock.now())
                await runtime.scheduler.tick()
                await runtime.deliverer.drain()
            now = demo_clock.now().astimezone(runtime.settings.zone)
            return runtime.texts("console.clock", now=now.strftime("%d/%m/%Y %H:%M"))

        chat = ConsoleChat(
            runtime.dispatcher,
            runtime.texts,
            PERSONAS,
            start_as="member",
            after_message=runtime.deliverer.drain,
            meta={"clock": move_clock},
            stdin=stdin,
            out=out,
        )
        await chat.run()
    finally:
        await runtime.stop()
