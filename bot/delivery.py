"""The delivery engine: claims queued outbox messages and pushes them through their channels.

Every message the bot sends on its own goes this way: notifications, reminders, broadcasts.
Workers send concurrently within the channel's limits; outcomes are written in batches. A
sending slot is freed only once its outcome is recorded, so after a crash at most
`concurrency` messages can have gone out unrecorded (and go out again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import select

from bot.channels import (
    Channel,
    OutsideWindowError,
    RetryLaterError,
    UnreachableError,
    push_window,
)
from bot.logs import redact
from handlers.types import Reply
from storage import accounts, outbox
from storage import conversations as conversation_store
from storage.clock import Clock, QuietHours
from storage.engine import SessionFactory, is_connection_error
from storage.models import ChannelAccount, OutboxMessage, OutboxStatus
from storage.outbox import OUTSIDE_WINDOW, Claimed, ReplyJournal, SendResult

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
_FLUSH_EVERY = 0.05  # seconds between outcome batches while sending
_FLUSH_TRIES_OFFLINE = 120  # one a second: how long outcomes wait for a database restarting


def worker_name() -> str:
    """Name this process for its claims: host, pid and a random suffix."""
    return f"{socket.gethostname()[:20]}:{os.getpid()}:{secrets.token_hex(3)}"


def backoff(attempts: int) -> timedelta:
    """Wait longer after each failed attempt: 5 s, 10 s, 20 s ... at most 5 minutes."""
    return timedelta(seconds=min(300, 5 * 2 ** max(0, attempts)))


class Deliverer:
    """Drain the outbox of every channel this process runs."""

    def __init__(
        self,
        sessions: SessionFactory,
        channels: Mapping[str, Channel],
        clock: Clock,
        *,
        concurrency: int = 64,
        lease: timedelta = timedelta(seconds=60),
        idle_poll: float = 2.0,
        single_process: bool = False,
        quiet: QuietHours | None = None,
    ) -> None:
        self._sessions = sessions
        self._channels = channels
        self._clock = clock
        self._concurrency = concurrency
        self._lease = lease
        self._idle_poll = idle_poll
        self._single_process = single_process
        self._quiet = quiet
        self.worker = worker_name()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Ask for a look at the outbox now."""
        self._wakeup.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="deliverer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # Cancelled again if a cancellation was lost on the way (the loop must end).
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=5)
        with contextlib.suppress(asyncio.CancelledError):
            task.result()

    async def drain(self) -> int:
        """Send everything due now and return how many messages were dealt with."""
        total = 0
        while handled := await self._round():
            total += handled
        return total

    async def release_previous_claims(self) -> None:
        """Take back at once the claims this process's previous life left (one process only).

        Called before any message is handled: a claim made since, such as an answer journaled
        while it is being sent, must stay, or it would be sent a second time.
        """
        if self._single_process:
            async with self._sessions() as session, session.begin():
                await outbox.release_claims(session)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                handled = await self._round()
                failures = 0
            except Exception as error:
                failures += 1
                if is_connection_error(error):
                    # The database is away (a restart): wait a little longer each time, up to
                    # ten seconds, and say it once rather than every round.
                    if failures == 1:
                        log.warning("delivery paused: the database is unreachable (%r)", error)
                    await asyncio.sleep(min(10.0, 0.5 * 2**failures))
                    continue
                log.exception("delivery round failed")
                handled = 0
            if handled:
                continue
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the event is set, and stop() would then wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._idle_poll):
                    await self._wakeup.wait()
            self._wakeup.clear()

    async def _round(self) -> int:
        """Claim and send one batch per channel; return how many messages were dealt with."""
        counts = await asyncio.gather(
            *(self._send_batch(name, channel) for name, channel in self._channels.items())
        )
        return sum(counts)

    async def _send_batch(self, name: str, channel: Channel) -> int:
        now = self._clock.now()
        if self._quiet is not None and self._quiet.contains(now):
            return 0  # nobody is woken at night: the queue waits for the morning
        async with self._sessions() as session, session.begin():
            claimed = await outbox.claim(
                session,
                channel=name,
                worker=self.worker,
                now=now,
                until=now + self._lease,
                limit=self._concurrency * 8,
            )
        if not claimed:
            return 0
        batch = _Batch(self, channel)
        await batch.send_all(claimed)
        return len(claimed)

    async def _record(self, channel: Channel, outcomes: list[SendResult]) -> None:
        now = self._clock.now()
        async with self._sessions() as session, session.begin():
            await outbox.record(session, outcomes, now)
            for outcome in outcomes:
                if outcome.status == OutboxStatus.UNREACHABLE:
                    await accounts.mark_unreachable(session, outcome.account_id)

    async def _renew(self, ids: set[int]) -> None:
        until = self._clock.now() + self._lease
        async with self._sessions() as session, session.begin():
            await outbox.renew(session, list(ids), worker=self.worker, until=until)

    async def _remember_menus(self, claimed: list[Claimed]) -> None:
        """On channels without buttons, keep the last numbered menu each person was shown."""
        now = self._clock.now()
        async with self._sessions() as session, session.begin():
            for message in claimed:
                items = message.payload.get("choices") or []
                if items:
                    await conversation_store.remember_menu(session, message.account_id, items, now)


