"""Webhook throughput: the real bot on SQLite and PostgreSQL next to a bare PTB echo bot.

How it runs (`python -m bench.webhook`, `--quick` for a short smoke run):

* This process is the load generator. It also hosts the fake Bot API
  (`tests.fakes.telegram_api.FakeTelegramAPI`), is pinned to the CPUs other than the first and
  runs on uvloop where installed, as the bot does: on two cores it shares its core with the
  database, and every CPU-second it spends is one PostgreSQL does not get. So it posts the
  webhooks and serves the fake's answers over the lean HTTP of `bench.wire`, not aiohttp.
* The bot under test runs in a child process (`python -m bench.webhook --serve bot`, pinned to
  CPU 0): a full `BotRuntime` in webhook mode talking to the fake API. The database URL reaches
  it through the environment, the bot token is the fake one below.
* The ceiling is a child process of the same shape (`--serve echo`): a bare python-telegram-bot
  Application with no database, whose MessageHandler answers with `reply_text`, fed through the
  same aiohttp webhook route (`bot.web.telegram_webhook`) and with the same `concurrent_updates`
  and connection pool as the bot.
* Load: N simulated users, each a member with a Telegram account in the database, send "xin chào"
  through `POST /telegram/webhook` with the secret header; at most `--concurrency` updates are in
  flight and each user has at most one, so the fake API matches a sendMessage to its update by
  chat id. Latency runs from sending the POST to the fake API receiving the reply; throughput is
  completed replies per second after the first `--warmup` share of them.
* PostgreSQL runs in a scratch database created on the server at `BENCH_POSTGRES_URL` (default
  postgresql://postgres@127.0.0.1:5432/test) and dropped afterwards; SQLite in a temporary file.
  Both are migrated with `storage.migrate.upgrade`. With pinning, the PostgreSQL backends serving
  the scratch database are pinned to the load generator's CPUs as they appear: the layout is the
  bot on one core, its database (and the load) on the other. Left alone, the scheduler wakes a
  backend on the CPU of the process that queried it, the bot's, which then waits for it.
* Both server children run as `thidua run` does (`bot.serving`): on uvloop where installed, with
  the garbage collector tuned once started.

The figures go to stdout and, for full runs, into the "Webhook throughput" section of
docs/BENCHMARKS.md. Every child process is stopped and every scratch database dropped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import inspect
import itertools
import json
import os
import platform
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl

import aiohttp
import asyncpg
from aiohttp import web
from sqlalchemy.engine import URL, make_url

from bench.wire import ApiServer, WebhookClient
from bot import serving
from bot.settings import Settings, load_settings
from bot.web import TELEGRAM_SECRET_HEADER, TELEGRAM_WEBHOOK_PATH

TOKEN = "123456789:BENCH-fake_token-for-the-fake-api"
SECRET = "webhook-secret-for-the-benchmark"
TEXT = "xin chào"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parent.parent
DOC_PATH = ROOT / "docs" / "BENCHMARKS.md"
SECTION = "## Webhook throughput"
# The script rewrites only what lies between these; analysis written below them is kept.
BEGIN = "<!-- figures written by `python -m bench.webhook`; edit outside these markers -->"
END = "<!-- end of bench.webhook figures -->"
TARGET_PG_RATE = 1000.0
TARGET_ECHO_SHARE = 0.5
NOISY_SHARE = 0.15  # of one core used by unrelated processes during a run
QUIET_BUSY = 0.1  # share of the machine busy that --wait-quiet accepts
DATABASE_ENV = "BENCH_DATABASE_URL"
ECHO, SQLITE, POSTGRES = "PTB echo (ceiling)", "thidua, SQLite", "thidua, PostgreSQL"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


# --- the child processes: the bot under test and the echo ceiling --------------------------


def _pin(cpus: str | None) -> None:
    """Pin this process (and threads it starts later) to the given CPUs."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu) for cpu in cpus.split(",")})


async def _serve(mode: str, api_url: str, profile: Path | None) -> None:
    """Run the bot or the echo bot until SIGTERM, announcing its set-up on stdout."""
    from bot import logs

    logs.configure("WARNING")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await (_start_bot(api_url) if mode == "bot" else _start_echo(api_url))
    # As `thidua run` does once started; the echo bot gets the same, for a like comparison.
    serving.tune_gc()
    profiler = cProfile.Profile() if profile else None
    print(json.dumps({"port": server.port, **_client_setup(server.application)}), flush=True)
    if profiler is not None:
        profiler.enable()
    try:
        await stop.wait()
    finally:
        if profiler is not None and profile is not None:
            profiler.disable()
            profiler.dump_stats(str(profile))
        await server.shutdown()


@dataclass
class _Server:
    """A started server child: its port, its PTB Application, and how to stop it."""

    port: int
    application: Any
    shutdown: Callable[[], Awaitable[None]]


