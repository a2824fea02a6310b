"""The dispatcher: one path from an incoming message to the handlers and back."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import defaultdict
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import datetime, timedelta

from aiolimiter import AsyncLimiter

from handlers.context import ACTION_PREFIX, CHOICE_PREFIX, NONCE_PLACEHOLDER, Context, Services
from handlers.parsing import parse_id
from handlers.routing import Routes
from handlers.types import Incoming, Outcome, Reply
from storage import accounts, inbox, transactions
from storage.engine import DatabaseUnavailableError, is_connection_error
from storage.models import Conversation
from storage.outbox import ReplyJournal
from storage.text import clean, clean_line, fold

log = logging.getLogger(__name__)


class _KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    def hold(self, key: str) -> _Held:
        """Return a context holding the key's lock (every message takes two: kept cheap)."""
        return _Held(self, key)


class _Held:
    """The holding of one key's lock, as an async context manager."""

    __slots__ = ("_key", "_lock", "_owner")

    def __init__(self, owner: _KeyedLocks, key: str) -> None:
        self._owner = owner
        self._key = key
        self._lock: asyncio.Lock | None = None

    async def __aenter__(self) -> None:
        owner, key = self._owner, self._key
        lock = owner._locks.get(key)
        if lock is None:
            lock = owner._locks[key] = asyncio.Lock()
        owner._users[key] = owner._users.get(key, 0) + 1
        try:
            await lock.acquire()
        except BaseException:
            self._release_user()
            raise
        self._lock = lock

    async def __aexit__(self, *_exc: object) -> None:
        assert self._lock is not None
        self._lock.release()
        self._release_user()

    def _release_user(self) -> None:
        owner, key = self._owner, self._key
        owner._users[key] -= 1
        if not owner._users[key]:
            del owner._users[key]
            del owner._locks[key]


class _FloodGuard:
    """Slow down one sender past a sustained rate, in order, without delaying anyone else.

    A leaky bucket per sender (aiolimiter): `burst` messages pass at once, then `rate` a
    second. Waiting senders queue behind a lock of their own, so their messages keep their order.
    """

    # Senders remembered before idle ones (their bucket drained) are forgotten.
    _PRUNE_ABOVE = 1000

    def __init__(self, rate: float, burst: int, notice_every: timedelta) -> None:
        self._rate = rate
        self._burst = burst
        self._notice_every = notice_every
        self._limiters: dict[str, AsyncLimiter] = {}
        self._turns = _KeyedLocks()
        self._noticed: dict[str, datetime] = {}
        self._passes: defaultdict[str, int] = defaultdict(int)
        self._to_tell: set[str] = set()

    async def admit(self, key: str, now: datetime) -> None:
        """Wait until the sender may be handled again; note whether to tell them they are slowed."""
        async with self._turns.hold(key):
            limiter = self._limiters.get(key)
            if limiter is None:
                if len(self._limiters) > self._PRUNE_ABOVE:
                    self._prune(now)
                limiter = AsyncLimiter(self._burst, self._burst / self._rate)
                self._limiters[key] = limiter
            if not limiter.has_capacity():
                last = self._noticed.get(key)
                if last is None or now - last >= self._notice_every:
                    self._noticed[key] = now
                    self._to_tell.add(key)
            await limiter.acquire()
        self._passes[key] += 1

    async def take_turn(self, key: str, now: datetime) -> bool:
        """Use the sender's admission, waiting for one if none was taken; True to tell them."""
        if not self._passes.get(key):
            await self.admit(key, now)
        self._passes[key] -= 1
        if not self._passes[key]:
            del self._passes[key]
        if key in self._to_tell:
            self._to_tell.discard(key)
            return True
        return False

    def _prune(self, now: datetime) -> None:
        for key, limiter in list(self._limiters.items()):
            if limiter.has_capacity(self._burst) and key not in self._passes:
                del self._limiters[key]
        for key, when in list(self._noticed.items()):
            if now - when >= self._notice_every:
                del self._noticed[key]


