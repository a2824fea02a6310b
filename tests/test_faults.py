"""Infrastructure faults under traffic: PostgreSQL restarted, the Bot API failing, kills.

Members are simulated as Telegram would carry them: each goes through /dangky (six steps,
one commitment at the end), one update at a time, and Telegram's side POSTs every update to
the webhook again until it is answered with a 2xx, as Telegram does.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from bot.app import BotRuntime
from bot.delivery import MAX_ATTEMPTS, backoff
from bot.web import TELEGRAM_SECRET_HEADER, TELEGRAM_WEBHOOK_PATH
from handlers.i18n import Catalogue
from storage.clock import ManualClock
from storage.engine import SessionFactory, create_engine, create_session_factory
from storage.models import Commitment, InboundUpdate, OutboxMessage, OutboxStatus, Unit
from tests.bot_process import BotProcess, bot_env
from tests.builders import T0, add_campaign, add_member, ninh_thuan_tree
from tests.conftest import IN_CI
from tests.factories import TgUser, callback_update, message_update
from tests.fakes.telegram_api import FakeTelegramAPI, SentMessage
from tests.fakes.zalo_api import ZaloBotUser
from tests.pg_cluster import PgCluster, server_bin
from tests.telegram_harness import SECRET, TOKEN, TelegramBot, bot_settings, running_bot
from tests.zalo_harness import running_zalo_bot

TEXTS = Catalogue.load()
NOTICE = TEXTS("outage.interrupted")
APOLOGY = TEXTS("error.unexpected", ref="")[:40]
OUTAGE_SECONDS = 10.0
BURST = 16  # members writing at the moment the server stops
MOVEMENT = "Lao động giỏi"


# --- members going through /dangky, as Telegram carries their updates ---------------------


@dataclass
class Figures:
    """What Telegram's side saw: posts refused, and when the webhook answered again."""

    posted: int = 0
    refused: int = 0  # answered non-2xx (or not at all): posted again
    refused_updates: set[int] = field(default_factory=set)
    refused_members: set[int] = field(default_factory=set)
    acknowledged: set[int] = field(default_factory=set)
    acknowledged_at: list[float] = field(default_factory=list)
    # An answer that never came (the update was handled, then the process was killed before
    # the answer went out): the member typed /dangky again.
    restarted_flows: int = 0


class Telegram:
    """POST updates to a webhook until they are acknowledged, as Telegram does."""

    def __init__(self, http: aiohttp.ClientSession, url: Callable[[], str]) -> None:
        self._http = http
        self._url = url
        self.figures = Figures()

    async def deliver(self, update: dict[str, Any], member: int) -> None:
        update_id = int(update["update_id"])
        while True:
            self.figures.posted += 1
            try:
                async with self._http.post(
                    self._url(),
                    json=update,
                    headers={TELEGRAM_SECRET_HEADER: SECRET},
                    timeout=aiohttp.ClientTimeout(total=30),
                ) as response:
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0  # the bot is down: Telegram tries again later
            if 200 <= status < 300:
                self.figures.acknowledged.add(update_id)
                self.figures.acknowledged_at.append(time.monotonic())
                return
            self.figures.refused += 1
            self.figures.refused_updates.add(update_id)
            self.figures.refused_members.add(member)
            await asyncio.sleep(0.5)