def _settings(api_url: str, database_url: str) -> Settings:
    """Return the bot's settings for the benchmark: webhook mode, against the fake API."""
    # The bot's own cap on sends per second (Telegram's limit, where the bot has that setting)
    # goes to the highest value it accepts: the benchmark measures capacity, not the cap.
    overrides: dict[str, Any] = {}
    cap = Settings.model_fields.get("telegram_rate_limit")
    if cap is not None:
        highest = [m.le for m in cap.metadata if getattr(m, "le", None) is not None]
        if highest:
            overrides["telegram_rate_limit"] = highest[0]
    # Simulated users answer as fast as the bot does: no flood control either.
    overrides |= {"flood_rate": 1000.0, "flood_burst": 1000}
    return load_settings(
        database_url=database_url,
        telegram_bot_token=TOKEN,
        telegram_api_base_url=api_url,
        telegram_webhook_url="https://bench.example/telegram/webhook",
        telegram_webhook_secret=SECRET,
        http_host="127.0.0.1",
        http_port=0,
        log_level="WARNING",
        _env_file=None,
        **overrides,
    )


def _client_setup(application: Any) -> dict[str, Any]:
    """Describe a PTB Application's concurrency and its Bot API client."""
    request = application.bot.request
    # PTB's HTTPXRequest keeps its httpx limits; the project's aiohttp transport its limit.
    limits = getattr(request, "_client_kwargs", {}).get("limits")
    pool = getattr(limits, "max_connections", None) or getattr(request, "_connections", None)
    return {
        "concurrent_updates": application.concurrent_updates,
        "client": type(request).__name__,
        "pool": pool,
    }


async def _start_bot(api_url: str) -> _Server:
    """Start the real bot in webhook mode against the fake API."""
    from bot.app import BotRuntime

    runtime = BotRuntime(_settings(api_url, os.environ[DATABASE_ENV]))
    await runtime.start()
    assert runtime.http_port is not None
    assert runtime.telegram is not None
    return _Server(runtime.http_port, runtime.telegram.application, runtime.stop)


