"""The dispatcher: one path from an incoming message to the handlers and back."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from handlers.context import ACTION_PREFIX, CHOICE_PREFIX, NONCE_PLACEHOLDER, Context, Services
from handlers.routing import Routes
from handlers.types import Incoming, Outcome, Reply
from storage import accounts, inbox
from storage.models import Conversation
from storage.text import clean, fold

log = logging.getLogger(__name__)


class _KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: defaultdict[str, int] = defaultdict(int)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                del self._locks[key]


class Dispatcher:
    """Handle each incoming message once, in one transaction, and say what to answer."""

    def __init__(self, services: Services, routes: Routes, *, max_transactions: int = 16) -> None:
        self._services = services
        self._routes = routes
        self._locks = _KeyedLocks()
        # Messages in their transaction at once. More would not go faster (a transaction is a
        # few round trips on a busy core) but would outgrow the connection pool, whose
        # overflow connections are opened and closed again for each use.
        self._transactions = asyncio.Semaphore(max_transactions)

    async def handle(self, incoming: Incoming) -> Outcome:
        """Handle one message; a failure becomes an apology with a reference id."""
        incoming = self._normalise(incoming)
        # Messages of one user are handled in the order they arrived.
        async with self._locks.hold(f"{incoming.channel}:{incoming.user_id}"):
            try:
                return await self._handle(incoming)
            except Exception:
                ref = secrets.token_hex(4).upper()
                log.exception("handler failed [ref %s] on %s update", ref, incoming.channel)
                await self._record_failure(incoming, ref)
                return Outcome(replies=[Reply(self._services.texts("error.unexpected", ref=ref))])

    def _normalise(self, incoming: Incoming) -> Incoming:
        text = clean(incoming.text) if incoming.text is not None else None
        return replace(incoming, text=text)

    async def _handle(self, incoming: Incoming) -> Outcome:
        async with self._transactions:
            try:
                return await self._handle_once(incoming, wait=False)
            except accounts.AccountBusyError:
                # Another process is handling this person's previous message: wait for it.
                return await self._handle_once(incoming, wait=True)

    async def _handle_once(self, incoming: Incoming, *, wait: bool) -> Outcome:
        services = self._services
        now = services.clock.now()
        async with services.sessions() as session, session.begin():
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
        if ctx.member is None:
            ctx.say("hint.not_member")
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
            if action is not None:
                await action(ctx, args)
                return
        self._refuse_choice(ctx, "choice.invalid")

    def _refuse_choice(self, ctx: Context, key: str) -> None:
        text = ctx.t(key)
        ctx.outcome.choice_notice = text
        ctx.reply(text)

    async def _record_failure(self, incoming: Incoming, ref: str) -> None:
        try:
            async with self._services.sessions() as session, session.begin():
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
