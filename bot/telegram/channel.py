"""The Telegram channel: receives updates, answers them, and pushes queued messages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence

from telegram import BotCommand, InputFile, Update
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.ext import Application, ContextTypes, TypeHandler

from bot.channels import DeliveryError, RetryLaterError, UnreachableError, split_text
from bot.delivery import settle_answers
from bot.ratelimit import ChannelLimiter
from bot.telegram.convert import CHANNEL, Received, UnreadableUpdateError, keyboard, read_update
from bot.telegram.transport import AiohttpRequest
from handlers.dispatcher import Dispatcher
from handlers.i18n import Catalogue
from handlers.types import ChannelTraits, Outcome, Reply
from storage import app_state, inbox
from storage.clock import Clock
from storage.engine import (
    DatabaseOutage,
    DatabaseUnavailableError,
    SessionFactory,
    is_connection_error,
)
from storage.outbox import ReplyJournal

log = logging.getLogger(__name__)

TRAITS = ChannelTraits(name=CHANNEL, buttons=True, text_limit=4096)
FREE_RATE = 30
_RETRIES_AFTER_429 = 3
ALLOWED_UPDATES = ["message", "callback_query"]
_CALLBACK_NOTICE_LIMIT = 200
# Tries of one update while the database comes and goes; beyond them it is left stored.
_OUTAGE_TRIES = 20


def opt_in_to_timedelta_periods() -> None:
    """Have python-telegram-bot give time periods as timedelta, for this whole process.

    Its documented opt-in to what its next major version does. Until then it warns whenever a
    RetryAfter is made with a number of seconds, as every 429 makes it; `_seconds` below reads
    either. It reads the variable at every use, so it is set once, as the process starts.
    """
    os.environ.setdefault("PTB_TIMEDELTA", "true")


def build_application(
    token: str,
    api_base_url: str,
    *,
    webhook: bool,
    concurrent_updates: int,
    pool_size: int,
    read_timeout: float = 10.0,
) -> Application:  # type: ignore[type-arg]
    """Build the python-telegram-bot Application talking to `api_base_url`."""
    builder = (
        Application.builder()
        .token(token)
        .base_url(f"{api_base_url}/bot")
        .base_file_url(f"{api_base_url}/file/bot")
        .concurrent_updates(concurrent_updates)
        .request(AiohttpRequest(connections=max(pool_size, 8), read_timeout=read_timeout))
        # Long polling waits up to its timeout for updates: a read timeout above it.
        .get_updates_request(AiohttpRequest(connections=2, read_timeout=30.0))
    )
    if webhook:
        # Our own aiohttp server receives the webhook; no Updater is needed.
        builder = builder.updater(None)
    return builder.build()


class TelegramChannel:
    """Bridge between python-telegram-bot and the neutral dispatcher."""

    traits = TRAITS

    def __init__(
        self,
        application: Application,  # type: ignore[type-arg]
        dispatcher: Dispatcher,
        sessions: SessionFactory,
        clock: Clock,
        texts: Catalogue,
        on_queued: Callable[[], None],
        limiter: ChannelLimiter,
    ) -> None:
        self.application = application
        self.limiter = limiter
        # Above Telegram's free 30 messages a second, bots pay per message (paid broadcasts).
        self._paid = limiter.limits.per_second > FREE_RATE
        self._dispatcher = dispatcher
        self._sessions = sessions
        self._clock = clock
        self._texts = texts
        self._on_queued = on_queued
        self._observers: list[Callable[[str], None]] = []
        self._inbox = inbox.InboxWriter(sessions, clock, turns=dispatcher.turns)
        # Answers are journaled in the transaction that handles their update: a process killed
        # before sending them leaves them to the delivery engine, not lost.
        self._journal: ReplyJournal | None = dispatcher.journal_replies(CHANNEL)
        self.outage = DatabaseOutage(sessions)
        # Updates being answered at once, as python-telegram-bot's `concurrent_updates`.
        self._answering = asyncio.Semaphore(max(1, application.concurrent_updates))
        # Answers waiting for their sender's turn (flood control), given up when the bot stops:
        # their updates stay stored and are answered after the next start.
        self._admitting: set[asyncio.Task[object]] = set()
        self._closing = asyncio.Event()
        # Long polling hands updates to the Application; webhook updates skip its queue.
        application.add_handler(TypeHandler(Update, self._on_update))

    def observe(self, callback: Callable[[str], None]) -> None:
        """Call `callback` with each update's key once it has been fully answered."""
        self._observers.append(callback)

    @property
    def username(self) -> str | None:
        return self.application.bot.username if self.application.bot else None

    async def initialize(self, menu: Sequence[tuple[str, str]]) -> None:
        """Learn who the bot is, remember its username, and set the command menu."""
        await self.application.initialize()
        async with self._sessions() as session, session.begin():
            await app_state.put(session, app_state.TELEGRAM_USERNAME, self.application.bot.username)
        commands = [BotCommand(name, self._texts(key)) for name, key in menu]
        await self.application.bot.set_my_commands(commands)

    async def receive_webhook(self, payload: dict[str, object]) -> None:
        """Store a webhook update durably, then queue it for handling.

        Updates arriving together share a transaction; each returns once its own is committed.
        """
        try:
            stored = await self._inbox.store(CHANNEL, str(payload["update_id"]), dict(payload))
        except Exception as error:
            if not is_connection_error(error):
                raise
            # Not stored: the webhook answers 503 and Telegram sends the update again later.
            with contextlib.suppress(UnreadableUpdateError):
                received = read_update(payload)
                if received is not None:
                    self._tell_of_outage(received.incoming.chat_id)
            raise DatabaseUnavailableError(str(error)) from error
        if stored:
            await self._enqueue(payload)

    async def close(self) -> None:
        """Stop waiting for the database or a sender's turn: those updates are replayed later."""
        self._closing.set()
        for task in list(self._admitting):
            task.cancel()
        await self.outage.stop()

    def _tell_of_outage(self, chat_id: str) -> None:
        """Tell the sender, at most once a minute, that their message waits for the database."""
        if not chat_id or not self.outage.should_notify(chat_id, self._clock.now()):
            return
        text = self._texts("outage.interrupted")
        self.application.create_task(self._send_quietly(chat_id, Reply(text)))

    async def _send_quietly(self, chat_id: int | str, reply: Reply) -> None:
        try:
            await self._send(chat_id, reply)
        except TelegramError as error:
            log.info("could not send the outage notice to %s: %s", chat_id, error)

    async def replay_stored(self) -> int:
        """Queue updates stored before a crash but never handled."""
        replayed = 0
        async for page in inbox.unprocessed_pages(self._sessions, CHANNEL):
            for _key, payload in page:
                await self._enqueue(payload)
            replayed += len(page)
        if replayed:
            log.info("replaying %d stored Telegram updates", replayed)
        return replayed

    async def _enqueue(self, payload: dict[str, object]) -> None:
        """Start answering a stored update, read from its JSON.

        It runs as a task of the Application, which waits for it when stopping, but skips the
        Application's queue and the python-telegram-bot objects of the update: the bot needs
        neither, and both cost CPU on every update.
        """
        if not self.application.running:
            return  # stopping: the stored update is replayed at the next start
        reason = "ignored"  # a group's message, a channel post: nothing for the bot to do
        try:
            received = read_update(payload)
        except UnreadableUpdateError:  # a malformed update must not stop the others
            log.warning("unreadable Telegram update %s", payload.get("update_id"), exc_info=True)
            received, reason = None, "unreadable"
        if received is None:
            # Set aside as handled, or it would be replayed at every start.
            async with self._sessions() as session, session.begin():
                await inbox.record_failure(
                    session,
                    channel=CHANNEL,
                    update_key=str(payload.get("update_id")),
                    error_ref=reason,
                    now=self._clock.now(),
                )
            return
        self.application.create_task(self._answer_in_turn(str(payload["update_id"]), received))

    async def _on_update(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        """Store an update from long polling, then answer it as a webhook update is answered.

        Stored first: python-telegram-bot confirms an update to Telegram once fetched, so one
        not yet answered when the process dies is replayed from the inbox at the next start.
        Answered as a task, not in the library's handler slot, which a flooding sender waiting
        for their turn would otherwise hold from everyone else.
        """
        payload = update.to_dict()
        key = str(update.update_id)
        try:
            stored = await self._inbox.store(CHANNEL, key, payload)
        except Exception as error:
            if not is_connection_error(error):
                log.warning("could not store Telegram update %s", key, exc_info=True)
            # Answered from memory (once the database is back, if it is down), unless the bot
            # stops first: Telegram has already handed the update over.
            try:
                received = read_update(payload)
            except UnreadableUpdateError:
                log.warning("unreadable Telegram update %s", key, exc_info=True)
                return
            self.application.create_task(self._answer_in_turn(key, received))
            return
        if stored:
            await self._enqueue(payload)

    async def _answer_in_turn(self, key: str, received: Received | None) -> None:
        try:
            if received is not None and not await self._admitted(received):
                return
            for _attempt in range(_OUTAGE_TRIES):
                if received is None:
                    break
                try:
                    async with self._answering:
                        sent, queued = await self._answer(received)
                    if sent and self._journal is not None:
                        # Outside the slot: waiting for the shared commit holds nothing of others.
                        await self._journal.finish(sent)
                    if queued:
                        # Pushes the message caused (a request to an officer) follow its answer.
                        self._on_queued()
                    break
                except DatabaseUnavailableError:
                    # Still stored and unhandled: answered once the database is back.
                    self._tell_of_outage(received.incoming.chat_id)
                    await self.outage.recovered()
            else:
                log.warning("update %s left stored after %d tries", key, _OUTAGE_TRIES)
        finally:
            for observer in self._observers:
                observer(key)

    async def _admitted(self, received: Received) -> bool:
        """Wait for the sender's turn, holding no slot others need; False if the bot stops."""
        task = asyncio.current_task()
        assert task is not None  # always a task of the Application
        if self._closing.is_set():
            return False
        self._admitting.add(task)
        try:
            await self._dispatcher.admit(received.incoming)
        except asyncio.CancelledError:
            if not self._closing.is_set():
                raise
            task.uncancel()  # our own cancel, taken: the task ends normally
            return False  # stopping: the update stays stored, answered after the next start
        finally:
            self._admitting.discard(task)
        return True

    async def _answer(self, received: Received) -> tuple[list[int], bool]:
        """Answer an update; return its journaled answers sent or given up, and if it queued any."""
        incoming = received.incoming
        outcome = await self._dispatcher.handle(incoming)
        queued = outcome.queued_notifications
        try:
            if await self._render(received, int(incoming.chat_id), outcome):
                return outcome.journal_ids, queued
            return [], queued
        except Forbidden:
            log.info("chat %s blocked the bot before our answer", incoming.chat_id)
            return outcome.journal_ids, queued
        except TelegramError:
            log.warning("could not answer update %s", incoming.update_key, exc_info=True)
            return outcome.journal_ids, queued
        except BaseException:
            # Not sent, not given up: the claims lapse and the delivery engine sends them.
            if self._journal is not None:
                self._journal.let_go(outcome.journal_ids)
            if queued:
                self._on_queued()
            raise

    async def _render(self, received: Received, chat_id: int, outcome: Outcome) -> bool:
        """Send the outcome; False if answers failed and were queued for retries."""
        bot = self.application.bot
        if received.callback_query_id is not None:
            notice = (outcome.choice_notice or "")[:_CALLBACK_NOTICE_LIMIT] or None
            # Both best effort: a press answered late (replayed after a crash, held through an
            # outage or by flood control) is "too old" for Telegram, but its answers must go.
            try:
                await bot.answer_callback_query(received.callback_query_id, text=notice)
            except TelegramError as error:
                log.info("could not acknowledge the press of %s: %s", chat_id, error)
            if outcome.choice_accepted and received.pressed_on is not None:
                # Spent buttons disappear, so the same choice cannot be pressed twice.
                chat, message_id = received.pressed_on
                try:
                    await bot.edit_message_reply_markup(
                        chat_id=chat, message_id=message_id, reply_markup=None
                    )
                except TelegramError as error:
                    log.info("could not take the spent buttons off in %s: %s", chat, error)
        for index, reply in enumerate(outcome.replies):
            try:
                await self._send(chat_id, reply)
            except NetworkError as error:
                if isinstance(error, BadRequest):
                    raise
                # A timeout or a server error: the delivery engine retries the rest with
                # backoff, and records it failed, with the reason, if it never goes through.
                await self._take_over(
                    received, outcome, index, getattr(error, "parts_done", 0), error
                )
                return False
        return True

    async def _take_over(
        self,
        received: Received,
        outcome: Outcome,
        failed_at: int,
        parts_done: int,
        error: TelegramError,
    ) -> None:
        """Finish the journaled answers sent; queue those that failed for retries."""
        incoming = received.incoming
        log.warning("answer to %s failed (%s); queued for retries", incoming.update_key, error)
        try:
            queued = await settle_answers(
                self._sessions,
                self._clock,
                self._journal,
                channel=CHANNEL,
                external_id=incoming.user_id,
                replies=outcome.replies,
                journal_ids=outcome.journal_ids,
                failed_at=failed_at,
                parts_done=parts_done,
                reason=str(error) or type(error).__name__,
            )
        except Exception:
            log.exception("could not queue the answer to %s", incoming.update_key)
            if self._journal is not None:
                self._journal.let_go(outcome.journal_ids)
            return
        if queued:
            self._on_queued()

    async def _send(
        self, chat_id: int | str, reply: Reply, *, pushed: bool = False, skip_parts: int = 0
    ) -> None:
        """Send the text's parts, then the attachments, each one Bot API call."""
        texts = split_text(reply.text, TRAITS.text_limit)
        calls: list[tuple[str, dict[str, object]]] = [
            (
                "send_message",
                {
                    "text": part,
                    "reply_markup": keyboard(reply.choices) if i == len(texts) - 1 else None,
                },
            )
            for i, part in enumerate(texts)
        ]
        for attachment in reply.attachments:
            # A file the bot made is uploaded from memory; others are sent by Telegram's file id.
            file: str | InputFile = (
                InputFile(attachment.content, filename=attachment.name)
                if attachment.content is not None
                else attachment.file_ref
            )
            if attachment.kind == "photo":
                calls.append(("send_photo", {"photo": file}))
            else:
                calls.append(("send_document", {"document": file}))
        for index, (method, fields) in enumerate(calls):
            if index < skip_parts:
                continue
            try:
                await self._call(chat_id, pushed, method, **fields)
            except TelegramError as error:
                error.parts_done = index  # type: ignore[attr-defined]
                raise

    async def _call(self, chat_id: int | str, pushed: bool, method: str, **fields: object) -> None:
        """Make one Bot API call within the limits, waiting out a 429 a few times."""
        bot = self.application.bot
        if self._paid:
            fields["allow_paid_broadcast"] = True
        chat = str(chat_id)
        for attempt in range(_RETRIES_AFTER_429 + 1):
            await self.limiter.acquire(chat, group=chat.startswith("-"), per_chat=pushed)
            try:
                if method == "send_message" and isinstance(bot.request, AiohttpRequest):
                    # A text: the lean path (see JsonParameters), same call, same errors.
                    url = f"{bot.base_url}/sendMessage"
                    await bot.request.post_json(url, {"chat_id": chat_id, **fields})
                else:
                    await getattr(bot, method)(chat_id=chat_id, **fields)
                return
            except RetryAfter as error:
                # Telegram wants every send of this bot to wait, not only this one.
                self.limiter.pause(_seconds(error.retry_after))
                if attempt == _RETRIES_AFTER_429:
                    raise

    async def push(self, chat_id: str, reply: Reply, *, skip_parts: int = 0) -> None:
        """Send a queued message, translating Telegram's errors for the delivery service."""
        try:
            await self._send(chat_id, reply, pushed=True, skip_parts=skip_parts)
        except TelegramError as error:
            translated = _translate(error)
            translated.parts_done = getattr(error, "parts_done", skip_parts)
            raise translated from error


def _translate(error: TelegramError) -> DeliveryError:
    """Say what a Bot API error means for delivery: try later, or this chat is gone."""
    if isinstance(error, RetryAfter):
        return RetryLaterError("rate limited", _seconds(error.retry_after))
    if isinstance(error, Forbidden):
        return UnreachableError(error.message)
    if isinstance(error, BadRequest):
        if "chat not found" in error.message.lower():
            return UnreachableError(error.message)
        return RetryLaterError(error.message, 60.0)
    return RetryLaterError(str(error))  # NetworkError, TimedOut, 5xx


def _seconds(delay: object) -> float:
    """Read RetryAfter.retry_after, a number or a timedelta depending on the library's settings."""
    total = getattr(delay, "total_seconds", None)
    return float(total()) if callable(total) else float(delay)  # type: ignore[arg-type]


class TelegramInviteLinks:
    """Deep links to the bot, once its username is known."""

    def __init__(self, username: Callable[[], str | None]) -> None:
        self._username = username

    def links(self, code: str) -> list[str]:
        name = self._username()
        return [f"https://t.me/{name}?start={code}"] if name else []