async def _start_echo(api_url: str) -> _Server:
    """Start a bare PTB echo bot, built and served like the bot but with no database."""
    from telegram import Update
    from telegram.ext import ContextTypes, MessageHandler, filters

    from bot.telegram.channel import build_application
    from bot.web import build_web_app, telegram_webhook

    settings = _settings(api_url, "sqlite+aiosqlite://")
    concurrent = settings.telegram_concurrent_updates
    options: dict[str, Any] = {"webhook": True, "concurrent_updates": concurrent}
    if "pool_size" in inspect.signature(build_application).parameters:
        # Sized as BotRuntime.start sizes it: update handlers plus the delivery service.
        options["pool_size"] = concurrent + int(getattr(settings, "delivery_concurrency", 0))
    application = build_application(TOKEN, api_url, **options)

    async def echo(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.message is not None and update.message.text is not None:
            await update.message.reply_text(update.message.text)

    async def receive(payload: dict[str, Any]) -> None:
        await application.update_queue.put(Update.de_json(payload, application.bot))

    application.add_handler(MessageHandler(filters.TEXT, echo))
    await application.initialize()
    await application.start()
    app = build_web_app()
    app.router.add_post(TELEGRAM_WEBHOOK_PATH, telegram_webhook(SECRET, receive))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()

    async def shutdown() -> None:
        await runner.cleanup()
        await application.stop()
        await application.shutdown()

    return _Server(int(runner.addresses[0][1]), application, shutdown)


# --- the load generator --------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    """What one measured run sends."""

    users: int
    updates: int
    concurrency: int
    warmup: float
    reply_timeout: float
    run_timeout: float


@dataclass
class Result:
    """The figures of one measured run."""

    name: str
    completed: int = 0
    errors: int = 0
    measured: int = 0
    seconds: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    server_cpu: float = 0.0
    loadgen_cpu: float = 0.0
    postgres_cpu: float = 0.0
    other_cpu: float = 0.0
    note: str = ""
    all_rates: list[float] = field(default_factory=list)
    setup: str = ""

    @property
    def rate(self) -> float:
        return self.measured / self.seconds if self.seconds > 0 else 0.0

    @property
    def per_cpu_second(self) -> float:
        """Updates per CPU-second of the server: what one whole core would sustain."""
        return self.rate / self.server_cpu if self.server_cpu > 0 else 0.0


@dataclass
class _CpuMark:
    """CPU seconds used so far by the server, this process, PostgreSQL, and the machine."""

    wall: float
    server: float
    loadgen: float
    postgres: dict[str, float]
    machine: float


def _command_line(pid: str) -> str:
    """Return a process's command line as one string ("" if it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _process_seconds(pid: int | str) -> tuple[str, float]:
    """Return a process's name and the CPU seconds it has used (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            head, _, tail = stat.read().rpartition(")")
    except OSError:
        return "", 0.0
    fields = tail.split()
    name = head.partition("(")[2]
    return name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_backends(database: str | None) -> dict[str, float]:
    """Return the PostgreSQL backends serving `database`: process id and CPU seconds used."""
    backends: dict[str, float] = {}
    for entry in os.listdir("/proc") if database else ():
        name, seconds = _process_seconds(entry) if entry.isdigit() else ("", 0.0)
        if name == "postgres" and f" {database} " in _command_line(entry):
            backends[entry] = seconds
    return backends


async def _pin_postgres(database: str, cpus: set[int]) -> None:
    """Keep the backends serving `database` on `cpus` (new ones appear as the pool grows).

    Unpinned, the scheduler wakes a backend on the CPU of the process that sent it a query,
    the bot's, which then waits for it: the bot would not have its core to itself.
    """
    # Processes that are not PostgreSQL's, or backends pinned already, are not read again:
    # reading every process's files five times a second took 5 % of the load generator's CPU,
    # on the database's core. PostgreSQL's others are (a new backend shows its database only
    # once it has started).
    settled: set[str] = set()
    while True:
        entries = os.listdir("/proc")
        settled.intersection_update(entries)  # a process gone: its id may come back as a backend
        for entry in entries:
            if not entry.isdigit() or entry in settled:
                continue
            if _process_seconds(entry)[0] != "postgres":
                settled.add(entry)
            elif f" {database} " in _command_line(entry):
                with contextlib.suppress(OSError):
                    if os.sched_getaffinity(int(entry)) != cpus:
                        os.sched_setaffinity(int(entry), cpus)
                settled.add(entry)
        await asyncio.sleep(0.2)


def _cpu_mark(pid: int, database: str | None) -> _CpuMark:
    """Read the CPU time counters now; PostgreSQL's are its backends serving `database`."""
    own = os.times()
    postgres = _postgres_backends(database)
    with open("/proc/stat") as stat:
        cpu = [int(value) for value in stat.readline().split()[1:8]]
    busy = (sum(cpu) - cpu[3] - cpu[4]) / os.sysconf("SC_CLK_TCK")
    return _CpuMark(
        time.perf_counter(), _process_seconds(pid)[1], own.user + own.system, postgres, busy
    )


class RecordingAPI:
    """The fake Bot API, calling back with the arrival time of every sendMessage.

    The fake's answers, served by the lean server of `bench.wire` rather than aiohttp's: the
    load generator shares its core with PostgreSQL (see `bench.wire`).
    """

    def __init__(self) -> None:
        from tests.fakes.telegram_api import FakeTelegramAPI

        # Bench mode: the fake keeps counts, not every message and call.
        self.api = FakeTelegramAPI(TOKEN, bench=True)
        self.server = ApiServer(self._answer)
        self.on_message: Callable[[int, str, float], None] = lambda _chat, _text, _at: None
        original = self.api._api_sendmessage

        async def send_message(params: dict[str, Any]) -> Any:
            result = await original(params)
            self.on_message(int(params["chat_id"]), str(params.get("text")), time.perf_counter())
            return result

        self.api._api_sendmessage = send_message  # type: ignore[method-assign]

    async def _answer(self, token: str, method: str, body: bytes, form: bool) -> tuple[int, bytes]:
        """Answer a call as the fake's own aiohttp route does."""
        from tests.fakes.telegram_api import form_params

        if token != self.api.token:
            return 401, b'{"ok":false,"error_code":401,"description":"Unauthorized"}'
        if form:
            params = form_params(parse_qsl(body.decode(), keep_blank_values=True))
        else:
            decoded = json.loads(body) if body else {}
            params = dict(decoded) if isinstance(decoded, dict) else {}
        result = await self.api.answer(method, params)
        if isinstance(result, web.Response):
            assert isinstance(result.body, bytes)
            return result.status, result.body
        return 200, json.dumps({"ok": True, "result": result}).encode()

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


async def _load(
    name: str,
    port: int,
    pid: int,
    api: RecordingAPI,
    params: Params,
    user_ids: Sequence[int],
    expected: str,
    database: str | None,
    postgres_cpus: str | None,
) -> Result:
    """Send the updates with bounded concurrency and measure throughput and latency."""
    from tests.factories import TgUser, message_update

    loop = asyncio.get_running_loop()
    result = Result(name)
    waiting: dict[int, asyncio.Future[float]] = {}
    done: list[tuple[float, float]] = []  # (reply arrival, latency)
    warm = max(int(params.updates * params.warmup), 1)
    marks: list[_CpuMark] = []
    unexpected: list[str] = []
    stopped = False

    def on_message(chat_id: int, text: str, at: float) -> None:
        if text != expected:
            unexpected.append(text)
        future = waiting.pop(chat_id, None)
        if future is not None and not future.done():
            future.set_result(at)

    api.on_message = on_message
    headers = {TELEGRAM_SECRET_HEADER: SECRET, "Content-Type": "application/json"}
    numbers = iter(range(params.updates))
    deadline = time.perf_counter() + params.run_timeout
    gate = asyncio.Semaphore(params.concurrency)
    update_ids = itertools.count(1_000_000)

    async def user(http: WebhookClient, tg: TgUser) -> None:
        nonlocal stopped
        while next(numbers, None) is not None:
            if time.perf_counter() > deadline:
                stopped = True
                return
            async with gate:
                body = json.dumps(message_update(tg, TEXT, update_id=next(update_ids))).encode()
                future: asyncio.Future[float] = loop.create_future()
                waiting[tg.id] = future
                sent = time.perf_counter()
                try:
                    status = await asyncio.wait_for(http.post(body), params.reply_timeout)
                    if status != 200:
                        raise RuntimeError(f"webhook answered {status}")
                    arrived = await asyncio.wait_for(future, params.reply_timeout)
                except (TimeoutError, RuntimeError, OSError):
                    waiting.pop(tg.id, None)
                    result.errors += 1
                    continue
                done.append((arrived, arrived - sent))
                if len(done) == warm:
                    marks.append(_cpu_mark(pid, database))

    users = [TgUser(user_id, f"Đoàn viên {index}") for index, user_id in enumerate(user_ids)]
    pinning = (
        asyncio.create_task(_pin_postgres(database, {int(cpu) for cpu in postgres_cpus.split(",")}))
        if database is not None and postgres_cpus is not None
        else None
    )
    http = WebhookClient("127.0.0.1", port, TELEGRAM_WEBHOOK_PATH, headers)
    try:
        await asyncio.gather(*(user(http, tg) for tg in users))
    finally:
        http.close()
        if pinning is not None:
            pinning.cancel()
    end = _cpu_mark(pid, database)
    result.completed = len(done)
    notes = []
    if result.errors:
        notes.append(f"{result.errors} updates failed or timed out")
    if stopped:
        notes.append(f"stopped at the {params.run_timeout:.0f} s limit")
    if unexpected:
        notes.append(f"{len(unexpected)} unexpected replies, e.g. {unexpected[0][:60]!r}")
    result.note = "; ".join(notes)
    if len(done) <= warm + 1 or not marks:
        result.note = result.note or "too few replies to measure"
        return result
    done.sort()
    measured = done[warm:]
    start = marks[0]
    result.measured = len(measured)
    result.seconds = measured[-1][0] - done[warm - 1][0]
    latencies = sorted(latency for _, latency in measured)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    result.p50_ms = statistics.median(latencies) * 1000
    result.p99_ms = cuts[98] * 1000
    wall = end.wall - start.wall
    result.server_cpu = (end.server - start.server) / wall
    result.loadgen_cpu = (end.loadgen - start.loadgen) / wall
    # Backends that ended within the window are missed; ones that started count in full.
    postgres = sum(used - start.postgres.get(key, 0.0) for key, used in end.postgres.items())
    result.postgres_cpu = max(postgres, 0.0) / wall
    machine = (end.machine - start.machine) / wall
    result.other_cpu = max(
        machine - result.server_cpu - result.loadgen_cpu - result.postgres_cpu, 0.0
    )
    return result


# --- orchestration -------------------------------------------------------------------------


@dataclass
class Options:
    """The command line, parsed."""

    params: Params
    server_cpus: str | None
    loadgen_cpus: str | None
    backends: list[str]
    echo: bool
    write: Path | None
    profile_dir: Path | None
    pg_url: str
    command: str
    wait_quiet: float
    log_dir: Path | None
    repeat: int
    skipped: list[str] = field(default_factory=list)


def _cpu_sets(pin: bool) -> tuple[str | None, str | None]:
    """Split this process's CPUs: the first for the server child, the rest for load."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return str(cpus[0]), ",".join(str(cpu) for cpu in cpus[1:])


async def _start_child(
    mode: str,
    api_url: str,
    env: dict[str, str],
    cpus: str | None,
    profile: Path | None,
    log: IO[bytes],
) -> asyncio.subprocess.Process:
    """Launch a server child process, its standard error going to `log`."""
    args = [sys.executable, "-m", "bench.webhook", "--serve", mode, "--api-url", api_url]
    if cpus is not None:
        args += ["--cpus", cpus]
    if profile is not None:
        args += ["--profile", str(profile)]
    return await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=log, env={**os.environ, **env}
    )


async def _wait_ready(child: asyncio.subprocess.Process) -> dict[str, Any]:
    """Read the child's announcement of its port and set-up, then wait for its health check."""
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), READY_TIMEOUT)
    if not line:
        raise RuntimeError(f"the server process exited with status {await child.wait()}")
    announced: dict[str, Any] = json.loads(line)
    port = int(announced["port"])
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return announced
            await asyncio.sleep(0.1)
    raise RuntimeError("the server process never became healthy")


