"""What both Zalo channels share: store each event before acknowledging it, then answer it.

An event is written to the inbox table first (webhook call or long poll alike), so a crash
loses nothing: what was stored and not handled is replayed at the next start. A pool of
workers hands the events to the neutral dispatcher and sends the replies back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from bot.channels import DeliveryError, UnreachableError
from bot.zalo.convert import ZaloEvent
from handlers.dispatcher import Dispatcher
from handlers.i18n import Catalogue
from handlers.types import ChannelTraits, Reply
from storage import accounts, inbox
from storage.clock import Clock
from storage.engine import SessionFactory

log = logging.getLogger(__name__)

_STOP = object()


class ZaloChannelBase:
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

    # --- to be provided by each channel ---------------------------------------------------

    def _event(self, payload: dict[str, Any]) -> ZaloEvent | None:
        raise NotImplementedError

    async def _send(self, chat_id: str, reply: Reply, *, pushed: bool, skip_parts: int) -> None:
        raise NotImplementedError

    async def _typing(self, chat_id: str) -> None:
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
        async with self._sessions() as session, session.begin():
            first = await inbox.store(
                session,
                channel=self.traits.name,
                update_key=key,
                payload=payload,
                now=self._clock.now(),
            )
        if first and self.running:
            self._queue.put_nowait((key, payload))
        return first

    async def replay_stored(self) -> int:
        """Queue events stored before a crash or a stop but never handled."""
        async with self._sessions() as session:
            stored = await inbox.unprocessed(session, self.traits.name)
            pending = [(row.update_key, row.payload) for row in stored if row.payload is not None]
        for key, payload in pending:
            self._queue.put_nowait((key, payload))
        if pending:
            log.info("replaying %d stored %s events", len(pending), self.traits.name)
        return len(pending)

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            if item is _STOP:
                return
            key, payload = item  # type: ignore[misc]
            try:
                await self._answer(key, payload)
            except Exception:
                log.exception("could not answer %s event", self.traits.name)
            finally:
                for observer in self._observers:
                    observer(key)

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
        else:
            self._in_background(self._typing(incoming.chat_id))
            outcome = await self._dispatcher.handle(incoming)
            if outcome.queued_notifications:
                self._on_queued()
            replies = outcome.replies
        for reply in replies:
            try:
                await self._send(incoming.chat_id, reply, pushed=False, skip_parts=0)
            except UnreachableError:
                log.info("%s chat %s cannot be answered", self.traits.name, incoming.chat_id)
                return
            except DeliveryError as error:
                log.warning("could not answer %s event %s: %s", self.traits.name, key, error)
                return

    async def _take(self, event: ZaloEvent) -> bool:
        """Record an event the core does not see as handled, and the person as seen."""
        incoming = event.incoming
        now = self._clock.now()
        async with self._sessions() as session, session.begin():
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
        async with self._sessions() as session, session.begin():
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
        async with self._sessions() as session, session.begin():
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