class _Batch:
    """Send one claimed batch with bounded concurrency, recording outcomes as they come."""

    def __init__(self, deliverer: Deliverer, channel: Channel) -> None:
        self._deliverer = deliverer
        self._channel = channel
        # A slot is taken before sending and given back only once the outcome is recorded.
        self._slots = asyncio.Semaphore(deliverer._concurrency)
        self._outcomes: list[SendResult] = []
        self._sent_with_menu: list[Claimed] = []
        self._unrecorded: set[int] = set()
        # The channel may push only this long after a person's last message, if it says so.
        self._window = push_window(channel)

    async def send_all(self, claimed: list[Claimed]) -> None:
        self._unrecorded = {message.id for message in claimed}
        sending_done = asyncio.Event()
        flusher = asyncio.create_task(self._flush_periodically(sending_done))
        renewer = asyncio.create_task(self._renew_periodically())
        try:
            async with asyncio.TaskGroup() as group:
                for message in claimed:
                    await self._slots.acquire()
                    group.create_task(self._send(message))
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            # The flusher is never cancelled: cancelling it inside a write would roll the
            # outcomes back, and the messages would go out again once their claims lapsed.
            sending_done.set()
            await flusher

    async def _send(self, message: Claimed) -> None:
        if self._outside_window(message):
            # Not tried: the message moves to another account of the member, or is given up.
            self._outcomes.append(_reroute(message))
            return
        try:
            await self._channel.push(
                message.chat_id, Reply.from_dict(message.payload), skip_parts=message.parts_done
            )
        except OutsideWindowError:
            outcome = _reroute(message)
        except UnreachableError as error:
            outcome = SendResult(
                message.id, message.account_id, OutboxStatus.UNREACHABLE, str(error)
            )
        except RetryLaterError as error:
            reason = redact(str(error))[:500]
            if message.attempts + 1 >= MAX_ATTEMPTS:
                outcome = SendResult(message.id, message.account_id, OutboxStatus.FAILED, reason)
            else:
                wait = max(backoff(message.attempts), timedelta(seconds=error.delay))
                retry_at = self._deliverer._clock.now() + wait
                # Parts already delivered are not sent again on the retry.
                outcome = SendResult(
                    message.id, message.account_id, None, reason, retry_at, error.parts_done
                )
        except Exception as error:  # a bug in rendering must not stop the queue
            log.exception("could not send outbox message %s", message.id)
            outcome = SendResult(
                message.id, message.account_id, OutboxStatus.FAILED, repr(error)[:500]
            )
        else:
            outcome = SendResult(message.id, message.account_id, OutboxStatus.SENT)
            if not self._channel.traits.buttons and message.payload.get("choices"):
                self._sent_with_menu.append(message)
        self._outcomes.append(outcome)

    def _outside_window(self, message: Claimed) -> bool:
        if self._window is None or message.last_seen_at is None:
            return False
        return message.last_seen_at < self._deliverer._clock.now() - self._window

    async def _renew_periodically(self) -> None:
        """Keep the batch's claims alive while it is sent, however long 429 pauses make it."""
        lease = self._deliverer._lease
        while True:
            await asyncio.sleep(lease.total_seconds() / 3)
            if self._unrecorded:
                try:
                    await self._deliverer._renew(self._unrecorded)
                except Exception:
                    log.exception("could not renew delivery claims")

    async def _flush_periodically(self, sending_done: asyncio.Event) -> None:
        """Record outcomes every few milliseconds, and everything left once sending is done."""
        failures = 0
        while True:
            finished = sending_done.is_set()
            try:
                await self._flush()
                failures = 0
            except Exception as error:
                failures += 1
                log.exception("could not record delivery outcomes (attempt %s)", failures)
                # While sending goes on, keep trying: the slots stay taken, so nothing more is
                # sent that could not be recorded. Once it is over, give up after a few tries;
                # the claims lapse and the messages go out again: a duplicate, never a loss.
                # An unreachable database (a restart) is waited for longer, about two minutes.
                limit = _FLUSH_TRIES_OFFLINE if is_connection_error(error) else MAX_ATTEMPTS
                if finished and failures >= limit:
                    return
            if finished and not self._outcomes:
                return
            if failures:
                await asyncio.sleep(_FLUSH_EVERY * 20)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_FLUSH_EVERY):
                    await sending_done.wait()

    async def _flush(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        menus, self._sent_with_menu = self._sent_with_menu, []
        if not outcomes:
            return
        try:
            await self._deliverer._record(self._channel, outcomes)
        except BaseException:
            # Keep them for the next flush; their slots stay taken until they are written.
            self._outcomes[:0] = outcomes
            self._sent_with_menu[:0] = menus
            raise
        self._unrecorded.difference_update(outcome.id for outcome in outcomes)
        for _ in outcomes:
            self._slots.release()
        if menus:
            await self._deliverer._remember_menus(menus)


def _reroute(message: Claimed) -> SendResult:
    return SendResult(message.id, message.account_id, None, OUTSIDE_WINDOW, reroute=True)


async def take_over_replies(
    sessions: SessionFactory,
    clock: Clock,
    *,
    channel: str,
    external_id: str,
    replies: list[Reply],
    parts_done: int,
    reason: str,
) -> bool:
    """Queue answers the messenger failed to take (timeout, 5xx) for retries with backoff.

    The first reply resumes after its `parts_done` parts; the messages are retried like any
    pushed message and end failed, with the reason, after MAX_ATTEMPTS. False if the person
    has no account (nothing could be queued).
    """
    now = clock.now()
    async with sessions() as session, session.begin():
        account_id = await session.scalar(
            select(ChannelAccount.id).where(
                ChannelAccount.channel == channel, ChannelAccount.external_id == external_id
            )
        )
        if account_id is None:
            return False
        for index, reply in enumerate(replies):
            session.add(
                OutboxMessage(
                    account_id=account_id,
                    channel=channel,
                    payload=reply.to_dict(),
                    attempts=1,
                    parts_done=parts_done if index == 0 else 0,
                    last_error=redact(reason)[:500],
                    not_before=now + backoff(0),
                    created_at=now,
                )
            )
    return True


async def settle_answers(
    sessions: SessionFactory,
    clock: Clock,
    journal: ReplyJournal | None,
    *,
    channel: str,
    external_id: str,
    replies: list[Reply],
    journal_ids: list[int],
    failed_at: int | None = None,
    parts_done: int = 0,
    reason: str = "",
) -> bool:
    """Record what became of an outcome's answers: all sent or given up, or failed from one on.

    The last len(journal_ids) replies are journaled: those sent are finished, those failed keep
    their rows and are retried from there, in order; failed replies not journaled are queued
    anew. True if anything was queued for retries.
    """
    first = len(replies) - len(journal_ids)  # the first journaled reply
    if failed_at is None:
        if journal is not None and journal_ids:
            await journal.finish(journal_ids)
        return False
    split = max(0, failed_at - first)
    queued = False
    plain = replies[failed_at:first]
    if plain:
        queued = await take_over_replies(
            sessions,
            clock,
            channel=channel,
            external_id=external_id,
            replies=plain,
            parts_done=parts_done,
            reason=reason,
        )
    if journal is not None and journal_ids[split:]:
        await journal.retry_later(
            journal_ids[split:],
            parts_done=parts_done if failed_at >= first else 0,
            error=redact(reason)[:500],
            retry_at=clock.now() + backoff(0),
        )
        queued = True
    if journal is not None and journal_ids[:split]:
        await journal.finish(journal_ids[:split])
    return queued
