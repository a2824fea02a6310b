"""The delivery service: pushes queued outbox messages through their channels."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels import Channel, RetryLaterError, UnreachableError
from bot.logs import redact
from handlers.types import Reply
from storage import accounts, outbox
from storage import conversations as conversation_store
from storage.clock import Clock
from storage.engine import SessionFactory
from storage.models import OutboxStatus

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


class Deliverer:
    """Drain the outbox, oldest first, whenever woken and every few seconds."""

    def __init__(
        self,
        sessions: SessionFactory,
        channels: Mapping[str, Channel],
        clock: Clock,
        *,
        idle_poll: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._channels = channels
        self._clock = clock
        self._idle_poll = idle_poll
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retry_pause = 0.0

    def wake(self) -> None:
        """Ask for a look at the outbox now."""
        self._wakeup.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="deliverer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def drain(self) -> int:
        """Send everything pending now; return how many messages were handled."""
        handled = 0
        while batch := await self._deliver_batch():
            handled += batch
        return handled

    async def _run(self) -> None:
        while True:
            try:
                await self.drain()
            except Exception:
                log.exception("delivery round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._idle_poll + self._retry_pause)
            self._wakeup.clear()
            self._retry_pause = 0.0

    async def _deliver_batch(self) -> int:
        # Read, send and record in separate steps: no transaction stays open over the network.
        async with self._sessions() as session, session.begin():
            rows = [
                _Job(
                    message.id,
                    message.attempts,
                    account.id,
                    account.chat_id,
                    channel,
                    message.payload,
                )
                for message, account in await outbox.pending(session, limit=100)
                if (channel := self._channels.get(account.channel)) is not None
            ]
        if not rows:
            return 0
        results: list[tuple[_Job, OutboxStatus | None, str | None]] = []
        for job in rows:
            try:
                await job.channel.push(job.chat_id, Reply.from_dict(job.payload))
            except UnreachableError as error:
                results.append((job, OutboxStatus.UNREACHABLE, str(error)))
            except RetryLaterError as error:
                final = job.attempts + 1 >= MAX_ATTEMPTS
                results.append((job, OutboxStatus.FAILED if final else None, redact(str(error))))
                if not final:
                    self._retry_pause = max(self._retry_pause, error.delay)
                    break  # the channel is struggling; the rest waits for the next round
            else:
                results.append((job, OutboxStatus.SENT, None))
        async with self._sessions() as session, session.begin():
            now = self._clock.now()
            for job, status, problem in results:
                await self._record(session, job, status, problem, now)
        return sum(1 for _, status, _ in results if status is not None)

    async def _record(
        self,
        session: AsyncSession,
        job: _Job,
        status: OutboxStatus | None,
        error: str | None,
        now: datetime,
    ) -> None:
        if status is None:
            await outbox.postpone(session, job.message_id, error or "")
            return
        await outbox.mark(session, job.message_id, status, now, error)
        if status == OutboxStatus.UNREACHABLE:
            await accounts.mark_unreachable(session, job.account_id)
        reply_choices = job.payload.get("choices") or []
        if status == OutboxStatus.SENT and reply_choices and not job.channel.traits.buttons:
            await conversation_store.remember_menu(session, job.account_id, reply_choices, now)


@dataclass(frozen=True, slots=True)
class _Job:
    message_id: int
    attempts: int
    account_id: int
    chat_id: str
    channel: Channel
    payload: dict[str, Any]