class Member:
    """One person registering a commitment in six steps, waiting for each answer."""

    def __init__(self, api: FakeTelegramAPI, telegram: Telegram, user_id: int) -> None:
        self.api = api
        self.telegram = telegram
        self.user = TgUser(user_id, f"Người {user_id}")
        self.content = f"Hoàn thành vượt mức kế hoạch sản xuất, mã {user_id}"
        self.result: str | None = None
        self.started = asyncio.Event()  # its first update was acknowledged

    def answers(self) -> list[SentMessage]:
        return [m for m in self.api.messages_to(self.user.id) if m.text != NOTICE]

    async def _step(
        self, update: dict[str, Any], expect: Callable[[SentMessage], bool], within: float
    ) -> SentMessage | None:
        before = len(self.answers())
        await self.telegram.deliver(update, self.user.id)
        self.started.set()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for message in self.answers()[before:]:
                if expect(message):
                    return message
            await asyncio.sleep(0.05)
        return None

    async def register(
        self,
        rng: random.Random,
        *,
        within: float = 60.0,
        registered: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        """Go through /dangky; start again if an answer never came (lost in a kill).

        Before starting again the member looks whether the commitment was registered after
        all (`registered`, as /cuatoi would show): then only the last answer was lost.
        """
        for _ in range(8):
            if await self._try_register(rng, within):
                return
            self.telegram.figures.restarted_flows += 1
            if registered is not None and await registered(self.content):
                self.result = "DK-2023- (registered; the answer was lost in a kill)"
                return
        raise AssertionError(f"{self.user.id} never finished: {[m.text for m in self.answers()]}")

    async def _try_register(self, rng: random.Random, within: float) -> bool:
        def has(label: str) -> Callable[[SentMessage], bool]:
            return lambda m: any(label in text for text in m.labels)

        def anything(_m: SentMessage) -> bool:
            return True

        shown = await self._step(message_update(self.user, "/dangky"), has(MOVEMENT), within)
        steps: list[tuple[str | None, str | None, Callable[[SentMessage], bool]]] = [
            (MOVEMENT, None, anything),
            (None, self.content, has("Bỏ qua")),
            ("Bỏ qua", None, has("Không giao ước")),
            ("Không giao ước", None, has("Gửi đăng ký")),
            ("Gửi đăng ký", None, lambda m: "DK-2023-" in m.text),
        ]
        for press, text, expect in steps:
            if shown is None:
                return False
            await asyncio.sleep(rng.uniform(0.05, 0.3))  # reading, typing
            if press is not None:
                data = shown.callback_data(press)
                update = callback_update(self.user, data, message_id=shown.message_id)
            else:
                assert text is not None
                update = message_update(self.user, text)
            shown = await self._step(update, expect, within)
        if shown is None:
            return False
        self.result = shown.text
        return True


async def seed(sessions: SessionFactory, user_ids: list[int]) -> None:
    """A province with its 2023 campaign, and one member of a grassroots union per user."""
    async with sessions() as session, session.begin():
        tree = await ninh_thuan_tree(session)
        await add_campaign(session, tree["LDLD-NT"])
        unit = await session.get(Unit, tree["CDCS-MAYNT"].id)
        assert unit is not None
        for user_id in user_ids:
            await add_member(session, unit, f"Đoàn viên {user_id}", telegram_id=user_id)


async def check_everything_handled_once(
    sessions: SessionFactory, members: list[Member], acknowledged: set[int]
) -> dict[str, int]:
    """Every acknowledged update handled, without error; one commitment per member."""
    async with sessions() as session:
        rows = (
            await session.execute(
                select(
                    InboundUpdate.update_key, InboundUpdate.processed_at, InboundUpdate.error_ref
                ).where(InboundUpdate.channel == "telegram")
            )
        ).all()
        commitments = (
            await session.execute(select(Commitment.author_id, Commitment.content))
        ).all()
    handled = {int(key) for key, processed, _ in rows if processed is not None}
    errors = [(key, ref) for key, _, ref in rows if ref is not None]
    lost = acknowledged - handled
    assert not lost, f"{len(lost)} acknowledged updates never handled: {sorted(lost)[:10]}"
    assert not errors, errors
    contents = sorted(content for _, content in commitments)
    assert contents == sorted(m.content for m in members), "one commitment each, none twice"
    assert len({member for member, _ in commitments}) == len(members)
    for member in members:
        assert member.result is not None
        assert "DK-2023-" in member.result
        assert not any(APOLOGY in m.text for m in member.answers())
    return {"handled": len(handled), "lost": len(lost), "commitments": len(commitments)}


# --- PostgreSQL restarted under traffic ------------------------------------------------------


@pytest.fixture
async def private_postgres() -> AsyncIterator[PgCluster]:
    """A PostgreSQL cluster of this test's own, which it may stop and start."""
    bin_dir = server_bin()
    if bin_dir is None:
        if IN_CI:
            pytest.fail("the PostgreSQL server binaries (initdb, pg_ctl) are needed in CI")
        pytest.skip("needs the PostgreSQL server binaries (initdb, pg_ctl)")
    cluster = PgCluster(bin_dir)
    await asyncio.to_thread(cluster.init)
    await cluster.start()
    try:
        yield cluster
    finally:
        await asyncio.to_thread(cluster.remove)


@pytest.mark.fault
async def test_postgresql_restarted_under_traffic_loses_nothing(
    private_postgres: PgCluster,
) -> None:
    rng = random.Random(20231009)
    user_ids = [7_100_000 + n for n in range(24 + BURST)]
    api = FakeTelegramAPI(TOKEN)
    await api.start()
    runtime = BotRuntime(bot_settings(private_postgres.url, api), ManualClock(T0))
    sessions = runtime.sessions
    try:
        await runtime.start(schedule=False)
        await seed(sessions, user_ids)
        async with aiohttp.ClientSession() as http:
            harness = TelegramBot(api, runtime, http)
            telegram = Telegram(http, lambda: harness.webhook_url)
            members = [Member(api, telegram, user_id) for user_id in user_ids]
            steady, burst = members[:-BURST], members[-BURST:]

            async def member_starting_at(member: Member, delay: float) -> None:
                await asyncio.sleep(delay)
                await member.register(random.Random(rng.random()))

            # A member starts every 0.6 s: before, during and after the outage (2 s to 12 s).
            traffic = [
                asyncio.create_task(member_starting_at(member, 0.6 * n))
                for n, member in enumerate(steady)
            ]
            await asyncio.sleep(2.0)
            # A burst of members writing at once: the server goes down while their stored
            # updates are being handled.
            traffic += [asyncio.create_task(member_starting_at(member, 0)) for member in burst]
            await asyncio.wait_for(asyncio.gather(*(m.started.wait() for m in burst)), 10)
            outage_from = time.monotonic()
            await private_postgres.stop()
            await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself: real time is the point
            await private_postgres.start()
            back_at = time.monotonic()
            await asyncio.wait_for(asyncio.gather(*traffic), 120)
            figures = telegram.figures
        counts = await check_everything_handled_once(sessions, members, figures.acknowledged)
        told = {
            m.user.id
            for m in members
            if any(x.text == NOTICE for x in api.sent if x.chat_id == m.user.id)
        }
        notices = [m for m in api.sent if m.text == NOTICE]
        # Told without being refused: their stored update was being handled at the stop.
        held = told - figures.refused_members
        assert runtime.telegram is not None
        outages = runtime.telegram.outage.outages
    finally:
        await runtime.stop()
        await api.stop()
    recovered_in = min(at for at in figures.acknowledged_at if at >= back_at) - back_at
    print(
        f"\nPostgreSQL down {OUTAGE_SECONDS:.0f} s under traffic: {len(members)} members, "
        f"{figures.posted} posts, {len(figures.refused_updates)} updates refused with 503 "
        f"({figures.refused} refusals) and retried, {counts['handled']} handled, "
        f"lost {counts['lost']}, duplicated 0, {len(notices)} notices to {len(told)} members, "
        f"webhook storing again {recovered_in:.2f} s after the server was back, "
        f"outage {back_at - outage_from:.1f} s, {len(held)} members whose stored update "
        "was being handled at the stop (kept, handled after recovery)"
    )
    # Updates arrived while the database was away: refused, sent again, handled once.
    assert figures.refused_updates
    assert figures.refused_members <= told, "every member refused was told once"
    assert len(notices) == len(told), "one notice per member (the clock stands still)"
    assert outages >= 1
    # Recovered by itself, within a few seconds of the server being back.
    assert recovered_in < 8.0


# --- the Bot API timing out or failing --------------------------------------------------------


@pytest.fixture
async def impatient_bot(database_url: str, clock: ManualClock) -> AsyncIterator[TelegramBot]:
    """The bot giving up on a Bot API call after 0.3 s, so a timeout test need not wait 10 s."""
    async with running_bot(database_url, clock, telegram_read_timeout=0.3) as bot:
        yield bot


@pytest.mark.fault
async def test_answers_failing_with_5xx_or_timeouts_are_retried_then_recorded(
    impatient_bot: TelegramBot, sessions: SessionFactory, clock: ManualClock
) -> None:
    bot = impatient_bot
    failing, timing_out, other = 7_200_001, 7_200_002, 7_200_003
    await seed(sessions, [failing, timing_out, other])
    statuses = iter([500, 502, 503] * MAX_ATTEMPTS)

    def server_errors(params: dict[str, Any]) -> web.Response | None:
        if int(params["chat_id"]) != failing:
            return None
        status = next(statuses)
        return web.json_response(
            {"ok": False, "error_code": status, "description": f"Server error {status}"},
            status=status,
        )

    bot.api.failures["sendMessage"] = server_errors
    bot.api.stalls[timing_out] = 1.0  # longer than the client's read timeout
    deliverer = bot.runtime.deliverer
    await deliverer.stop()  # driven round by round, with the clock

    for chat in (failing, timing_out, other):
        await bot.deliver(message_update(TgUser(chat, "X"), "/dangky"))
    # The third member is answered at once; the two failed answers wait in the outbox.
    assert any(MOVEMENT in label for label in bot.api.messages_to(other)[-1].labels)
    rows = await _outbox(sessions)
    assert [(row.status, row.attempts) for row in rows] == [(OutboxStatus.PENDING, 1)] * 2
    first_errors = [row.last_error for row in rows]
    for attempt in range(1, MAX_ATTEMPTS):
        clock.advance(backoff(attempt - 1))
        assert await deliverer.drain() == 2
        if attempt == 1:
            # Meanwhile the bot keeps serving others.
            assert await bot.user(other, "X").send("/dangky")
    rows = await _outbox(sessions)
    assert [(row.status, row.attempts) for row in rows] == [(OutboxStatus.FAILED, MAX_ATTEMPTS)] * 2
    reasons = [row.last_error for row in rows]
    clock.advance(timedelta(hours=1))
    assert await deliverer.drain() == 0  # given up
    assert bot.api.messages_to(failing) == []
    assert bot.api.messages_to(timing_out) == []
    print(f"\nfirst errors {first_errors}, recorded {reasons}")
    assert first_errors[0] is not None
    assert "500" in first_errors[0]
    assert reasons[0] is not None
    assert "Server error" in reasons[0]
    assert first_errors[1] == reasons[1] == "Timed out"


@pytest.mark.fault
async def test_zalo_answers_failing_with_502_are_retried_from_the_outbox(
    database_url: str, sessions: SessionFactory, clock: ManualClock
) -> None:
    async with running_zalo_bot(database_url, clock) as bot:
        await bot.runtime.deliverer.stop()  # driven round by round, with the clock
        user = bot.zalo_user("zl-7400001", "Lan")
        bot.zalo.failures["sendMessage"] = web.json_response(
            {"ok": False, "error_code": 502, "description": "Bad Gateway"}, status=502
        )
        assert await user.send("xin chào") == []
        [queued] = await _outbox(sessions)
        assert queued.channel == "zalo"
        assert queued.status == OutboxStatus.PENDING
        assert queued.last_error is not None
        assert "502" in queued.last_error
        del bot.zalo.failures["sendMessage"]
        assert await bot.runtime.deliverer.drain() == 0  # not before its backoff
        clock.advance(backoff(0))
        assert await bot.runtime.deliverer.drain() == 1
        [sent] = await _outbox(sessions)
        assert sent.status == OutboxStatus.SENT
        assert len(user.inbox) == 1
        assert user.inbox[0].text != NOTICE


@pytest.mark.fault
async def test_zalo_webhook_refuses_with_503_and_tells_the_member_while_postgresql_is_down(
    private_postgres: PgCluster,
) -> None:
    async with running_zalo_bot(private_postgres.url, ManualClock(T0)) as bot:
        user = bot.zalo_user("zl-7400002", "Minh")
        first = await user.send("xin chào")
        assert first
        await private_postgres.stop()
        update = ZaloBotUser(user.user.id, "Minh").update("/tro_giup")
        assert await bot.post_zalo({"ok": True, "result": update}) == 503
        assert await bot.post_zalo({"ok": True, "result": update}) == 503
        await private_postgres.start()
        notices = [m for m in user.inbox if m.text == NOTICE]
        assert len(notices) == 1, "told once, not at every refusal"
        before = len(user.inbox)
        # Sent again (by Zalo, or by the member told to): stored and answered once.
        for _ in range(100):
            if await bot.post_zalo({"ok": True, "result": update}) == 200:
                break
            await asyncio.sleep(0.1)
        await bot.wait_handled(update["message"]["message_id"])
        answers = user.inbox[before:]
        assert answers
        assert not any(APOLOGY in m.text for m in answers)
        assert await bot.post_zalo({"ok": True, "result": update}) == 200  # a redelivery


async def _outbox(sessions: SessionFactory) -> list[OutboxMessage]:
    async with sessions() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


# --- killed under traffic ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.fault
@pytest.mark.slow
async def test_a_bot_killed_under_traffic_loses_no_update_and_no_answer(
    database_url: str, tmp_path: Path
) -> None:
    rng = random.Random(20230315)
    user_ids = [7_300_000 + n for n in range(40)]
    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    await seed(sessions, user_ids)
    api = FakeTelegramAPI(TOKEN)
    await api.start()
    port = _free_port()
    bot = BotProcess(bot_env(database_url, api.base_url, TOKEN, SECRET, http_port=port), tmp_path)
    url = f"http://127.0.0.1:{port}{TELEGRAM_WEBHOOK_PATH}"
    kills = 6
    try:
        await bot.start()
        async with aiohttp.ClientSession() as http:
            telegram = Telegram(http, lambda: url)
            members = [Member(api, telegram, user_id) for user_id in user_ids]
            traffic = [
                asyncio.create_task(
                    _staggered(member, 0.15 * n, random.Random(rng.random()), sessions)
                )
                for n, member in enumerate(members)
            ]
            pending_at_kills = []
            in_flight_at_kills: list[set[int]] = []
            for _ in range(kills):
                await asyncio.sleep(rng.uniform(0.5, 2.0))
                await bot.kill()
                # Acknowledged to Telegram but not handled yet: the restart must handle these.
                pending_at_kills.append(await _unhandled(sessions))
                # Handled, answers journaled and not yet recorded sent: the restart sends these.
                in_flight_at_kills.append(await _journaled(sessions))
                await bot.start()
            await asyncio.wait_for(asyncio.gather(*traffic), 240)
            figures = telegram.figures
        counts = await check_everything_handled_once(sessions, members, figures.acknowledged)
        repeats = [text for member in members for text in _repeated(member)]
        duplicates = len(repeats)
    finally:
        await bot.stop()
        await api.stop()
        await engine.dispose()
    print(
        f"\n{bot.kills} kills under traffic: {len(members)} members, {figures.posted} posts, "
        f"{len(figures.acknowledged)} updates acknowledged, {counts['handled']} handled, "
        f"lost {counts['lost']}, {counts['commitments']} commitments (none twice), "
        f"acknowledged but unhandled at each kill {pending_at_kills}, "
        f"answers journaled and unsent at each kill {[len(ids) for ids in in_flight_at_kills]}, "
        f"{figures.restarted_flows} answers lost in a kill, {duplicates} answers twice"
    )
    assert bot.kills == kills
    # Every handled update's answer reached its member: nobody had to type /dangky again.
    assert figures.restarted_flows == 0
    # An answer goes out twice only if it was sent and not yet recorded when the bot died.
    assert duplicates <= len(set().union(*in_flight_at_kills)), repeats


async def _staggered(
    member: Member, delay: float, rng: random.Random, sessions: SessionFactory
) -> None:
    async def registered(content: str) -> bool:
        async with sessions() as session:
            found = await session.scalar(select(func.count()).where(Commitment.content == content))
        return bool(found)

    await asyncio.sleep(delay)
    # An answer whose process was killed comes from the restarted one once the dead process's
    # claims lapse (the journal's lease, 10 s) and the delivery engine looks (every 2 s).
    await member.register(rng, within=40.0, registered=registered)


async def _unhandled(sessions: SessionFactory) -> int:
    async with sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(InboundUpdate)
            .where(InboundUpdate.processed_at.is_(None))
        )
    return int(count or 0)


async def _journaled(sessions: SessionFactory) -> set[int]:
    """The answers claimed and not yet recorded sent: those a killed process may have sent."""
    async with sessions() as session:
        ids = await session.scalars(
            select(OutboxMessage.id).where(
                OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.claimed_by.is_not(None)
            )
        )
        return set(ids.all())


def _repeated(member: Member) -> list[str]:
    """The answers the member received again, identical (text and buttons) to an earlier one."""
    seen: set[tuple[str, str]] = set()
    repeated = []
    for message in member.answers():
        key = (message.text, repr(message.buttons))
        if key in seen:
            repeated.append(message.text)
        seen.add(key)
    return repeated