async def _stop_child(child: asyncio.subprocess.Process) -> None:
    """Stop a child process: SIGTERM, then SIGKILL if it lingers."""
    if child.returncode is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(child.wait(), STOP_TIMEOUT)
    except TimeoutError:
        child.kill()
        await child.wait()


async def _machine_busy(seconds: float) -> float:
    """Return the share of the machine's CPU time that was busy over `seconds`."""

    def sample() -> list[int]:
        with open("/proc/stat") as stat:
            return [int(value) for value in stat.readline().split()[1:8]]

    before = sample()
    await asyncio.sleep(seconds)
    delta = [after - first for first, after in zip(before, sample(), strict=True)]
    return 1 - (delta[3] + delta[4]) / max(sum(delta), 1)


async def _wait_for_quiet(limit: float) -> None:
    """Wait up to `limit` seconds for other work on the machine to calm down."""
    deadline = time.monotonic() + limit
    while (busy := await _machine_busy(1.0)) > QUIET_BUSY:
        if time.monotonic() > deadline:
            print(f"the machine is still {busy:.0%} busy; measuring anyway", flush=True)
            return


async def _measure(
    name: str, mode: str, options: Options, user_ids: Sequence[int], env: dict[str, str]
) -> Result:
    """Run one server child under load and return its figures."""
    if options.wait_quiet > 0:
        await _wait_for_quiet(options.wait_quiet)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    profile = options.profile_dir / f"{slug}.prof" if options.profile_dir is not None else None
    assert options.log_dir is not None
    log_path = options.log_dir / f"{slug}.log"
    api = RecordingAPI()
    await api.start()
    child: asyncio.subprocess.Process | None = None
    try:
        with log_path.open("wb") as log:
            child = await _start_child(mode, api.base_url, env, options.server_cpus, profile, log)
        try:
            announced = await _wait_ready(child)
        except (RuntimeError, TimeoutError, ValueError) as error:
            raise RuntimeError(f"{name}: {error}; its log:\n{_tail(log_path)}") from None
        result = await _load(
            name,
            int(announced["port"]),
            child.pid,
            api,
            options.params,
            user_ids,
            _expected_reply(mode),
            _postgres_database(env),
            options.loadgen_cpus,
        )
        result.setup = (
            f"{announced.get('concurrent_updates')} concurrent updates, Bot API client "
            f"{announced.get('client')} with up to {announced.get('pool')} connections"
        )
    finally:
        if child is not None:
            await _stop_child(child)
        await api.stop()
    logged = _log_summary(log_path)
    if logged:
        result.note = "; ".join(part for part in (result.note, logged) if part)
    print(_row(result), flush=True)
    return result


