"""Broadcast delivery: the real bot draining a big broadcast against Telegram's limits.

Run: `.venv/bin/python -m bench.broadcast` (full, about 8 minutes; writes
bench/results-broadcast.md) or `--quick` (a smoke run of about a minute; prints only).

* Each delivery run creates a scratch PostgreSQL database on the server at BENCH_POSTGRES_URL
  (default postgresql://postgres@127.0.0.1:5432/test), migrates it, adds N members with a
  Telegram account each (bulk INSERT … SELECT), ANALYZEs, and queues one broadcast to all of
  them with `storage.broadcasts.queue`.
* The fake Bot API (`tests.fakes.telegram_api.FakeTelegramAPI` in bench mode) runs in this
  process, enforcing Telegram's limits (30 messages/s, 1,000/s with paid broadcasts, 1/s per
  chat with a burst of 3) and answering every request after 50 ms.
* The bot runs as a child process, `python -m bot run` in webhook mode, with
  TELEGRAM_RATE_LIMIT at the limit under test and the delivery settings given. Its peak memory
  is /proc/<pid>/status VmHWM read just before it is stopped.
* Then a million members are queued: one more scratch database, 1,000,000 members with accounts
  over 1,000 grassroots units, ANALYZE, and `storage.broadcasts.queue` timed with its commit.
  The same is timed on a few thousand members without fresh statistics (just loaded, not yet
  analysed), where the plan PostgreSQL picks is quadratic.

Every child process is stopped and every scratch database dropped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

from storage.engine import SessionFactory, create_engine, create_session_factory
from storage.migrate import upgrade
from storage.models import Member, OutboxMessage, OutboxStatus, Unit, UnitKind
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
DEFAULT_CONCURRENCY = "64,160"  # the default DELIVERY_CONCURRENCY, then one that can reach 1,000/s


@dataclass(frozen=True)
class Scenario:
    """One delivery run: how many recipients at which limit, with which bot settings."""

    name: str
    recipients: int
    limit: int
    concurrency: int = 64
    lease: int = 60


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


async def analyse(sessions: SessionFactory) -> None:
    async with sessions() as session, session.begin():
        await session.execute(text("ANALYZE units, members, channel_accounts"))


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


def _per_second(api: FakeTelegramAPI) -> tuple[float, int]:
    """Return the median count of the busy whole seconds, and how many seconds were idle."""
    seconds = sorted(api.delivery_seconds)
    if len(seconds) < 3:
        return api.delivered / max(len(seconds), 1), 0
    inner = range(seconds[0] + 1, seconds[-1])  # the first and last are partial
    busy = [api.delivery_seconds[second] for second in inner if api.delivery_seconds[second]]
    idle = len(inner) - len(busy)
    return (statistics.median(busy) if busy else 0.0), idle


async def deliver(server_url: str, scenario: Scenario, workdir: Path) -> Delivery:
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
            async with sessions() as session:
                expected = set(
                    (
                        await session.scalars(
                            text("SELECT CAST(chat_id AS BIGINT) FROM channel_accounts")
                        )
                    ).all()
                )
            await api.start()
            bot.env["TELEGRAM_API_BASE_URL"] = api.base_url
            busy_before = _busy_ticks()
            started = time.monotonic()
            await bot.start()
            # Generous: a fifth of the limit, plus start-up.
            deadline = started + 60 + scenario.recipients / (scenario.limit * 0.2)
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


async def time_queue(
    server_url: str, recipients: int, *, analysed: bool, limit: float = 120.0
) -> Queueing:
    """Load `recipients` members, then time queueing a broadcast to all of them."""
    async with scratch_database(server_url) as url:
        engine = create_engine(url)
        sessions = create_session_factory(engine)
        try:
            started = time.perf_counter()
            author, root, _ = await populate(sessions, recipients, min(LEAVES, recipients))
            if analysed:
                await analyse(sessions)
            load_seconds = time.perf_counter() - started
            async with sessions() as session:
                try:
                    async with session.begin():
                        await session.execute(
                            text(f"SET LOCAL statement_timeout = {int(limit * 1000)}")
                        )
                        started = time.perf_counter()
                        _, queued = await queue_broadcast(
                            session, author, root, TEXT, datetime.now(UTC)
                        )
                except Exception as error:
                    if "statement timeout" not in str(error):
                        raise
                    return Queueing(recipients, load_seconds, limit, analysed, finished=False)
                seconds = time.perf_counter() - started
            assert queued == recipients, queued
            return Queueing(recipients, load_seconds, seconds, analysed)
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
        "database), TELEGRAM_RATE_LIMIT = the limit; a broadcast to every recipient queued "
        "before it starts. Drain and rate: from the first message the fake accepted to the "
        "last; sustained: the median of the whole seconds in which messages went out; idle: "
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
            f"| {d.peak_kib / 1024:.0f} | {1000 * d.bot_cpu / max(d.delivered, 1):.2f} "
            f"| {d.machine_busy:.0%} |"
        )
    lines += [
        "",
        "| queueing | recipients | statistics | load s | queue s (with commit) | rows/s |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for q in queueings:
        when = "fresh (ANALYZE)" if q.analysed else "none (just loaded)"
        took = f"{q.seconds:.2f}" if q.finished else f"> {q.seconds:.0f} (cancelled)"
        rows = f"{q.recipients / q.seconds:,.0f}" if q.finished else "–"
        lines.append(
            f"| `storage.broadcasts.queue` | {q.recipients:,} | {when} | {q.load_seconds:.1f} "
            f"| {took} | {rows} |"
        )
    lines += ["", "Targets:", ""]
    for d in deliveries:
        s = d.scenario
        lines.append(
            f"- {s.name}: ≥ {TARGET_SHARE:.0%} of {s.limit}/s {_mark(d.share >= TARGET_SHARE)} "
            f"({d.share:.1%}); 0 duplicates {_mark(d.duplicates == 0)} ({d.duplicates}); "
            f"0 losses {_mark(d.losses == 0)} ({d.losses}); "
            f"< {TARGET_MEMORY_MB:.0f} MB {_mark(d.peak_kib / 1024 < TARGET_MEMORY_MB)} "
            f"({d.peak_kib / 1024:.0f} MB)."
        )
    for q in queueings:
        if q.analysed and q.recipients >= 1_000_000:
            ok = q.finished and q.seconds <= TARGET_QUEUE_SECONDS
            lines.append(
                f"- {q.recipients:,} queued in ≤ {TARGET_QUEUE_SECONDS:.0f} s {_mark(ok)} "
                f"({q.seconds:.2f} s)."
            )
    lines.append(f"- The benchmark process (fake API, polling) used {own_cpu:.1f} s of CPU.")
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------------


def _scenarios(quick: bool, concurrencies: Sequence[int]) -> list[Scenario]:
    paid, free = (10_000, 300) if quick else (100_000, 1_500)
    runs = [Scenario("paid 1,000/s", paid, 1000, concurrency=concurrencies[0])]
    for extra in concurrencies[1:]:
        runs.append(Scenario(f"paid 1,000/s, c={extra}", paid * 2 // 5, 1000, concurrency=extra))
    runs.append(Scenario("free 30/s", free, 30, concurrency=concurrencies[0]))
    return runs


async def run(options: argparse.Namespace) -> str:
    server_url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_PG_URL)
    pg_version = await _pg_version(server_url)
    concurrencies = [int(c) for c in options.concurrency.split(",")]
    deliveries = []
    with tempfile.TemporaryDirectory(prefix="bench-broadcast-") as workdir:
        logs = options.logs or Path(workdir)
        for scenario in _scenarios(options.quick, concurrencies):
            print(f"delivering: {scenario}", flush=True)
            result = await deliver(server_url, scenario, logs)
            print(
                f"  {result.rate:.0f}/s ({result.share:.1%}), sustained "
                f"{result.sustained_share:.1%}, idle {result.idle_seconds} s, "
                f"{result.too_many} 429s, {result.duplicates} duplicates, {result.losses} "
                f"losses, {result.statuses}, peak {result.peak_kib / 1024:.0f} MB, "
                f"start-up {result.startup_seconds:.1f} s, queue {result.queue_seconds:.2f} s",
                flush=True,
            )
            deliveries.append(result)
    queueings = []
    sizes = [(100_000, True)] if options.quick else [(1_000_000, True), (2_000, False)]
    if not options.quick:
        sizes.append((4_000, False))
    for recipients, analysed in sizes:
        print(f"queueing {recipients:,} (statistics: {analysed})", flush=True)
        queueing = await time_queue(server_url, recipients, analysed=analysed, limit=60)
        print(f"  loaded in {queueing.load_seconds:.1f} s, queued in {queueing.seconds:.2f} s")
        queueings.append(queueing)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    command = ".venv/bin/python -m bench.broadcast" + (" --quick" if options.quick else "")
    if options.concurrency != DEFAULT_CONCURRENCY:
        command += f" --concurrency {options.concurrency}"
    return report(command, pg_version, deliveries, queueings, usage.ru_utime + usage.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.broadcast", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run; prints only")
    parser.add_argument(
        "--concurrency",
        default=DEFAULT_CONCURRENCY,
        help="DELIVERY_CONCURRENCY of the main runs, then of extra paid runs (2/5 the size)",
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
