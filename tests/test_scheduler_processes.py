"""The scheduler across processes: one leads, a run happens once, a survivor takes over.

Two real bot processes (`python -m bot run`, webhook mode) share one PostgreSQL database and
one fake Bot API in this process; each talks to the fake under its own base URL, so that the
fake can tell who sent what. Time is the machine's: the schedule is set up so that a run is
due already when the processes start, and the tests poll with deadlines, never sleeping for
time to pass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from storage import broadcasts
from storage.engine import create_engine, create_session_factory
from storage.models import (
    Audience,
    Broadcast,
    BroadcastStatus,
    Campaign,
    Deadline,
    DeadlineKind,
    Role,
    RunStatus,
    ScheduleRun,
    UnitKind,
)
from tests.bot_process import BotProcess, bot_env, outbox_counts
from tests.builders import T0, add_member, add_unit
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.telegram_harness import SECRET, TOKEN

ZONE_NAME = "Asia/Ho_Chi_Minh"
ZONE = ZoneInfo(ZONE_NAME)
CHAT_BASE = 8_100_000
MEMBERS = 5
NAMES = ("a", "b")
LEAD_LINE = "this process now runs the scheduler"
READY_LINE = "Telegram webhook mode"  # logged once the bot is up, just before the scheduler
DEADLINE_TITLE = "Đăng ký thi đua năm nay gửi về LĐLĐ tỉnh"
BROADCAST_TEXT = "Thông báo: Công đoàn cơ sở họp toàn thể lúc 16 giờ chiều nay."
# What a process needs to start, both at once on two cores.
START_WITHIN = 40.0
# After the messages arrived: how long nothing more may arrive.
SETTLE = 3.0
# A survivor tries the lock every 10 s (ScheduleConfig.leader_check).
TAKEOVER_WITHIN = 30.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.crash,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]


# --- the database the processes share ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setup:
    province_id: int
    unit_id: int
    officer_id: int
    chats: tuple[int, ...]


async def _add_unit_with_members(database_url: str) -> Setup:
    """A province with one grassroots union: an officer without an account, five members."""
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            province = await add_unit(
                session,
                "LDLD-NT",
                "Liên đoàn Lao động tỉnh Ninh Thuận",
                kind=UnitKind.PROVINCE,
                sector=None,
            )
            unit = await add_unit(
                session,
                "CDCS-MAYNT",
                "Công đoàn cơ sở Công ty TNHH May Ninh Thuận",
                parent=province,
            )
            officer = await add_member(session, unit, "Trần Văn Minh", role=Role.OFFICER)
            chats = tuple(CHAT_BASE + n for n in range(1, MEMBERS + 1))
            for n, chat in enumerate(chats, 1):
                await add_member(session, unit, f"Đoàn viên {n}", telegram_id=chat)
            return Setup(province.id, unit.id, officer.id, chats)
    finally:
        await engine.dispose()


def _due_an_hour_ago(now: datetime) -> tuple[str, datetime]:
    """Return a SCHEDULE_TIME that fell an hour ago (to the minute) and that local day.

    Local midnight needs no care: the day is the one of that moment, whatever today is, and a
    deadline three days later is not past.
    """
    moment = (now - timedelta(hours=1)).astimezone(ZONE).replace(second=0, microsecond=0)
    return moment.strftime("%H:%M"), moment


async def _add_campaign_with_deadline(database_url: str, setup: Setup, moment: datetime) -> str:
    """A campaign whose registration deadline is 3 days after `moment`'s local day, with a
    reminder 3 days before it; return the reminder run's key.

    No phases and no milestones: nothing else reaches the members.
    """
    day = moment.date()
    due_on = day + timedelta(days=3)
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            campaign = Campaign(
                code="NT-THI-DUA",
                name="Phong trào thi đua yêu nước",
                year=day.year,
                root_unit_id=setup.province_id,
                starts_on=day - timedelta(days=30),
                ends_on=day + timedelta(days=90),
                description="",
                options={"late_registration": "allow", "pact_expiry_days": 7},
                created_at=T0,
                updated_at=T0,
            )
            session.add(campaign)
            await session.flush()
            deadline = Deadline(
                campaign_id=campaign.id,
                code="DK-THI-DUA",
                kind=DeadlineKind.COMMITMENT_REGISTRATION,
                title=DEADLINE_TITLE,
                due_on=due_on,
                audience=Audience.MEMBERS,
                reminder_days=[3],
            )
            session.add(deadline)
            await session.flush()
            return f"deadline:{deadline.id}:T-3@{due_on.isoformat()}"
    finally:
        await engine.dispose()


async def _runs(database_url: str, key: str) -> list[tuple[RunStatus, int]]:
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            rows = await session.execute(
                select(ScheduleRun.status, ScheduleRun.messages).where(ScheduleRun.key == key)
            )
            return [(RunStatus(status), int(messages)) for status, messages in rows.all()]
    finally:
        await engine.dispose()


# --- the processes --------------------------------------------------------------------------


@asynccontextmanager
async def _two_bots(
    database_url: str, tmp_path: Path, **settings: object
) -> AsyncIterator[tuple[FakeTelegramAPI, dict[str, BotProcess]]]:
    """Start the fake Bot API and two bot processes on one database; stop them at the end."""
    api = FakeTelegramAPI(TOKEN)
    await api.start()
    bots = {
        name: BotProcess(
            bot_env(
                database_url,
                api.base_url_for(name),
                TOKEN,
                SECRET,
                timezone=ZONE_NAME,
                # Delivery is not held for the night, whenever the tests run.
                quiet_hours="",
                # The INFO line LEAD_LINE tells which process leads.
                log_level="INFO",
                **settings,
            ),
            tmp_path,
            name=name,
        )
        for name in NAMES
    }
    try:
        await asyncio.gather(*(bot.start() for bot in bots.values()))
        yield api, bots
    finally:
        await asyncio.gather(*(bot.stop() for bot in bots.values()))
        await api.stop()


def _log(bot: BotProcess) -> str:
    try:
        return bot.log_path.read_text(errors="replace")
    except OSError:
        return ""


def _logs(bots: dict[str, BotProcess]) -> str:
    return "\n".join(f"--- {name}.log:\n{bot.log_tail()}" for name, bot in bots.items())


async def _until(
    condition: Callable[[], bool],
    deadline: float,
    bots: dict[str, BotProcess],
    what: str,
) -> None:
    """Poll `condition` until the monotonic `deadline`, failing early if a live bot died."""
    expected_alive = [bot for bot in bots.values() if bot.alive]
    while not condition():
        for bot in expected_alive:
            if not bot.alive:
                raise AssertionError(f"{bot.log_path.name} exited:\n{bot.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{_logs(bots)}")
        await asyncio.sleep(0.05)


async def _until_sent(database_url: str, count: int, deadline: float) -> dict[str, int]:
    """Poll until `count` outbox rows are recorded as sent and none other exists."""
    while True:
        counts = await outbox_counts(database_url)
        if counts == {"sent": count} or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.2)


async def _settle(bots: dict[str, BotProcess], seconds: float) -> None:
    """Let `seconds` pass with the processes running, so that a late duplicate would show."""
    end = time.monotonic() + seconds
    await _until(lambda: time.monotonic() >= end, end + 1, bots, "the settling time")


def _leaders(bots: dict[str, BotProcess]) -> list[str]:
    return [name for name, bot in bots.items() if LEAD_LINE in _log(bot)]


def _received(api: FakeTelegramAPI, chat: int, needle: str) -> int:
    return sum(needle in message.text for message in api.messages_to(chat))


# --- the tests -------------------------------------------------------------------------------


async def test_two_processes_send_one_reminder_once(database_url: str, tmp_path: Path) -> None:
    setup = await _add_unit_with_members(database_url)
    schedule_time, moment = _due_an_hour_ago(datetime.now(UTC))
    key = await _add_campaign_with_deadline(database_url, setup, moment)
    started = time.monotonic()
    async with _two_bots(database_url, tmp_path, schedule_time=schedule_time) as (api, bots):

        def everyone_reminded() -> bool:
            return all(
                _received(api, chat, "Nhắc hạn") and _received(api, chat, DEADLINE_TITLE)
                for chat in setup.chats
            )

        await _until(everyone_reminded, started + START_WITHIN, bots, "every member's reminder")
        reminded = time.monotonic() - started
        counts = await _until_sent(database_url, MEMBERS, time.monotonic() + 10)
        await _settle(bots, SETTLE)
        leaders = _leaders(bots)
        assert all(bot.alive for bot in bots.values()), _logs(bots)
    print(
        f"\nreminded everyone {reminded:.1f} s after the start, leader {leaders}, "
        f"sent by {dict(api.delivered_by_client)}, {time.monotonic() - started:.1f} s in all"
    )
    for chat in setup.chats:
        texts = [message.text for message in api.messages_to(chat)]
        assert len(texts) == 1, (chat, texts)
        assert "Nhắc hạn" in texts[0], texts
        assert DEADLINE_TITLE in texts[0], texts
        assert "còn 3 ngày" in texts[0], texts
    assert api.deliveries == dict.fromkeys(setup.chats, 1)
    assert len(leaders) == 1, f"leaders: {leaders}\n{_logs(bots)}"
    assert await _runs(database_url, key) == [(RunStatus.DONE, MEMBERS)]
    assert counts == {"sent": MEMBERS}, counts


async def test_another_process_takes_over_when_the_leader_dies(
    database_url: str, tmp_path: Path
) -> None:
    setup = await _add_unit_with_members(database_url)
    started = time.monotonic()
    async with _two_bots(database_url, tmp_path) as (api, bots):
        await _until(
            lambda: all(READY_LINE in _log(bot) for bot in bots.values()) and bool(_leaders(bots)),
            started + START_WITHIN,
            bots,
            "both processes up and one leading",
        )
        (leader,) = _leaders(bots)
        (survivor,) = (name for name in NAMES if name != leader)
        # Due two seconds from now: the leader, killed at once, never gets to it, and the
        # survivor finds it at its first tick as the new leader, whenever that comes.
        broadcast_id = await _schedule_broadcast(database_url, setup, seconds_from_now=2)
        await bots[leader].kill()
        killed = time.monotonic()
        await _until(
            lambda: LEAD_LINE in _log(bots[survivor]),
            killed + TAKEOVER_WITHIN,
            bots,
            "the survivor taking the lead",
        )
        took_over = time.monotonic() - killed

        def everyone_told() -> bool:
            return all(_received(api, chat, BROADCAST_TEXT) for chat in setup.chats)

        await _until(everyone_told, killed + TAKEOVER_WITHIN, bots, "the survivor's broadcast")
        delivered_after = time.monotonic() - killed
        counts = await _until_sent(database_url, MEMBERS, time.monotonic() + 10)
        await _settle(bots, SETTLE)
        assert bots[survivor].alive, bots[survivor].log_tail()
    print(
        f"\n{leader} led and was killed; {survivor} took the lead {took_over:.1f} s later; "
        f"{survivor} delivered the broadcast {delivered_after:.1f} s after the kill; "
        f"{time.monotonic() - started:.1f} s in all"
    )
    for chat in setup.chats:
        texts = [message.text for message in api.messages_to(chat)]
        assert texts == [BROADCAST_TEXT], (chat, texts)
    assert dict(api.delivered_by_client) == {survivor: MEMBERS}
    assert LEAD_LINE in _log(bots[survivor]), bots[survivor].log_tail()
    assert await _runs(database_url, f"broadcast:{broadcast_id}") == [(RunStatus.DONE, MEMBERS)]
    assert counts == {"sent": MEMBERS}, counts


async def _schedule_broadcast(database_url: str, setup: Setup, *, seconds_from_now: float) -> int:
    """Schedule a broadcast to everyone of the unit, due shortly; return its id."""
    engine = create_engine(database_url)
    try:
        due = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
        async with create_session_factory(engine)() as session, session.begin():
            broadcast = Broadcast(
                author_id=setup.officer_id,
                scope_unit_id=setup.unit_id,
                payload={"text": BROADCAST_TEXT},
                audience=broadcasts.Audience("everyone").to_dict(),
                status=BroadcastStatus.SCHEDULED,
                scheduled_for=due,
                created_at=datetime.now(UTC),
            )
            session.add(broadcast)
            await session.flush()
            return broadcast.id
    finally:
        await engine.dispose()