_LOG_PROBLEM = re.compile(r" (WARNING|ERROR|CRITICAL) ([\w.]+: .*)")


def _log_summary(path: Path) -> str:
    """Summarise the warnings and errors a server child logged, or return ""."""
    problems = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if match := _LOG_PROBLEM.search(line):
            problems.append(f"{match[1]} {match[2]}")
    if not problems:
        return ""
    return f"server logged {len(problems)} warnings/errors, first: {problems[0][:100]}"


def _tail(path: Path, lines: int = 20) -> str:
    """Return the last lines of a log file."""
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _postgres_database(env: dict[str, str]) -> str | None:
    """Return the name of the PostgreSQL database a server child uses, if any."""
    url = env.get(DATABASE_ENV)
    if url is None or make_url(url).get_backend_name() != "postgresql":
        return None
    return make_url(url).database


def _expected_reply(mode: str) -> str:
    """Return the text the server should answer each update with."""
    if mode == "echo":
        return TEXT
    from handlers.i18n import Catalogue

    return Catalogue.load()("hint.free_text")


def _user_ids(count: int) -> list[int]:
    """Return the Telegram ids of the simulated users."""
    return [700_000_000 + index for index in range(count)]


async def _seed(database_url: str, user_ids: Sequence[int]) -> None:
    """Migrate the database; add a unit, and per simulated user a member who has chatted."""
    from sqlalchemy import select

    from storage import conversations
    from storage.engine import create_engine, create_session_factory
    from storage.migrate import upgrade
    from storage.models import ChannelAccount
    from tests.builders import T0, add_member, add_unit

    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        sessions = create_session_factory(engine)
        async with sessions() as session, session.begin():
            unit = await add_unit(session, "CDCS-BENCH", "Công đoàn cơ sở Công ty Đo Tải")
            for index, user_id in enumerate(user_ids):
                await add_member(session, unit, f"Đoàn viên {index}", telegram_id=user_id)
            # Members who joined have talked to the bot: their conversation rows exist.
            for account_id in await session.scalars(select(ChannelAccount.id)):
                await conversations.load(session, account_id, T0)
    finally:
        await engine.dispose()


def _admin_dsn(url: URL) -> str:
    """Return a plain libpq DSN for asyncpg from a SQLAlchemy URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _postgres_version(pg_url: str) -> str | None:
    """Return the PostgreSQL server's version, or None if it is unreachable."""
    with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
        connection = await asyncpg.connect(_admin_dsn(make_url(pg_url)), timeout=5)
        try:
            return str(await connection.fetchval("SHOW server_version"))
        finally:
            await connection.close()
    return None


async def _run_sqlite(options: Options, user_ids: Sequence[int]) -> Result:
    """Measure the bot on a fresh SQLite file."""
    with tempfile.TemporaryDirectory(prefix="thidua-bench-") as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}"
        await _seed(url, user_ids)
        return await _measure(SQLITE, "bot", options, user_ids, {DATABASE_ENV: url})


