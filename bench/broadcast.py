"""Broadcast delivery: the real bot draining a big broadcast against Telegram's limits.

Run: `.venv/bin/python -m bench.broadcast` (full, 6 to 12 minutes; writes
bench/results-broadcast.md) or `--quick` (a smoke run of about a minute; prints only).

* Each delivery run creates a scratch PostgreSQL database on the server at BENCH_POSTGRES_URL
  (default postgresql://postgres@127.0.0.1:5432/test), migrates it, adds N members with a
  Telegram account each (bulk INSERT … SELECT), ANALYZEs, and queues one broadcast to all of
  them with `storage.broadcasts.queue`.
* The fake Bot API (`tests.fakes.telegram_api.FakeTelegramAPI` in bench mode) runs in this
  process, enforcing Telegram's limits (30 messages/s, 1,000/s with paid broadcasts, 1/s per
  chat with a burst of 3) and answering every request after 50 ms.
* The bot runs as a child process, `python -m bot run` in webhook mode, with
  TELEGRAM_RATE_LIMIT at the limit under test, no quiet hours, and DELIVERY_CONCURRENCY fitted
  to the limit (see `fitting_concurrency`); one shorter paid run keeps the bot's default to
  show why. Its peak memory is /proc/<pid>/status VmHWM read just before it is stopped.
* Then a million members are queued: one more scratch database, 1,000,000 members with accounts
  over 1,000 grassroots units, ANALYZE, and `storage.broadcasts.queue` timed with its commit,
  after a CHECKPOINT so that each timing starts alike. The same is timed on a few thousand
  members without
  fresh statistics (just loaded, not yet analysed), where a bad plan once made it quadratic.

Every child process is stopped and every scratch database dropped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import asyncpg
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from bot.settings import Settings
from handlers.types import Reply
from storage import broadcasts, outbox
from storage.engine import SessionFactory, create_engine, create_session_factory
from storage.migrate import upgrade
from storage.models import (
    Broadcast,
    BroadcastStatus,
    Member,
    OutboxMessage,
    OutboxStatus,
    Unit,
    UnitKind,
)
from tests.bot_process import BotProcess, add_recipients, bot_env, queue_broadcast
from tests.builders import add_member, add_unit
from tests.fakes.telegram_api import FakeLimits, FakeTelegramAPI

TOKEN = "123456789:BENCH-broadcast_token-for-the-fake"
SECRET = "webhook-secret-for-the-broadcast-bench"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results-broadcast.md"
TEXT = "Thông báo: Đại hội Công đoàn cơ sở họp lúc 8 giờ thứ Hai. Đề nghị đoàn viên dự đầy đủ."
CHAT_BASE = 7_000_000_000
LATENCY = 0.05
TARGET_SHARE = 0.97
TARGET_QUEUE_SECONDS = 10.0
TARGET_MEMORY_MB = 200.0
LEAVES = 1000  # grassroots units the million members are spread over
NOTES = "\n### Findings"  # where the hand-written part of the results file starts
BOT_DEFAULT_CONCURRENCY = int(Settings.model_fields["delivery_concurrency"].default)
# A sending slot is held for the API's answer, then until the outcome is written: the next
# flush (every 50 ms) and its commit, about 0.1 s more. Claims between batches and each
# batch's tail leave some slots idle, hence a little headroom; not more, because a bot whose
# limiter is always full sends bursts that jitter pushes past the fake's exact bucket, and
# each 429 pauses the whole channel for a second.
SLOT_HELD_AFTER_ANSWER = 0.1
HEADROOM = 1.1
QUIET_BUSY = 0.1  # share of the machine busy that --wait-quiet accepts


def fitting_concurrency(limit: int) -> int:
    """Return a DELIVERY_CONCURRENCY that can keep `limit` messages a second in flight."""
    needed = limit * (LATENCY + SLOT_HELD_AFTER_ANSWER) * HEADROOM
    return max(BOT_DEFAULT_CONCURRENCY, math.ceil(needed / 10) * 10)


@dataclass(frozen=True)
class Scenario:
    """One delivery run: how many recipients at which limit, with which bot settings."""

    name: str
    recipients: int
    limit: int
    concurrency: int = 64
    lease: int = 60
    target: bool = True  # False: shown for comparison, not held to the targets


@dataclass
class Delivery:
    """What one delivery run measured."""

    scenario: Scenario
    queue_seconds: float = 0.0
    startup_seconds: float = 0.0
    drain_seconds: float = 0.0
    rate: float = 0.0  # first to last delivery
    sustained_rate: float = 0.0  # median of the whole seconds in which messages went out
    idle_seconds: int = 0  # whole seconds between the first and the last with none
    delivered: int = 0
    too_many: int = 0
    duplicates: int = 0
    losses: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    peak_kib: int = 0
    started_kib: int = 0
    bot_cpu: float = 0.0
    machine_busy: float = 0.0
    timed_out: bool = False
    claim_stale: float = 0.0  # one claim of a batch before the outbox is analysed
    claim_fresh: float = 0.0  # and after

    @property
    def share(self) -> float:
        return self.rate / self.scenario.limit

    @property
    def sustained_share(self) -> float:
        return self.sustained_rate / self.scenario.limit


@dataclass
class Queueing:
    """How long `storage.broadcasts.queue` took."""

    recipients: int
    load_seconds: float
    seconds: float
    analysed: bool
    finished: bool = True
    audience: str = "everyone"


# --- scratch databases --------------------------------------------------------------------------


def _admin_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def scratch_database(server_url: str) -> AsyncIterator[str]:
    """Create a migrated scratch database, yield its asyncpg URL, and drop it afterwards."""
    name = f"bench_broadcast_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_admin_dsn(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = (
        make_url(server_url)
        .set(drivername="postgresql+asyncpg", database=name)
        .render_as_string(hide_password=False)
    )
    try:
        engine = create_engine(url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
        yield url
    finally:
        admin = await asyncpg.connect(_admin_dsn(server_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def populate(
    sessions: SessionFactory, recipients: int, leaves: int
) -> tuple[Member, Unit, list[Unit]]:
    """Add a province, `leaves` grassroots units, an author without account and the members."""
    async with sessions() as session, session.begin():
        root = await add_unit(session, "LDLD", "Liên đoàn Lao động tỉnh", kind=UnitKind.PROVINCE)
        author = await add_member(session, root, "Trần Văn Minh")
        units = []
        for number in range(leaves):
            units.append(
                await add_unit(session, f"CDCS-{number}", f"Công đoàn cơ sở {number}", parent=root)
            )
    per_unit, extra = divmod(recipients, leaves)
    for index, unit in enumerate(units):
        async with sessions() as session, session.begin():
            count = per_unit + (1 if index < extra else 0)
            if count:
                await add_recipients(session, unit, count, chat_base=CHAT_BASE)
    return author, root, units


async def analyse(
    sessions: SessionFactory, tables: str = "units, members, channel_accounts"
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(text(f"ANALYZE {tables}"))


async def time_claim(sessions: SessionFactory, limit: int) -> float:
    """Time one `storage.outbox.claim` of `limit` messages, rolled back."""
    async with sessions() as session:
        await session.begin()
        now = datetime.now(UTC)
        started = time.perf_counter()
        await outbox.claim(
            session, channel="telegram", worker="bench", now=now, until=now, limit=limit
        )
        took = time.perf_counter() - started
        await session.rollback()
    return took


# --- delivery runs ------------------------------------------------------------------------------


async def _outbox_statuses(sessions: SessionFactory) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        )
        return {OutboxStatus(status).value: int(n) for status, n in rows.all()}


def _busy_ticks() -> tuple[int, int]:
    with open("/proc/stat") as stat:
        values = [int(value) for value in stat.readline().split()[1:8]]
    return sum(values) - values[3] - values[4], sum(values)


async def wait_for_quiet(limit: float) -> None:
    """Wait up to `limit` seconds for other work on the machine to calm down."""
    deadline = time.monotonic() + limit
    while limit > 0:
        before = _busy_ticks()
        await asyncio.sleep(1.0)
        after = _busy_ticks()
        busy = (after[0] - before[0]) / max(after[1] - before[1], 1)
        if busy <= QUIET_BUSY:
            return
        if time.monotonic() > deadline:
            print(f"the machine is still {busy:.0%} busy; measuring anyway", flush=True)
            return


def _per_second(api: FakeTelegramAPI) -> tuple[float, int]:
    """Return the median count of the busy whole seconds, and how many seconds were idle."""
    seconds = sorted(api.delivery_seconds)
    if len(seconds) < 3:
        return api.delivered / max(len(seconds), 1), 0
    inner = range(seconds[0] + 1, seconds[-1])  # the first and last are partial
    busy = [api.delivery_seconds[second] for second in inner if api.delivery_seconds[second]]
    idle = len(inner) - len(busy)
    return (statistics.median(busy) if busy else 0.0), idle


async def deliver(
    server_url: str, scenario: Scenario, workdir: Path, *, wait_quiet: float = 0.0
) -> Delivery:
    """Queue a broadcast, let a bot child drain it through the limiting fake, and measure."""
    result = Delivery(scenario)
    async with scratch_database(server_url) as url:
        engine = create_engine(url)
        sessions = create_session_factory(engine)
        api = FakeTelegramAPI(
            TOKEN,
            limits=FakeLimits(per_second=30, paid_per_second=1000, latency=LATENCY),
            bench=True,
        )
        bot = BotProcess(
            bot_env(
                url,
                "",
                TOKEN,
                SECRET,
                telegram_rate_limit=scenario.limit,
                delivery_concurrency=scenario.concurrency,
                delivery_lease_seconds=scenario.lease,
                quiet_hours="",  # the bench must not depend on the hour it runs at
            ),
            workdir,
            name="bot-" + "".join(c if c.isalnum() else "-" for c in scenario.name),
        )
        try:
            author, root, _ = await populate(sessions, scenario.recipients, 100)
            await analyse(sessions)
            async with sessions() as session, session.begin():
                started = time.perf_counter()
                _, queued = await queue_broadcast(session, author, root, TEXT, datetime.now(UTC))
            result.queue_seconds = time.perf_counter() - started
            assert queued == scenario.recipients, queued
            # A claim as the bot makes it, before and after the new rows are analysed (the
            # server's autovacuum may be off; with it on, statistics lag by up to a minute).
            result.claim_stale = await time_claim(sessions, scenario.concurrency * 8)
            await analyse(sessions, "outbox")
            result.claim_fresh = await time_claim(sessions, scenario.concurrency * 8)
            async with sessions() as session:
                expected = set(
                    (
                        await session.scalars(
                            text("SELECT CAST(chat_id AS BIGINT) FROM channel_accounts")
                        )
                    ).all()
                )
            await wait_for_quiet(wait_quiet)
            await api.start()
            bot.env["TELEGRAM_API_BASE_URL"] = api.base_url
            busy_before = _busy_ticks()
            started = time.monotonic()
            await bot.start()
            # Bounded: 40 % of the limit, plus a minute (start-up, one lapsed claim).
            deadline = started + 60 + scenario.recipients / (scenario.limit * 0.4)
            while api.delivered == 0 and time.monotonic() < deadline and bot.alive:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            result.startup_seconds = time.monotonic() - started
            result.started_kib = bot.status_kib("VmRSS") or 0
            while len(api.deliveries) < scenario.recipients and bot.alive:
                if time.monotonic() > deadline:
                    result.timed_out = True
                    break
                await asyncio.sleep(0.05)
            while bot.alive and not result.timed_out:
                statuses = await _outbox_statuses(sessions)
                if not statuses.get("pending") or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            if not bot.alive:
                raise RuntimeError(f"the bot exited: {bot.log_tail()}")
            result.peak_kib = bot.status_kib("VmHWM") or 0
            result.bot_cpu = bot.cpu_seconds() or 0.0
            busy_after = _busy_ticks()
        finally:
            await bot.stop()
            await api.stop()
            await engine.dispose()
        if api.first_delivery_at is not None and api.last_delivery_at is not None:
            result.drain_seconds = api.last_delivery_at - api.first_delivery_at
            result.rate = api.delivered / max(result.drain_seconds, 1e-9)
        result.sustained_rate, result.idle_seconds = _per_second(api)
        result.delivered = api.delivered
        result.too_many = api.too_many_requests
        result.duplicates = api.duplicates
        result.losses = len(expected - api.deliveries.keys())
        engine = create_engine(url)
        try:
            result.statuses = await _outbox_statuses(create_session_factory(engine))
        finally:
            await engine.dispose()
        ticks = busy_after[1] - busy_before[1]
        result.machine_busy = (busy_after[0] - busy_before[0]) / max(ticks, 1)
    return result


# --- queueing a million -------------------------------------------------------------------------


async def _checkpoint(sessions: SessionFactory) -> None:
    """Write out dirty pages so that every timing starts from the same state (if allowed)."""
    with contextlib.suppress(Exception):
        async with sessions() as session:
            await session.execute(text("CHECKPOINT"))


async def _time_one(
    sessions: SessionFactory,
    author: Member,
    root: Unit,
    recipients: int,
    limit: float,
    audience: broadcasts.Audience | None = None,
) -> float | None:
    """Time one `queue` (to everyone unless told) with its commit; None past `limit` s."""
    async with sessions() as session:
        try:
            async with session.begin():
                await session.execute(text(f"SET LOCAL statement_timeout = {int(limit * 1000)}"))
                started = time.perf_counter()
                now = datetime.now(UTC)
                if audience is None:
                    _, queued = await queue_broadcast(session, author, root, TEXT, now)
                else:
                    broadcast = Broadcast(
                        author_id=author.id,
                        scope_unit_id=root.id,
                        payload=Reply(TEXT).to_dict(),
                        audience=audience.to_dict(),
                        status=BroadcastStatus.SCHEDULED,
                        created_at=now,
                    )
                    session.add(broadcast)
                    await session.flush()
                    queued = await broadcasts.queue(session, broadcast, root, now)
        except Exception as error:
            if "statement timeout" not in str(error):
                raise
            return None
        seconds = time.perf_counter() - started
    assert queued == recipients, queued
    return seconds


async def time_queue(
    server_url: str,
    recipients: int,
    *,
    analysed: bool,
    limit: float = 120.0,
    small_audience: bool = False,
    wait_quiet: float = 0.0,
) -> list[Queueing]:
    """Load `recipients` members, then time queueing a broadcast to all of them.

    With `small_audience`, also time a broadcast to one grassroots unit among them.
    """
    async with scratch_database(server_url) as url:
        engine = create_engine(url)
        sessions = create_session_factory(engine)
        try:
            started = time.perf_counter()
            author, root, units = await populate(sessions, recipients, min(LEAVES, recipients))
            if analysed:
                await analyse(sessions)
            load_seconds = time.perf_counter() - started
            await _checkpoint(sessions)
            await wait_for_quiet(wait_quiet)
            seconds = await _time_one(sessions, author, root, recipients, limit)
            results = [
                Queueing(
                    recipients,
                    load_seconds,
                    limit if seconds is None else seconds,
                    analysed,
                    finished=seconds is not None,
                )
            ]
            if small_audience:
                # A small audience in a big database: only its members should be read.
                unit = units[len(units) // 2]
                members = recipients // len(units)
                audience = broadcasts.Audience("units", unit_paths=(unit.path,))
                seconds = await _time_one(sessions, author, root, members, limit, audience)
                results.append(
                    Queueing(
                        members,
                        load_seconds,
                        limit if seconds is None else seconds,
                        analysed,
                        finished=seconds is not None,
                        audience=f"one grassroots unit of the {recipients:,}",
                    )
                )
            return results
        finally:
            await engine.dispose()


# --- report -------------------------------------------------------------------------------------


def _versions() -> str:
    names = ["python-telegram-bot", "httpx", "aiohttp", "SQLAlchemy", "asyncpg", "aiolimiter"]
    found = []
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name} {metadata.version(name)}")
    return ", ".join(found)


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        if not head:
            return f"the tree at {ROOT} (not a git checkout)"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"commit {head} with uncommitted changes" if dirty else f"commit {head}"


async def _pg_version(server_url: str) -> str:
    connection = await asyncpg.connect(_admin_dsn(server_url))
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


def _per_message(d: Delivery) -> str:
    return f"{1000 * d.bot_cpu / d.delivered:.2f}" if d.delivered else "–"


def _mark(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def report(
    code: str,
    command: str,
    pg_version: str,
    deliveries: Sequence[Delivery],
    queueings: Sequence[Queueing],
    own_cpu: float,
) -> str:
    """Format the figures as the Markdown section for docs/BENCHMARKS.md."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Broadcast delivery",
        "",
        f"Measured {now} with `{command}`.",
        "",
        f"- Code: {code}.",
        f"- Machine: {os.cpu_count()} CPUs ({_cpu_model()}), Linux {platform.release()}, "
        f"Python {platform.python_version()}; PostgreSQL {pg_version} on the same machine.",
        f"- Software: {_versions()}.",
        "- Fake Bot API (in the benchmark process): Telegram's limits enforced as token buckets "
        "(30 messages/s; 1,000/s for sends with allow_paid_broadcast; 1/s per chat, burst 3), "
        f"429 with retry_after beyond them, every answer after {LATENCY * 1000:.0f} ms.",
        "- Bot: `python -m bot run` as a child process, webhook mode, PostgreSQL (a scratch "
        "database), TELEGRAM_RATE_LIMIT = the limit, no quiet hours, DELIVERY_CONCURRENCY "
        f"fitted to the limit: rate × ({LATENCY:g} s latency + {SLOT_HELD_AFTER_ANSWER:g} s) "
        f"× {HEADROOM:g}, at least the default {BOT_DEFAULT_CONCURRENCY} (a comparison run "
        "keeps the default); a broadcast to every recipient queued "
        "before it starts, and the outbox analysed then (see the claim table). Drain and "
        "rate: from the first message the fake accepted to the last; sustained: the median "
        "of the whole seconds in which messages went out; idle: "
        "whole seconds in between in which none did. Peak memory: VmHWM of the bot process; "
        "machine busy: share of all CPUs busy during the run (other work on the machine "
        "included).",
        "",
        "| run | recipients | limit/s | concurrency | drain s | rate/s | of limit | sustained "
        "of limit | idle s | 429s | duplicates | losses | outbox | peak MB | bot CPU ms/msg "
        "| machine busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for d in deliveries:
        s = d.scenario
        outbox = ", ".join(f"{k} {v}" for k, v in sorted(d.statuses.items()))
        lines.append(
            f"| {s.name}{' (timed out)' if d.timed_out else ''} | {s.recipients:,} | {s.limit} "
            f"| {s.concurrency} | {d.drain_seconds:.1f} | {d.rate:.0f} | {d.share:.1%} "
            f"| {d.sustained_share:.1%} | {d.idle_seconds} "
            f"| {d.too_many} | {d.duplicates} | {d.losses} | {outbox} "
            f"| {d.peak_kib / 1024:.0f} | {_per_message(d)} "
            f"| {d.machine_busy:.0%} |"
        )
    lines += [
        "",
        "| claim (`storage.outbox.claim`, one batch) | pending | batch | outbox not analysed s "
        "| analysed s |",
        "|---|---:|---:|---:|---:|",
    ]
    for d in deliveries:
        s = d.scenario
        lines.append(
            f"| {s.name} | {s.recipients:,} | {s.concurrency * 8} | {d.claim_stale:.3f} "
            f"| {d.claim_fresh:.3f} |"
        )
    lines += [
        "",
        "Queueing: members loaded and analysed (or not, where marked), then a CHECKPOINT, then "
        "`storage.broadcasts.queue` timed with its commit.",
        "",
        "| queueing | audience | recipients | statistics | load s "
        "| queue s (with commit) | rows/s |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for q in queueings:
        when = "fresh (ANALYZE)" if q.analysed else "none (just loaded)"
        took = f"{q.seconds:.2f}" if q.finished else f"> {q.seconds:.0f} (cancelled)"
        rows = f"{q.recipients / q.seconds:,.0f}" if q.finished else "–"
        lines.append(
            f"| `storage.broadcasts.queue` | {q.audience} | {q.recipients:,} | {when} "
            f"| {q.load_seconds:.1f} | {took} | {rows} |"
        )
    lines += ["", "Targets:", ""]
    for d in deliveries:
        s = d.scenario
        if not s.target:
            lines.append(
                f"- {s.name}: shown for comparison, not a target run ({d.share:.1%} of the "
                f"limit; {d.duplicates} duplicates, {d.losses} losses)."
            )
            continue
        lines.append(
            f"- {s.name}: ≥ {TARGET_SHARE:.0%} of {s.limit}/s {_mark(d.share >= TARGET_SHARE)} "
            f"({d.share:.1%}); 0 duplicates {_mark(d.duplicates == 0)} ({d.duplicates}); "
            f"0 losses {_mark(d.losses == 0)} ({d.losses}); "
            f"< {TARGET_MEMORY_MB:.0f} MB {_mark(d.peak_kib / 1024 < TARGET_MEMORY_MB)} "
            f"({d.peak_kib / 1024:.0f} MB)."
        )
    for q in queueings:
        if q.analysed and q.recipients >= 1_000_000 and q.audience == "everyone":
            ok = q.finished and q.seconds <= TARGET_QUEUE_SECONDS
            lines.append(
                f"- {q.recipients:,} queued in ≤ {TARGET_QUEUE_SECONDS:.0f} s {_mark(ok)} "
                f"({q.seconds:.2f} s)."
            )
    lines.append(f"- The benchmark process (fake API, polling) used {own_cpu:.1f} s of CPU.")
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------------


def _scenarios(quick: bool, paid_concurrency: int, compare: Sequence[int]) -> list[Scenario]:
    paid, free = (10_000, 300) if quick else (100_000, 1_500)
    runs = [Scenario("paid 1,000/s", paid, 1000, concurrency=paid_concurrency)]
    for extra in compare:
        runs.append(
            Scenario(f"paid 1,000/s, c={extra}", paid // 5, 1000, concurrency=extra, target=False)
        )
    runs.append(Scenario("free 30/s", free, 30, concurrency=fitting_concurrency(30)))
    return runs


async def run(options: argparse.Namespace) -> str:
    server_url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_PG_URL)
    pg_version = await _pg_version(server_url)
    compare = [int(c) for c in options.compare.split(",") if c.strip()]
    paid_concurrency = options.concurrency or fitting_concurrency(1000)
    deliveries = []
    with tempfile.TemporaryDirectory(prefix="bench-broadcast-") as workdir:
        logs = options.logs or Path(workdir)
        for scenario in _scenarios(options.quick, paid_concurrency, compare):
            print(f"delivering: {scenario}", flush=True)
            result = await deliver(server_url, scenario, logs, wait_quiet=options.wait_quiet)
            print(
                f"  {result.rate:.0f}/s ({result.share:.1%}), sustained "
                f"{result.sustained_share:.1%}, idle {result.idle_seconds} s, "
                f"{result.too_many} 429s, {result.duplicates} duplicates, {result.losses} "
                f"losses, {result.statuses}, peak {result.peak_kib / 1024:.0f} MB, "
                f"start-up {result.startup_seconds:.1f} s, queue {result.queue_seconds:.2f} s, "
                f"claim {result.claim_stale:.3f} s stale, {result.claim_fresh:.3f} s analysed",
                flush=True,
            )
            deliveries.append(result)
    queueings = []
    sizes = [(100_000, True)] if options.quick else [(1_000_000, True), (2_000, False)]
    if not options.quick:
        sizes.append((4_000, False))
    for recipients, analysed in sizes:
        print(f"queueing {recipients:,} (statistics: {analysed})", flush=True)
        for queueing in await time_queue(
            server_url,
            recipients,
            analysed=analysed,
            limit=60,
            small_audience=analysed,
            wait_quiet=options.wait_quiet,
        ):
            print(
                f"  {queueing.audience}: loaded in {queueing.load_seconds:.1f} s, queued in "
                f"{queueing.seconds:.2f} s",
                flush=True,
            )
            queueings.append(queueing)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    command = ".venv/bin/python -m bench.broadcast" + (" --quick" if options.quick else "")
    if options.concurrency:
        command += f" --concurrency {options.concurrency}"
    if options.wait_quiet:
        command += f" --wait-quiet {options.wait_quiet:g}"
    if options.compare != str(BOT_DEFAULT_CONCURRENCY):
        command += f" --compare {options.compare}"
    code = options.code_label or _commit()
    return report(code, command, pg_version, deliveries, queueings, usage.ru_utime + usage.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.broadcast", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run; prints only")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="DELIVERY_CONCURRENCY of the paid run (default: fitted to 1,000/s)",
    )
    parser.add_argument(
        "--compare",
        default=str(BOT_DEFAULT_CONCURRENCY),
        help="DELIVERY_CONCURRENCY of extra paid runs, 1/5 the size, comma-separated "
        "(default: the bot's default; empty for none)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each measurement, wait up to this long for the machine to be idle",
    )
    parser.add_argument(
        "--code-label", default=None, help="how to name the code measured (default: git HEAD)"
    )
    parser.add_argument("--logs", type=Path, default=None, help="keep the bot logs here")
    parser.add_argument("--write", type=Path, default=None, help=f"default: {RESULTS} (full runs)")
    options = parser.parse_args(argv)
    text_out = asyncio.run(run(options))
    print()
    print(text_out)
    target = options.write or (None if options.quick else RESULTS)
    if target is not None:
        # Notes written by hand below the figures survive a new run.
        old = target.read_text(encoding="utf-8") if target.exists() else ""
        notes = old[old.find(NOTES) :] if NOTES in old else ""
        target.write_text(text_out + ("\n" + notes if notes else ""), encoding="utf-8")
        print(f"written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