class Dispatcher:
    """Handle each incoming message once, in one transaction, and say what to answer."""

    def __init__(
        self,
        services: Services,
        routes: Routes,
        *,
        turns: transactions.WriteTurns | None = None,
        flood_rate: float = 1.0,
        flood_burst: int = 8,
        flood_notice_every: timedelta = timedelta(minutes=1),
    ) -> None:
        self._services = services
        self._routes = routes
        self._locks = _KeyedLocks()
        # A person sending faster than anyone types (a script, a stuck key) is slowed down,
        # so they cannot take the database and the workers from everyone else.
        self._flood = _FloodGuard(flood_rate, flood_burst, flood_notice_every)
        # Messages in their transaction at once. More would not go faster (a transaction is a
        # few round trips on a busy core) but would outgrow the connection pool, whose
        # overflow connections are opened and closed again for each use. On SQLite, one.
        self.turns = turns or transactions.WriteTurns(one_writer=False)
        self._journal: ReplyJournal | None = None

    def journal_replies(self, channel: str) -> ReplyJournal:
        """Write a channel's answers to the outbox as they are decided; the channel finishes them.

        A channel calls it when it will send each outcome's `journal_ids` replies and then
        finish (or hand over) those rows: answers then survive the process dying before sending.
        """
        if self._journal is None:
            self._journal = ReplyJournal(
                self._services.sessions, self._services.clock, turns=self.turns
            )
        self._journal.channels.add(channel)
        return self._journal

    async def handle(self, incoming: Incoming) -> Outcome:
        """Handle one message; a failure becomes an apology with a reference id.

        Raises DatabaseUnavailableError when the database cannot be reached.
        """
        incoming = self._normalise(incoming)
        sender = f"{incoming.channel}:{incoming.user_id}"
        # Messages of one user are handled in the order they arrived.
        async with self._locks.hold(sender):
            slowed = await self._flood.take_turn(sender, self._services.clock.now())
            try:
                outcome = await self._handle(incoming)
                if slowed and outcome.replies:  # not for a redelivered update answered before
                    outcome.replies.insert(0, Reply(self._services.texts("flood.slowed")))
                return outcome
            except Exception as error:
                if is_connection_error(error):
                    # Not the handler's fault: the update stays stored and unhandled (its
                    # transaction rolled back), and the channel retries it once the database
                    # is back, instead of apologising for an error.
                    raise DatabaseUnavailableError(str(error)) from error
                ref = secrets.token_hex(4).upper()
                log.exception("handler failed [ref %s] on %s update", ref, incoming.channel)
                await self._record_failure(incoming, ref)
                return Outcome(replies=[Reply(self._services.texts("error.unexpected", ref=ref))])

    def turn(self, incoming: Incoming) -> AbstractAsyncContextManager[None]:
        """Hold the sender's turn, for a channel recording something of theirs itself.

        Their messages being handled meanwhile would otherwise race it to create their account.
        """
        return self._locks.hold(f"{incoming.channel}:{incoming.user_id}")

    async def admit(self, incoming: Incoming) -> None:
        """Wait, before taking a channel's worker, until the sender may be handled again.

        A channel calls it in the order messages arrived, then `handle`; a sender over the
        flood rate waits here holding nothing that others need.
        """
        sender = f"{incoming.channel}:{incoming.user_id}"
        await self._flood.admit(sender, self._services.clock.now())

    def _normalise(self, incoming: Incoming) -> Incoming:
        text = clean(incoming.text) if incoming.text is not None else None
        # A name from the messenger is shown to officers: one clean line.
        name = clean_line(incoming.display_name)[:128] or None if incoming.display_name else None
        return replace(incoming, text=text, display_name=name)

    async def _handle(self, incoming: Incoming) -> Outcome:
        async with self.turns.message():
            try:
                return await self._handle_once(incoming, wait=False)
            except accounts.AccountBusyError:
                # Another process is handling this person's previous message: wait for it.
                return await self._handle_once(incoming, wait=True)

    async def _handle_once(self, incoming: Incoming, *, wait: bool) -> Outcome:
        services = self._services
        now = services.clock.now()
        # The session's transaction begins with the claim and is committed below; anything
        # leaving early (a redelivered update, an error) rolls it back as the session closes.
        async with services.sessions() as session:
            # Record the update as handled in this same transaction: at most once.
            loaded = await accounts.take_and_load(
                session,
                channel=incoming.channel,
                update_key=incoming.update_key,
                external_id=incoming.user_id,
                chat_id=incoming.chat_id,
                display_name=incoming.display_name,
                now=now,
                wait=wait,
            )
            if loaded is None:
                log.info("update %s:%s already handled", incoming.channel, incoming.update_key)
                return Outcome()
            account, conversation, member = loaded
            ctx = Context(
                services=services,
                session=session,
                incoming=self._numbered_choice(incoming, conversation),
                now=now,
                account=account,
                conversation=conversation,
                member=member,
            )
            await self._route(ctx)
            self._stamp_nonce(ctx)
            self._remember_menu(ctx)
            journal = self._journal
            if journal is not None and ctx.outcome.replies and incoming.channel in journal.channels:
                # The answers become durable with the step that produced them.
                ctx.outcome.journal_ids = await journal.write_and_commit(
                    session,
                    account_id=account.id,
                    channel=incoming.channel,
                    payloads=[reply.to_dict() for reply in ctx.outcome.replies],
                    now=now,
                )
            else:
                await transactions.commit(session)
        if ctx.outcome.journal_ids and self._journal is not None:
            self._journal.hold(ctx.outcome.journal_ids)  # committed: renewed until sent
        return ctx.outcome

    def _numbered_choice(self, incoming: Incoming, conversation: Conversation) -> Incoming:
        """On a channel without buttons, read "2" or an option's words as pressing it."""
        traits = self._services.channels.get(incoming.channel)
        menu = conversation.menu
        if traits is None or traits.buttons or incoming.choice or not incoming.text or not menu:
            return incoming
        items: list[list[str]] = menu.get("items", [])
        answer = incoming.text.strip().rstrip(".)")
        if answer.isdigit() and 1 <= int(answer) <= len(items):
            return replace(incoming, choice=items[int(answer) - 1][1], text=None)
        folded = fold(answer)
        for label, data in items:
            if folded and fold(label) == folded:
                return replace(incoming, choice=data, text=None)
        return incoming

    def _stamp_nonce(self, ctx: Context) -> None:
        """Give every offered choice the nonce of the step the conversation ended in."""
        placeholder = f"{CHOICE_PREFIX}:{NONCE_PLACEHOLDER}:"
        stamped = f"{CHOICE_PREFIX}:{ctx.conversation.nonce}:"
        ctx.outcome.replies = [
            replace(
                reply,
                choices=tuple(
                    replace(c, data=stamped + c.data[len(placeholder) :])
                    if c.data.startswith(placeholder)
                    else c
                    for c in reply.choices
                ),
            )
            if reply.choices
            else reply
            for reply in ctx.outcome.replies
        ]

    def _remember_menu(self, ctx: Context) -> None:
        """Keep the last numbered menu shown, so a typed number can be read later."""
        traits = self._services.channels.get(ctx.incoming.channel)
        if traits is None or traits.buttons or not ctx.outcome.replies:
            return
        last = ctx.outcome.replies[-1]
        ctx.conversation.menu = (
            {"items": [[c.label, c.data] for c in last.choices]} if last.choices else None
        )

    async def _route(self, ctx: Context) -> None:
        incoming = ctx.incoming
        if incoming.choice is not None:
            await self._route_choice(ctx, incoming.choice)
            return
        if ctx.text.startswith("/"):
            await self._route_command(ctx)
            return
        flow = ctx.conversation.flow
        if flow is not None and flow in self._routes.flows:
            await self._routes.flows[flow](ctx)
            return
        if flow is not None:  # a flow that no longer exists after an upgrade
            ctx.leave()
        if self._routes.text is not None:
            await self._routes.text(ctx)
        elif ctx.active_member is None:
            ctx.say_standing()
        else:
            ctx.say("hint.free_text")

    async def _route_command(self, ctx: Context) -> None:
        word, _, _rest = ctx.text[1:].partition(" ")
        name = word.split("@", 1)[0].lower()
        command = self._routes.commands.get(name)
        if command is None:
            ctx.say("hint.unknown_command", command="/" + name[:32])
            return
        if not command.keeps_flow:
            ctx.leave()
        await command.handler(ctx)

    async def _route_choice(self, ctx: Context, data: str) -> None:
        kind, _, rest = data.partition(":")
        if kind == CHOICE_PREFIX:
            nonce, _, value = rest.partition(":")
            flow = ctx.conversation.flow
            if flow is None or flow not in self._routes.flows or nonce != ctx.conversation.nonce:
                self._refuse_choice(ctx, "choice.stale")
                return
            ctx.pressed = value
            ctx.outcome.choice_accepted = True
            await self._routes.flows[flow](ctx)
            return
        if kind == ACTION_PREFIX:
            name, *args = rest.split(":")
            action = self._routes.actions.get(name)
            # Button data can be forged: a number in it must be one of our ids.
            forged = any(arg.isdigit() and parse_id(arg) is None for arg in args)
            if action is not None and not forged:
                await action(ctx, args)
                return
        self._refuse_choice(ctx, "choice.invalid")

    def _refuse_choice(self, ctx: Context, key: str) -> None:
        text = ctx.t(key)
        ctx.outcome.choice_notice = text
        ctx.reply(text)

    async def _record_failure(self, incoming: Incoming, ref: str) -> None:
        try:
            async with self.turns.writing(self._services.sessions) as session:
                now = self._services.clock.now()
                await inbox.store(
                    session,
                    channel=incoming.channel,
                    update_key=incoming.update_key,
                    payload=None,
                    now=now,
                    processed=True,
                )
                await inbox.record_failure(
                    session,
                    channel=incoming.channel,
                    update_key=incoming.update_key,
                    error_ref=ref,
                    now=now,
                )
        except Exception:
            log.exception("could not record failure [ref %s]", ref)
