"""Run the real bot (`python -m bot run`) as a child process that can be killed at any moment."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import BigInteger, String, cast, func, insert, literal, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.types import Reply
from storage import broadcasts
from storage.engine import create_engine, create_session_factory
from storage.models import (
    Broadcast,
    BroadcastStatus,
    ChannelAccount,
    Member,
    MemberStatus,
    OutboxMessage,
    OutboxStatus,
    Role,
    Unit,
)
from tests.builders import T0

ROOT = Path(__file__).resolve().parent.parent
# The settings a child must not inherit from whoever runs the tests.
_OWN_PREFIXES = (
    "TELEGRAM_",
    "DATABASE_",
    "DELIVERY_",
    "HTTP_",
    "LOG_LEVEL",
    "TIMEZONE",
    "QUIET_",
)


def bot_env(
    database_url: str, api_base_url: str, token: str, secret: str, **settings: object
) -> dict[str, str]:
    """Environment for a bot in webhook mode on a free port, talking to a (fake) Bot API.

    Extra settings are given by name, e.g. `telegram_rate_limit=1000`.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": database_url,
            "TELEGRAM_BOT_TOKEN": token,
            "TELEGRAM_API_BASE_URL": api_base_url,
            "TELEGRAM_WEBHOOK_URL": "https://thidua.example/telegram/webhook",
            "TELEGRAM_WEBHOOK_SECRET": secret,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": "0",
            "LOG_LEVEL": "WARNING",
            # The child reads the real clock: a test must not depend on the hour it runs at.
            "QUIET_HOURS": "",
        }
    )
    env.update({name.upper(): str(value) for name, value in settings.items()})
    return env


class BotProcess:
    """One bot child process at a time: start, SIGKILL, restart, stop; its log kept in a file.

    It runs in `workdir` so that no `.env` file of the repository is read.
    """

    def __init__(
        self,
        env: dict[str, str],
        workdir: Path,
        *,
        name: str = "bot",
        command: tuple[str, ...] = ("-m", "bot", "run"),
        cpus: set[int] | None = None,
    ) -> None:
        self.env = env
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self._command = command
        self._cpus = cpus
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.kills = 0

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        """Start the child; its output goes to the log file, appended across restarts."""
        assert not self.alive, "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        cpus = self._cpus

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1} at {time.time():.3f}\n".encode())
            log.flush()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *self._command,
                env=self.env,
                cwd=self.workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=pin if cpus else None,
            )
        self.starts += 1

    async def kill(self) -> None:
        """SIGKILL the child, as a crash or an out-of-memory killer would, and reap it."""
        if self.process is None:
            return
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            self.kills += 1
        await self.process.wait()

    async def stop(self, grace: float = 15.0) -> int | None:
        """Stop the child with SIGTERM (SIGKILL after `grace` seconds); return its exit status."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(signal.SIGKILL)
                await self.process.wait()
        return self.process.returncode

    def status_kib(self, field: str) -> int | None:
        """Read a /proc/<pid>/status field in KiB (VmHWM: peak RSS, VmRSS: current RSS)."""
        if not self.alive:
            return None
        try:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith(f"{field}:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def cpu_seconds(self) -> float | None:
        """Return the child's user + system CPU time so far."""
        if not self.alive:
            return None
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 40) -> str:
        """Return the end of the child's log, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# --- a broadcast to many recipients, written straight into the database ---------------------


async def add_recipients(session: AsyncSession, unit: Unit, count: int, *, chat_base: int) -> None:
    """Add `count` active members to `unit`, each with a Telegram account, in two statements.

    Member n (from 1) is "Đoàn viên n"; its chat id is `chat_base` plus its member id.
    """
    seq = select(literal(1).label("n")).cte("seq", recursive=True)
    seq = seq.union_all(select(seq.c.n + 1).where(seq.c.n < count))
    members = Member.__table__.c
    number = cast(seq.c.n, String)
    await session.execute(
        insert(Member).from_select(
            [
                "full_name",
                "name_folded",
                "unit_id",
                "role",
                "status",
                "consent_at",
                "consent_version",
                "created_at",
            ],
            select(
                literal("Đoàn viên ") + number,
                literal("doan vien ") + number,
                literal(unit.id),
                literal(Role.MEMBER, members.role.type),
                literal(MemberStatus.ACTIVE, members.status.type),
                literal(T0, members.created_at.type),
                literal("1"),
                literal(T0, members.created_at.type),
            ).select_from(seq),
        )
    )
    chat_id = cast(Member.id + literal(chat_base, BigInteger), String)
    await session.execute(
        insert(ChannelAccount).from_select(
            [
                "channel",
                "external_id",
                "chat_id",
                "member_id",
                "display_name",
                "reachable",
                "last_seen_at",
                "created_at",
            ],
            select(
                literal("telegram"),
                chat_id,
                chat_id,
                Member.id,
                Member.full_name,
                true(),
                literal(T0, members.created_at.type),
                literal(T0, members.created_at.type),
            ).where(Member.unit_id == unit.id),
        )
    )


async def queue_broadcast(
    session: AsyncSession, author: Member, scope: Unit, text: str, now: datetime
) -> tuple[Broadcast, int]:
    """Create a broadcast from `author` to everyone under `scope` and queue it now."""
    broadcast = Broadcast(
        author_id=author.id,
        scope_unit_id=scope.id,
        payload=Reply(text).to_dict(),
        audience=broadcasts.Audience("everyone").to_dict(),
        status=BroadcastStatus.SCHEDULED,
        created_at=now,
    )
    session.add(broadcast)
    await session.flush()
    queued = await broadcasts.queue(session, broadcast, scope, now)
    return broadcast, queued


async def outbox_counts(database_url: str) -> dict[str, int]:
    """Count the outbox rows by status, from outside the bot processes."""
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            rows = await session.execute(
                select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
            )
            return {OutboxStatus(status).value: int(n) for status, n in rows.all()}
    finally:
        await engine.dispose()