async def _run_postgres(options: Options, user_ids: Sequence[int]) -> Result | None:
    """Measure the bot on a scratch PostgreSQL database, or return None if unreachable."""
    admin = make_url(options.pg_url)
    name = f"thidua_bench_{uuid.uuid4().hex[:10]}"
    try:
        connection = await asyncpg.connect(_admin_dsn(admin), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        where = admin.render_as_string(hide_password=True)
        line = f"PostgreSQL skipped: unreachable at {where} ({type(error).__name__})"
        print(line, flush=True)
        options.skipped.append(line)
        return None
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    url = admin.set(drivername="postgresql+asyncpg", database=name)
    env = {DATABASE_ENV: url.render_as_string(hide_password=False)}
    try:
        await _seed(env[DATABASE_ENV], user_ids)
        return await _measure(POSTGRES, "bot", options, user_ids, env)
    finally:
        await _drop_database(admin, name)


async def _drop_database(admin: URL, name: str) -> None:
    """Drop the scratch database, saying so if that fails."""
    try:
        connection = await asyncpg.connect(_admin_dsn(admin), timeout=5)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        print(f"could not drop the scratch database {name}: {error}", file=sys.stderr)


async def _run(options: Options) -> int:
    """Run every configured measurement, print the table, and record it."""
    # SIGTERM and SIGINT cancel the run, so that children and databases are cleaned up.
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    if options.log_dir is not None:
        options.log_dir.mkdir(parents=True, exist_ok=True)
        return await _run_all(options)
    with tempfile.TemporaryDirectory(prefix="thidua-bench-logs-") as directory:
        options.log_dir = Path(directory)
        return await _run_all(options)


async def _run_all(options: Options) -> int:
    """Measure each configuration `repeat` times, alternating, and report the best runs."""
    _pin(options.loadgen_cpus)
    params = options.params
    user_ids = _user_ids(params.users)
    print(
        f"{params.users} users, {params.updates} updates per run, "
        f"{params.concurrency} in flight, first {params.warmup:.0%} discarded",
        flush=True,
    )
    print(_header(), flush=True)
    runs: dict[str, list[Result]] = {}
    shares: dict[str, list[float]] = {}  # each run against the echo run of its round
    for _round in range(options.repeat):
        measured: list[Result | None] = []
        if options.echo:
            measured.append(await _measure(ECHO, "echo", options, user_ids, {}))
        if "sqlite" in options.backends:
            measured.append(await _run_sqlite(options, user_ids))
        if "postgresql" in options.backends and not options.skipped:
            measured.append(await _run_postgres(options, user_ids))
        for result in measured:
            if result is not None:
                runs.setdefault(result.name, []).append(result)
        echo = measured[0] if options.echo else None
        for result in measured:
            if echo is not None and result is not None and result is not echo and echo.rate > 0:
                shares.setdefault(result.name, []).append(result.rate / echo.rate)
    results = [_best(each) for each in runs.values()]
    if options.repeat > 1:
        print(f"best of {options.repeat} runs:")
        for result in results:
            print(_row(result))
    verdicts = _verdicts(results) + _paired(shares)
    for line in verdicts:
        print(line)
    if options.write is not None:
        section = _section(options, results, verdicts, await _postgres_version(options.pg_url))
        _replace_section(options.write, section)
        print(f"wrote {options.write}")
    return 0


# --- reporting -----------------------------------------------------------------------------


def _best(runs: Sequence[Result]) -> Result:
    """Pick the fastest of repeated runs, remembering every run's rate."""
    best = max(runs, key=lambda result: result.rate)
    best.all_rates = [result.rate for result in runs]
    return best


_COLUMNS = (
    "run",
    "updates/s",
    "per CPU-s",
    "p50 ms",
    "p99 ms",
    "replies",
    "errors",
    "server CPU",
    "loadgen CPU",
    "PG CPU",
    "other CPU",
)


def _cells(result: Result) -> list[str]:
    return [
        result.name,
        f"{result.rate:.0f}",
        f"{result.per_cpu_second:.0f}",
        f"{result.p50_ms:.1f}",
        f"{result.p99_ms:.1f}",
        str(result.completed),
        str(result.errors),
        f"{result.server_cpu:.0%}",
        f"{result.loadgen_cpu:.0%}",
        f"{result.postgres_cpu:.0%}",
        f"{result.other_cpu:.0%}",
    ]


_WIDTHS = (20, 10, 10, 8, 8, 8, 7, 11, 12, 8, 10)


def _header() -> str:
    return "".join(
        f"{name:<{width}}" if index == 0 else f"{name:>{width}}"
        for index, (name, width) in enumerate(zip(_COLUMNS, _WIDTHS, strict=True))
    )


def _row(result: Result) -> str:
    line = "".join(
        f"{cell:<{width}}" if index == 0 else f"{cell:>{width}}"
        for index, (cell, width) in enumerate(zip(_cells(result), _WIDTHS, strict=True))
    )
    return f"{line}  {result.note}".rstrip()


def _verdicts(results: Sequence[Result]) -> list[str]:
    """Say plainly whether each target is met."""
    by_name = {result.name: result for result in results}
    echo = by_name.get(ECHO)
    pg = by_name.get(POSTGRES)
    lines = []
    if pg is None:
        lines.append("Target ≥ 1,000 updates/s on PostgreSQL: not measured (PostgreSQL skipped).")
    else:
        met = "met" if pg.rate >= TARGET_PG_RATE else "NOT met"
        lines.append(f"Target ≥ 1,000 updates/s on PostgreSQL: {met} ({pg.rate:.0f} updates/s).")
    for result in results:
        if echo is None or result is echo or echo.rate <= 0:
            continue
        share = result.rate / echo.rate
        met = "met" if share >= TARGET_ECHO_SHARE else "NOT met"
        lines.append(
            f"Target ≥ half the echo ceiling, {result.name}: {met} "
            f"({result.rate:.0f} of {echo.rate:.0f} updates/s, {share:.0%})."
        )
    setups = {result.setup for result in results}
    if len(setups) > 1:
        lines.append(
            "Warning: the echo bot's PTB set-up differs from the bot's: "
            + "; ".join(f"{result.name}: {result.setup}" for result in results)
            + "."
        )
    noisy = [f"{r.name} {r.other_cpu:.0%}" for r in results if r.other_cpu > NOISY_SHARE]
    if noisy:
        lines.append(
            "Warning: other processes used CPU during the runs (share of one core: "
            + ", ".join(noisy)
            + "); the figures are lower than on a quiet machine."
        )
    return lines


def _paired(shares: dict[str, list[float]]) -> list[str]:
    """Report each run against the echo run of its round, less open to the machine's drift."""
    return [
        f"Each run against the echo run of its round (under a minute apart; the best runs above "
        f"may be minutes apart), {name}: {', '.join(f'{share:.1%}' for share in each)}, "
        f"median {statistics.median(each):.1%}."
        for name, each in shares.items()
        if len(each) > 1
    ]


def _setup_line(results: Sequence[Result]) -> str:
    """Describe the PTB set-up of the measured servers."""
    setups = {result.setup for result in results if result.setup}
    if len(setups) == 1:
        return f"python-telegram-bot with {setups.pop()} in every run"
    return "python-telegram-bot with " + "; ".join(f"{r.name}: {r.setup}" for r in results)


def _cap_note() -> str:
    """Say how the bot's cap on sends per second was set, if it has one."""
    cap = (
        _settings("http://127.0.0.1", "sqlite+aiosqlite://").model_dump().get("telegram_rate_limit")
    )
    if cap is None:
        return ""
    return f"; its cap on sends per second (telegram_rate_limit) raised to the maximum, {cap}"


# What a run's figures depend on: the application and the benchmark itself.
_MEASURED_CODE = ("bot", "handlers", "storage", "scheduler", "bench")


def _code_version() -> str:
    """Name the commit measured, and say whether the code or the benchmark had local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", *_MEASURED_CODE],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown (no git)"
    if not head:
        return "unknown (not a git work tree)"
    return f"commit {head}" + (" with uncommitted changes" if changed else "")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _section(
    options: Options, results: Sequence[Result], verdicts: Sequence[str], pg_version: str | None
) -> str:
    """Render the "Webhook throughput" section of docs/BENCHMARKS.md."""
    params = options.params
    pinned = (
        f"the server child pinned to CPU {options.server_cpus}; the load generator, the "
        f"fake API and the PostgreSQL backends serving the benchmark's database to CPU "
        f"{options.loadgen_cpus}"
        if options.server_cpus is not None
        else "no CPU pinning"
    )
    columns = [*_COLUMNS, "every run, updates/s"]
    table = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|",
    ]
    for result in results:
        every = ", ".join(f"{rate:.0f}" for rate in result.all_rates)
        table.append("| " + " | ".join([*_cells(result), every]) + " |")
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{options.command}`.",
        "",
        f"- Code: {_code_version()}.",
        f"- Machine: {os.cpu_count()} CPUs ({_cpu_model()}), Linux {platform.release()}, "
        f"Python {platform.python_version()}.",
        f"- Software: python-telegram-bot {_version('python-telegram-bot')}, "
        f"SQLAlchemy {_version('SQLAlchemy')}, aiohttp {_version('aiohttp')}, "
        f"httpx {_version('httpx')}, asyncpg {_version('asyncpg')}, "
        f"aiosqlite {_version('aiosqlite')}, SQLite {sqlite3.sqlite_version}, "
        f"PostgreSQL {pg_version or 'not reachable'} (same machine).",
        f"- Load: {params.users} simulated users (all members with a Telegram account), "
        f"{params.updates} updates per run, at most {params.concurrency} in flight, "
        f'each a private text "{TEXT}"; the first {params.warmup:.0%} of replies are discarded '
        "as warm-up. "
        + (
            f"Each configuration ran {options.repeat} times, alternating; the table shows the "
            "fastest run."
            if options.repeat > 1
            else "Each configuration ran once."
        ),
        f"- Layout: {pinned}. The fake Bot API runs in the load generator's process; both"
        " speak HTTP through `bench.wire` (keep-alive connections, httptools' parser), not"
        " aiohttp, to leave the second core to PostgreSQL.",
        f"- Bot: webhook mode, {_setup_line(results)}{_cap_note()}.",
        "- Latency: from sending the webhook POST to the fake API receiving the reply's "
        "sendMessage; measured at saturation, so it is mostly queueing. Throughput: replies per "
        "second after warm-up; per CPU-s: the same divided by the server child's CPU share, what "
        "it would sustain with a whole core to itself. CPU columns: share of one core used during "
        "the measured part by the server child, the load generator (with the fake API), "
        "the PostgreSQL backends serving the benchmark's database, and everything else on the "
        'machine; a large "other CPU" means '
        "the machine was not quiet and the figures are low.",
        "",
        *table,
        "",
        *(f"- {line}" for line in (*verdicts, *options.skipped)),
        "",
    ]
    return "\n".join(lines)


def _replace_section(path: Path, figures: str) -> None:
    """Put the figures into the file's section, keeping what people wrote around them."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if not text.strip():
        text = "# Benchmarks\n\nFigures from the benchmarks under `bench/`, one section each.\n"
    generated = f"{BEGIN}\n\n{figures.strip()}\n\n{END}"
    section = re.compile(rf"^{re.escape(SECTION)}[ \t]*\n.*?(?=^## |\Z)", re.M | re.S)
    found = section.search(text)
    if found is None:
        text = f"{text.rstrip()}\n\n{SECTION}\n\n{generated}\n"
    else:
        old = found.group(0)
        if BEGIN in old and END in old:
            before, _, rest = old.partition(BEGIN)
            _, _, after = rest.partition(END)
            new = before + generated + after
        else:
            new = f"{SECTION}\n\n{generated}\n\n"
        text = text[: found.start()] + new + text[found.end() :]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


# --- the command line ----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.webhook",
        description="Measure webhook throughput and latency of the bot and of a PTB echo bot.",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (not recorded)")
    parser.add_argument("--users", type=int, help="simulated users (default 1000, quick 300)")
    parser.add_argument("--updates", type=int, help="updates per run (default 3000, quick 1000)")
    parser.add_argument("--concurrency", type=int, default=64, help="updates in flight")
    parser.add_argument(
        "--repeat", type=int, help="runs of each configuration, best kept (default 2, quick 1)"
    )
    parser.add_argument("--warmup", type=float, default=0.05, help="share of replies discarded")
    parser.add_argument("--reply-timeout", type=float, default=15.0, help="seconds per reply")
    parser.add_argument(
        "--run-timeout", type=float, default=60.0, help="stop sending after this many seconds"
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=["sqlite", "postgresql"],
        help="measure only this backend (repeatable; default both)",
    )
    parser.add_argument("--no-echo", action="store_true", help="skip the echo ceiling")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--write", type=Path, help="record the figures in this file (default docs/BENCHMARKS.md)"
    )
    parser.add_argument("--no-write", action="store_true", help="only print the figures")
    parser.add_argument("--profile-dir", type=Path, help="cProfile each server child into DIR")
    parser.add_argument("--log-dir", type=Path, help="keep the server children's logs in DIR")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each run, wait up to this long for the machine to be idle",
    )
    parser.add_argument("--serve", choices=["bot", "echo"], help=argparse.SUPPRESS)
    parser.add_argument("--api-url", help=argparse.SUPPRESS)
    parser.add_argument("--cpus", help=argparse.SUPPRESS)
    parser.add_argument("--profile", type=Path, help=argparse.SUPPRESS)
    return parser


