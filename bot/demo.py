"""`thidua demo`: the bot on its own SQLite file with sample data, chatting in the terminal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from bot.app import BotRuntime
from bot.console import ConsoleChannel, ConsoleChat, Persona
from bot.settings import Settings
from storage import units
from storage.clock import Clock, ShiftedClock, SystemClock
from storage.engine import SessionFactory
from storage.importers.units import import_units
from storage.members import new_member
from storage.models import ChannelAccount, MemberStatus, Role

SAMPLE_UNITS = Path(__file__).resolve().parent.parent / "data" / "sample-units.csv"
DEMO_DATABASE = Path("data") / "demo.db"

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
        }
    )


def fresh_database(path: Path) -> None:
    """Start every demo from an empty database, so it always tells the same story."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def seed(sessions: SessionFactory, clock: Clock) -> None:
    """Load the sample units and create the demo officer and member."""
    now = clock.now()
    async with sessions() as session, session.begin():
        await import_units(session, SAMPLE_UNITS, now)
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
    clock: Clock | None = None,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    database: Path = DEMO_DATABASE,
) -> None:
    """Prepare the demo database and chat until the input ends."""
    out = out or sys.stdout
    fresh_database(database)
    clock = clock or ShiftedClock(SystemClock().now())
    runtime = BotRuntime(demo_settings(base, database), clock)
    try:
        await runtime.prepare()
        await seed(runtime.sessions, runtime.clock)
        runtime.add_channel(ConsoleChannel(out, PERSONAS, runtime.texts))
        chat = ConsoleChat(
            runtime.dispatcher,
            runtime.texts,
            PERSONAS,
            start_as="member",
            after_message=runtime.deliverer.drain,
            stdin=stdin,
            out=out,
        )
        await chat.run()
    finally:
        await runtime.stop()
