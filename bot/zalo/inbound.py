"""What both Zalo channels share: store each event before acknowledging it, then answer it.

An event is written to the inbox table first (webhook call or long poll alike), so a crash
loses nothing: what was stored and not handled is replayed at the next start. A pool of
workers hands the events to the neutral dispatcher and sends the replies back.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from bot.channels import DeliveryError, RetryLaterError, UnreachableError
from bot.delivery import settle_answers
from bot.zalo.convert import ZaloEvent
from handlers.dispatcher import Dispatcher
from handlers.i18n import Catalogue
from handlers.types import ChannelTraits, Outcome, Reply
from storage import accounts, inbox
from storage.clock import Clock
from storage.engine import (
    DatabaseOutage,
    DatabaseUnavailableError,
    SessionFactory,
    is_connection_error,
)
from storage.outbox import ReplyJournal

log = logging.getLogger(__name__)

_STOP = object()
# Tries of one event while the database comes and goes; beyond them it is left stored.
_OUTAGE_TRIES = 20


class ZaloChannelBase(abc.ABC):
    """Receive, store, queue and answer a Zalo channel's events; subclasses speak the API."""

    traits: ChannelTraits

    def __init__(
        self,
        dispatcher: Dispatcher,
        sessions: SessionFactory,
        clock: Clock,
        texts: Catalogue,
        on_queued: Callable[[], None],
        *,
        workers: int = 16,
    ) -> None:
        self._dispatcher = dispatcher
        self._sessions = sessions
        self._clock = clock
        self._texts = texts
        self._on_queued = on_queued
        self._workers = workers
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]] | object] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._observers: list[Callable[[str], None]] = []
        self.running = False
        self.outage = DatabaseOutage(sessions)
        # Answers are journaled in the transaction that handles their event: a process killed
        # before sending them leaves them to the delivery engine, not lost.
        self._journal: ReplyJournal | None = dispatcher.journal_replies(self.traits.name)

    # --- to be provided by each channel ---------------------------------------------------

    @abc.abstractmethod
    def _event(self, payload: dict[str, Any]) -> ZaloEvent | None:
        """Read one webhook or polled payload; None for what the bot ignores."""

    @abc.abstractmethod
    async def _send(self, chat_id: str, reply: Reply, *, pushed: bool, skip_parts: int) -> None:
        """Send one reply, skipping its first `skip_parts` parts."""

    async def _typing(self, chat_id: str) -> None:  # noqa: B027 (optional: may do nothing)
        """Show that an answer is coming, where the channel can."""

    # --- life cycle -------------------------------------------------------------------------

    def observe(self, callback: Callable[[str], None]) -> None:
        """Call `callback` with each event's key once it has been fully answered."""
        self._observers.append(callback)

    def start_workers(self) -> None:
        if self.running:
            return
        self.running = True
        name = self.traits.name
        self._tasks = [
            asyncio.create_task(self._work(), name=f"{name}-worker-{n}")
            for n in range(self._workers)
        ]

    async def stop_workers(self) -> None:
        """Finish the events being answered; those still queued are replayed at next start."""
        self.running = False
        await self.outage.stop()
        while not self._queue.empty():
            self._queue.get_nowait()
        for _ in self._tasks:
            self._queue.put_nowait(_STOP)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- receiving --------------------------------------------------------------------------

    async def store_and_queue(self, key: str, payload: dict[str, Any]) -> bool:
        """Store an event durably, then queue it; False if it had been received before."""
        try:
            async with self._dispatcher.turns.writing(self._sessions) as session:
                first = await inbox.store(
                    session,
                    channel=self.traits.name,
                    update_key=key,
                    payload=payload,
                    now=self._clock.now(),
                )
        except Exception as error:
            if not is_connection_error(error):
                raise
            # Not stored: the webhook answers 503; the sender hears why nothing comes back.
            self._tell_sender_of_outage(payload)
            raise DatabaseUnavailableError(str(error)) from error
        if first and self.running:
            self._in_background(self._admit_and_queue(key, payload))
        return first

    async def _admit_and_queue(self, key: str, payload: dict[str, Any]) -> None:
        """Queue an event once its sender may be handled: a flooder waits without a worker."""
        try:
            event = self._event(payload)
        except ValueError:
            event = None
        if event is not None and event.kind == "message":
            await self._dispatcher.admit(event.incoming)
        self._queue.put_nowait((key, payload))

    async def replay_stored(self) -> int:
        """Queue events stored before a crash or a stop but never handled."""
        replayed = 0
        async for page in inbox.unprocessed_pages(self._sessions, self.traits.name):
            for key, payload in page:
                self._queue.put_nowait((key, payload))
            replayed += len(page)
        if replayed:
            log.info("replaying %d stored %s events", replayed, self.traits.name)
        return replayed

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            if item is _STOP:
                return
            key, payload = item  # type: ignore[misc]
            try:
                await self._answer_through_outages(key, payload)
            except Exception:
                log.exception("could not answer %s event", self.traits.name)
            finally:
                for observer in self._observers:
                    observer(key)

    async def _answer_through_outages(self, key: str, payload: dict[str, Any]) -> None:
        """Answer an event; while the database is away, wait for it and try again."""
        for _attempt in range(_OUTAGE_TRIES):
            try:
                await self._answer(key, payload)
                return
            except Exception as error:
                if not is_connection_error(error):
                    raise
                # Still stored and unhandled (its transaction rolled back): tried again later.
                self._tell_sender_of_outage(payload)
                await self.outage.recovered()
        log.warning("%s event %s left stored after %d tries", self.traits.name, key, _OUTAGE_TRIES)

    def _tell_sender_of_outage(self, payload: dict[str, Any]) -> None:
        """Tell the sender, at most once a minute, that their message waits for the database."""
        try:
            event = self._event(payload)
        except ValueError:
            return
        chat_id = event.incoming.chat_id if event is not None else ""
        if chat_id and self.outage.should_notify(chat_id, self._clock.now()):
            notice = Reply(self._texts("outage.interrupted"))
            self._in_background(self._send_quietly(chat_id, notice))

    async def _send_quietly(self, chat_id: str, reply: Reply) -> None:
        try:
            await self._send(chat_id, reply, pushed=False, skip_parts=0)
        except DeliveryError as error:
            log.info("could not send the outage notice to %s: %s", chat_id, error)

    async def _answer(self, key: str, payload: dict[str, Any]) -> None:
        try:
            event = self._event(payload)
        except ValueError:
            event = None
        if event is None:
            await self._set_aside(key, "ignored")
            return
        incoming = event.incoming
        if event.kind == "unfollow":
            await self._unfollowed(event)
            return
        if event.kind == "unreadable":
            replies = [Reply(self._texts("zalo.unreadable"))] if await self._take(event) else []
            outcome = Outcome(replies=replies)
        else:
            self._in_background(self._typing(incoming.chat_id))
            outcome = await self._dispatcher.handle(incoming)
        try:
            await self._send_all(key, incoming.chat_id, incoming.user_id, outcome)
        except BaseException:
            # Not sent, not given up: the claims lapse and the delivery engine sends them.
            if self._journal is not None:
                self._journal.let_go(outcome.journal_ids)
            raise
        finally:
            # Pushes the message caused (a request to an officer) follow its answer.
            if outcome.queued_notifications:
                self._on_queued()

    async def _send_all(self, key: str, chat_id: str, user_id: str, outcome: Outcome) -> None:
        for index, reply in enumerate(outcome.replies):
            try:
                await self._send(chat_id, reply, pushed=False, skip_parts=0)
            except UnreachableError:
                log.info("%s chat %s cannot be answered", self.traits.name, chat_id)
                break
            except RetryLaterError as error:
                # A timeout or a server error: the delivery engine retries the rest with
                # backoff, and records it failed, with the reason, if it never goes through.
                log.warning(
                    "answer to %s event %s failed (%s); queued", self.traits.name, key, error
                )
                await self._settle(user_id, outcome, index, error)
                return
            except DeliveryError as error:
                log.warning("could not answer %s event %s: %s", self.traits.name, key, error)
                break
        await self._settle(user_id, outcome)

    async def _settle(
        self,
        user_id: str,
        outcome: Outcome,
        failed_at: int | None = None,
        error: DeliveryError | None = None,
    ) -> None:
        """Finish the journaled answers sent or given up; queue those that failed for retries."""
        if failed_at is None and not outcome.journal_ids:
            return
        try:
            queued = await settle_answers(
                self._sessions,
                self._clock,
                self._journal,
                channel=self.traits.name,
                external_id=user_id,
                replies=outcome.replies,
                journal_ids=outcome.journal_ids,
                failed_at=failed_at,
                parts_done=error.parts_done if error is not None else 0,
                reason=str(error) if error is not None else "",
            )
        except Exception:
            log.exception("could not queue an answer on %s", self.traits.name)
            if self._journal is not None:
                self._journal.let_go(outcome.journal_ids)
            return
        if queued:
            self._on_queued()

    async def _take(self, event: ZaloEvent) -> bool:
        """Record an event the core does not see as handled, and the person as seen."""
        incoming = event.incoming
        now = self._clock.now()
        # In the sender's turn: their first text, handled meanwhile, also creates their account.
        async with (
            self._dispatcher.turn(incoming),
            self._dispatcher.turns.writing(self._sessions) as session,
        ):
            if not await inbox.take(
                session, channel=incoming.channel, update_key=incoming.update_key, now=now
            ):
                return False
            await accounts.load_for_message(
                session,
                channel=incoming.channel,
                external_id=incoming.user_id,
                chat_id=incoming.chat_id,
                display_name=incoming.display_name,
                now=now,
            )
        return True

    async def _unfollowed(self, event: ZaloEvent) -> None:
        incoming = event.incoming
        async with self._dispatcher.turns.writing(self._sessions) as session:
            if await inbox.take(
                session,
                channel=incoming.channel,
                update_key=incoming.update_key,
                now=self._clock.now(),
            ):
                await accounts.mark_unreachable_by_external_id(
                    session, incoming.channel, incoming.user_id
                )

    async def _set_aside(self, key: str, reason: str) -> None:
        async with self._dispatcher.turns.writing(self._sessions) as session:
            await inbox.record_failure(
                session,
                channel=self.traits.name,
                update_key=key,
                error_ref=reason,
                now=self._clock.now(),
            )

    def _in_background(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- pushing ----------------------------------------------------------------------------

    async def push(self, chat_id: str, reply: Reply, *, skip_parts: int = 0) -> None:
        """Send a queued message for the delivery engine; raise DeliveryError on failure."""
        await self._send(chat_id, reply, pushed=True, skip_parts=skip_parts)