def _options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str]
) -> Options:
    users = args.users or (300 if args.quick else 1000)
    updates = args.updates or (1000 if args.quick else 3000)
    args.repeat = args.repeat or (1 if args.quick else 2)
    if min(users, updates, args.concurrency, args.repeat) < 1 or not 0 <= args.warmup < 0.5:
        parser.error("users, updates, concurrency, repeat must be positive; warmup in [0, 0.5)")
    write = args.write
    if write is None and not args.quick and not args.no_write:
        write = DOC_PATH
    if args.no_write:
        write = None
    if args.profile_dir is not None:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    server_cpus, loadgen_cpus = _cpu_sets(not args.no_pin)
    return Options(
        params=Params(
            users=users,
            updates=updates,
            concurrency=args.concurrency,
            warmup=args.warmup,
            reply_timeout=args.reply_timeout,
            run_timeout=args.run_timeout,
        ),
        server_cpus=server_cpus,
        loadgen_cpus=loadgen_cpus,
        backends=args.backend or ["sqlite", "postgresql"],
        echo=not args.no_echo,
        write=write,
        profile_dir=args.profile_dir,
        pg_url=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_PG_URL),
        wait_quiet=args.wait_quiet,
        log_dir=args.log_dir,
        repeat=args.repeat,
        command=" ".join([".venv/bin/python -m bench.webhook", *argv]),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, or one server child with --serve."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.serve is not None:
        _pin(args.cpus)
        # On the event loop `thidua run` uses, the echo bot as well, for a like comparison.
        serving.run(_serve(args.serve, args.api_url, args.profile))
        return 0
    options = _options(parser, args, argv)
    try:
        # The load generator's own CPU competes with the database for the second core.
        return serving.run(_run(options))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; the server processes were stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
