"""Measure what handling one message costs the bot: CPU time, or instructions (callgrind).

The webhook benchmark (`bench.webhook`) measures the whole bot against a ceiling, but on a
shared virtual machine its figures move by ±20 % from run to run. This one runs only the
bot's own per-message path, in one process and without HTTP: the update stored in the inbox
(group commit), claimed and handled with its sender loaded (`Dispatcher.handle`), the answer
journaled, and the journal row finished, 32 messages at a time, on a scratch database.
With `--instructions` it counts the instructions that path executes per message under
valgrind's callgrind, which are the same from run to run whatever else the machine does:
run it on two commits to compare them.

    python -m bench.handling [--backend postgresql|sqlite] [--messages N] [--instructions]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from bench.webhook import (
    DEFAULT_PG_URL,
    TEXT,
    _admin_dsn,
    _drop_database,
    _seed,
    _settings,
    _user_ids,
)
from bot import serving

USERS = 1000
IN_FLIGHT = 32
WARMUP = 300
# Instructions are counted for two runs of different lengths: their difference per message
# leaves out start-up, imports and the warm-up.
SHORT, LONG = 300, 900


async def _handle_messages(database_url: str, warmup: int, messages: int) -> tuple[float, float]:
    """Run the per-message path; return CPU seconds and wall seconds of the measured part."""
    from bot.app import BotRuntime
    from handlers.types import Incoming
    from storage.inbox import InboxWriter

    runtime = BotRuntime(_settings("http://127.0.0.1:9", database_url))
    dispatcher = runtime.dispatcher
    journal = dispatcher.journal_replies("telegram")
    writer = InboxWriter(runtime.sessions, runtime.clock, turns=dispatcher.turns)
    users = _user_ids(USERS)
    first = time.time_ns() // 1000  # update ids unique across runs on one database
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(n: int) -> None:
        async with slots:
            user = users[n % len(users)]
            update_id = first + n
            payload = {
                "update_id": update_id,
                "message": {
                    "message_id": n,
                    "date": 1_700_000_000,
                    "chat": {"id": user, "type": "private", "first_name": "Đoàn viên"},
                    "from": {"id": user, "is_bot": False, "first_name": "Đoàn viên"},
                    "text": TEXT,
                },
            }
            await writer.store("telegram", str(update_id), payload)
            incoming = Incoming(
                channel="telegram",
                user_id=str(user),
                chat_id=str(user),
                update_key=str(update_id),
                text=TEXT,
                display_name="Đoàn viên",
            )
            outcome = await dispatcher.handle(incoming)
            await journal.finish(outcome.journal_ids)

    try:
        await asyncio.gather(*(one(n) for n in range(warmup)))
        serving.tune_gc()  # as `thidua run` does once started
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(warmup, warmup + messages)))
        return time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await runtime.engine.dispose()


async def _scratch_postgres(pg_url: str) -> tuple[str, str]:
    """Create and seed a scratch database; return its name and URL."""
    admin = make_url(pg_url)
    name = f"thidua_bench_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(_admin_dsn(admin), timeout=5)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    url = admin.set(drivername="postgresql+asyncpg", database=name)
    rendered = url.render_as_string(hide_password=False)
    await _seed(rendered, _user_ids(USERS))
    return name, rendered


def _instructions(database_url: str, messages: int) -> int:
    """Run the path in a child under callgrind; return the instructions it executed."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.handling",
        "--child",
        database_url,
        "--messages",
        str(messages),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


async def _measure(backend: str, pg_url: str, messages: int, instructions: bool) -> str:
    """Measure on a fresh database of `backend`; return the line to print."""
    directory = tempfile.mkdtemp(prefix="thidua-bench-")
    name = None
    try:
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}"
            await _seed(url, _user_ids(USERS))
        else:
            name, url = await _scratch_postgres(pg_url)
        if instructions:
            short = await asyncio.to_thread(_instructions, url, SHORT)
            long = await asyncio.to_thread(_instructions, url, LONG)
            per = (long - short) / (LONG - SHORT)
            return f"{backend}: {per / 1e6:.3f} million instructions per message"
        cpu, wall = await _handle_messages(url, WARMUP, messages)
        return (
            f"{backend}: {cpu / messages * 1e6:.0f} µs of CPU per message, "
            f"{messages / wall:.0f} messages/s ({messages} messages, {IN_FLIGHT} at a time)"
        )
    finally:
        if name is not None:
            await _drop_database(make_url(pg_url), name)
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.handling", description=__doc__)
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], action="append")
    parser.add_argument("--messages", type=int, default=5000, help="messages measured")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions with callgrind"
    )
    parser.add_argument("--child", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        cpu, _wall = serving.run(_handle_messages(args.child, WARMUP, args.messages))
        print(f"{cpu:.3f}")
        return 0
    if args.instructions and shutil.which("valgrind") is None:
        print("--instructions needs valgrind on the PATH", file=sys.stderr)
        return 2
    pg_url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_PG_URL)
    for backend in args.backend or ["postgresql", "sqlite"]:
        line = serving.run(_measure(backend, pg_url, args.messages, args.instructions))
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
