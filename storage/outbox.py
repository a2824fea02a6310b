"""The outbox: every message the bot pushes, claimed by a sender and recorded when done."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import secrets
import socket
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import accounts
from storage.clock import Clock
from storage.engine import SessionFactory
from storage.models import Broadcast, ChannelAccount, OutboxMessage, OutboxStatus
from storage.transactions import WriteTurns, asyncpg_begun, commit, on_sqlite, sqlite_time

log = logging.getLogger(__name__)

# `last_error` of a message nobody could be sent: its account was outside its channel's push
# window (accounts.PUSH_WINDOWS) and the member had no other account a push could reach.
OUTSIDE_WINDOW = "outside_window"
# `last_error` of a message whose account or broadcast was deleted before it could be sent.
RECIPIENT_GONE = "recipient_gone"


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message claimed for sending, with all a sender needs."""

    id: int
    account_id: int
    chat_id: str
    payload: dict[str, Any]
    attempts: int
    parts_done: int = 0
    # When the account's person last wrote: channels with a push window need it.
    last_seen_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of one claimed message."""

    id: int
    account_id: int
    status: OutboxStatus | None  # None: keep it pending and try again after `retry_at`
    error: str | None = None
    retry_at: datetime | None = None
    parts_done: int = 0
    # The account is outside its channel's push window: move the message to another account
    # of the member that a push can reach, or record it unreachable (`status` is ignored).
    reroute: bool = False


def enqueue(
    session: AsyncSession, *, account_id: int, channel: str, payload: dict[str, Any], now: datetime
) -> None:
    """Queue one message to an account in the caller's transaction."""
    session.add(
        OutboxMessage(account_id=account_id, channel=channel, payload=payload, created_at=now)
    )


async def claim(
    session: AsyncSession,
    *,
    channel: str,
    worker: str,
    now: datetime,
    until: datetime,
    limit: int,
) -> list[Claimed]:
    """Claim up to `limit` due messages of a channel, oldest first, for `worker` until `until`.

    On PostgreSQL the rows are picked with FOR UPDATE SKIP LOCKED, so processes sharing the
    outbox never claim the same message; a claim whose process died lapses at `until`.
    """
    claimable = (
        OutboxMessage.status == OutboxStatus.PENDING,
        OutboxMessage.channel == channel,
        or_(OutboxMessage.not_before.is_(None), OutboxMessage.not_before <= now),
        or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
    )
    # Lock the due rows once, skipping those another process holds, then claim exactly
    # those: the UPDATE joins the locked set instead of re-running the selection (which,
    # waiting on a row another process had just claimed, would claim it a second time).
    due = (
        select(OutboxMessage.id)
        .where(*claimable)
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
        # Evaluated once: an inlined CTE could be re-run while the UPDATE waits for a row.
        .prefix_with("MATERIALIZED")
    )
    rows = (
        await session.execute(
            update(OutboxMessage)
            # The conditions again, in case a row changed between locking and claiming.
            .where(OutboxMessage.id == due.c.id, *claimable)
            .values(claimed_by=worker, claimed_until=until)
            .returning(
                OutboxMessage.id,
                OutboxMessage.account_id,
                OutboxMessage.broadcast_id,
                OutboxMessage.payload,
                OutboxMessage.attempts,
                OutboxMessage.parts_done,
            )
        )
    ).all()
    if not rows:
        return []
    chats = {
        account_id: (chat_id, last_seen_at)
        for account_id, chat_id, last_seen_at in (
            await session.execute(
                select(
                    ChannelAccount.id, ChannelAccount.chat_id, ChannelAccount.last_seen_at
                ).where(ChannelAccount.id.in_({row.account_id for row in rows}))
            )
        ).all()
    }
    broadcast_ids = {row.broadcast_id for row in rows if row.broadcast_id is not None}
    shared: dict[int, dict[str, Any]] = {}
    if broadcast_ids:
        shared = dict(
            (
                await session.execute(
                    select(Broadcast.id, Broadcast.payload).where(Broadcast.id.in_(broadcast_ids))
                )
            ).all()
        )
    # Without foreign keys, a row may outlive its account or broadcast: fail it for good.
    orphans = [
        row.id
        for row in rows
        if row.account_id not in chats or (row.payload is None and row.broadcast_id not in shared)
    ]
    if orphans:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(orphans))
            .values(
                status=OutboxStatus.FAILED,
                last_error=RECIPIENT_GONE,
                claimed_by=None,
                claimed_until=None,
            )
        )
    claimed = [
        Claimed(
            id=row.id,
            account_id=row.account_id,
            chat_id=chats[row.account_id][0],
            payload=row.payload if row.payload is not None else shared[row.broadcast_id],
            attempts=row.attempts,
            parts_done=row.parts_done,
            last_seen_at=chats[row.account_id][1],
        )
        for row in rows
        if row.id not in orphans
    ]
    return sorted(claimed, key=lambda c: c.id)


async def record(session: AsyncSession, outcomes: Iterable[SendResult], now: datetime) -> None:
    """Record a batch of outcomes, one statement per kind of outcome."""
    final: dict[tuple[OutboxStatus, str | None], list[int]] = {}
    rerouted: list[SendResult] = []
    for outcome in outcomes:
        if outcome.reroute:
            rerouted.append(outcome)
        elif outcome.status is None:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == outcome.id)
                .values(
                    attempts=OutboxMessage.attempts + 1,
                    parts_done=outcome.parts_done,
                    last_error=outcome.error,
                    not_before=outcome.retry_at,
                    claimed_by=None,
                    claimed_until=None,
                )
            )
        else:
            final.setdefault((outcome.status, outcome.error), []).append(outcome.id)
    for (status, error), ids in final.items():
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(
                status=status,
                attempts=OutboxMessage.attempts + 1,
                last_error=error,
                sent_at=now if status == OutboxStatus.SENT else None,
                claimed_by=None,
                claimed_until=None,
            )
        )
    if rerouted:
        await _reroute(session, rerouted, now)


async def _reroute(session: AsyncSession, outcomes: list[SendResult], now: datetime) -> None:
    """Move messages to another account of their member a push can reach now, else give up.

    A message moved to another channel waits there as a new one: from its first part, by
    whichever process sends that channel.
    """
    members = dict(
        (
            await session.execute(
                select(ChannelAccount.id, ChannelAccount.member_id).where(
                    ChannelAccount.id.in_({outcome.account_id for outcome in outcomes})
                )
            )
        ).all()
    )
    candidates = await accounts.pushable(
        session, (m for m in members.values() if m is not None), now
    )
    stranded: list[int] = []
    for outcome in outcomes:
        member_id = members.get(outcome.account_id)
        others = [a for a in candidates.get(member_id or 0, []) if a.id != outcome.account_id]
        if not others:
            stranded.append(outcome.id)
            continue
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == outcome.id)
            .values(
                account_id=others[0].id,
                channel=others[0].channel,
                parts_done=0,
                not_before=None,
                claimed_by=None,
                claimed_until=None,
            )
        )
    if stranded:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(stranded))
            .values(
                status=OutboxStatus.UNREACHABLE,
                attempts=OutboxMessage.attempts + 1,
                last_error=OUTSIDE_WINDOW,
                claimed_by=None,
                claimed_until=None,
            )
        )


async def renew(session: AsyncSession, ids: Iterable[int], *, worker: str, until: datetime) -> None:
    """Extend this worker's claims on messages it is still sending."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(list(ids)), OutboxMessage.claimed_by == worker)
        .values(claimed_until=until)
    )


async def release_claims(session: AsyncSession) -> int:
    """Release every claim; only safe when this is the one process sending (SQLite)."""
    result = await session.execute(
        update(OutboxMessage)
        .where(
            and_(
                OutboxMessage.status == OutboxStatus.PENDING,
                OutboxMessage.claimed_by.is_not(None),
            )
        )
        .values(claimed_by=None, claimed_until=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def withdraw(session: AsyncSession, broadcast_id: int, account_ids: Iterable[int]) -> int:
    """Take some accounts' still unsent messages of a broadcast back out of the queue."""
    ids = list(account_ids)
    if not ids:
        return 0
    result = await session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.broadcast_id == broadcast_id,
            OutboxMessage.account_id.in_(ids),
            OutboxMessage.status == OutboxStatus.PENDING,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def pending_ids(session: AsyncSession, channel: str) -> Sequence[int]:
    """Return the ids of pending messages of a channel (for tests and reports)."""
    rows = await session.scalars(
        select(OutboxMessage.id).where(
            OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.channel == channel
        )
    )
    return rows.all()


# --- the reply journal ------------------------------------------------------------------------

_TABLE = cast(Table, OutboxMessage.__table__)
# Answers as outbox rows already claimed by the answering process, in one statement and one
# round trip straight on asyncpg (its prepared statement is cached per connection).
_PG_JOURNAL = """
INSERT INTO outbox (account_id, channel, payload, status, attempts, parts_done,
                    claimed_by, claimed_until, created_at)
SELECT $1, $2, p::jsonb, 'pending', 0, 0, $4, $5, $6
FROM unnest($3::text[]) WITH ORDINALITY AS t (p, n)
ORDER BY n
RETURNING id
"""
_JOURNAL = (
    insert(_TABLE)
    .values(
        account_id=bindparam("account_id"),
        channel=bindparam("channel"),
        payload=bindparam("payload", type_=_TABLE.c.payload.type),
        status=OutboxStatus.PENDING,
        attempts=0,
        parts_done=0,
        claimed_by=bindparam("claimed_by"),
        claimed_until=bindparam("claimed_until", type_=_TABLE.c.claimed_until.type),
        created_at=bindparam("created_at", type_=_TABLE.c.created_at.type),
    )
    .returning(_TABLE.c.id)
)
_PG_JOURNAL_ONE = """
INSERT INTO outbox (account_id, channel, payload, status, attempts, parts_done,
                    claimed_by, claimed_until, created_at)
VALUES ($1, $2, $3::jsonb, 'pending', 0, 0, $4, $5, $6)
RETURNING id
"""
_SQLITE_JOURNAL_ONE = """
INSERT INTO outbox (account_id, channel, payload, status, attempts, parts_done,
                    claimed_by, claimed_until, created_at)
VALUES (?, ?, ?, 'pending', 0, 0, ?, ?, ?)
RETURNING id
"""


def _sqlite_journal(rows: Sequence[tuple[object, ...]], db: sqlite3.Connection) -> list[int]:
    """In aiosqlite's thread: journal answers, one statement each, in one hand-off."""
    ids = []
    for row in rows:
        cursor = db.execute(_SQLITE_JOURNAL_ONE, row)
        try:
            ids.append(int(cursor.fetchone()[0]))
        finally:
            cursor.close()
    return ids


# While answers keep being finished, they gather this long between commits: a commit shared
# by many costs each answer little. A lone answer is finished at once.
_FINISH_GATHER = 0.05
_PG_FINISH = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"


class ReplyJournal:
    """Answers written to the outbox in the transaction that handled their message.

    A channel answers at once as before, then `finish`es the rows (deleted in a shared
    transaction, a group commit). The rows are claimed by this process with a short lease that
    it renews while they wait to be sent; if the process dies, the lease lapses and the delivery
    engine sends them: at least once, a duplicate only for answers sent and not yet finished.
    """

    def __init__(
        self,
        sessions: SessionFactory,
        clock: Clock,
        *,
        lease: timedelta = timedelta(seconds=10),
        max_batch: int = 1000,
        turns: WriteTurns | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._turns = turns or WriteTurns(one_writer=False)
        self.lease = lease
        self._max_batch = max_batch
        self.worker = f"{socket.gethostname()[:20]}:{os.getpid()}:{secrets.token_hex(3)}"
        self.channels: set[str] = set()
        self._held: set[int] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._finishing: list[tuple[list[int], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def write_and_commit(
        self,
        session: AsyncSession,
        *,
        account_id: int,
        channel: str,
        payloads: Sequence[dict[str, Any]],
        now: datetime,
    ) -> list[int]:
        """Journal answers in the caller's transaction and commit it; return their ids, in order.

        On SQLite the answers and the COMMIT go to aiosqlite's thread in one hand-off.
        """
        until = now + self.lease
        driver = await asyncpg_begun(session)
        if driver is not None:
            ids = await self._write_postgres(driver, account_id, channel, payloads, until, now)
            await commit(session)
            return ids
        dialect = session.get_bind().dialect
        # (Inside a savepoint, the COMMIT would not be the session's to send.)
        if dialect.name == "sqlite" and not session.in_nested_transaction():
            bound = sqlite_time(dialect)
            times = (bound(until), bound(now))
            rows = [
                (account_id, channel, json.dumps(p, ensure_ascii=False), self.worker, *times)
                for p in payloads
            ]
            if session.new or session.dirty or session.deleted:
                await session.flush()  # the handler's changes, before the COMMIT below
            journal = functools.partial(_sqlite_journal, rows)
            ran, found = await on_sqlite(session, journal, commit=True)
            if ran and found is not None:
                await session.commit()  # committed already: ends the session's side of it
                return list(found)
        connection = await session.connection()
        result = await connection.execute(
            _JOURNAL,
            [
                {
                    "account_id": account_id,
                    "channel": channel,
                    "payload": payload,
                    "claimed_by": self.worker,
                    "claimed_until": until,
                    "created_at": now,
                }
                for payload in payloads
            ],
        )
        ids = sorted(result.scalars())
        await commit(session)
        return ids

    async def _write_postgres(
        self,
        driver: Any,
        account_id: int,
        channel: str,
        payloads: Sequence[dict[str, Any]],
        until: datetime,
        now: datetime,
    ) -> list[int]:
        """Journal answers straight on asyncpg, in one statement and one round trip."""
        if len(payloads) == 1:  # the common case: a simpler statement, no array
            text = json.dumps(payloads[0], ensure_ascii=False)
            found = await driver.fetchval(
                _PG_JOURNAL_ONE, account_id, channel, text, self.worker, until, now
            )
            return [found]
        texts = [json.dumps(p, ensure_ascii=False) for p in payloads]
        rows = await driver.fetch(_PG_JOURNAL, account_id, channel, texts, self.worker, until, now)
        return sorted(row[0] for row in rows)

    def hold(self, ids: Iterable[int]) -> None:
        """Keep renewing these rows' claims (committed now) until they are finished."""
        self._held.update(ids)
        if self._held and self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_while_held(), name="reply-journal")

    async def finish(self, ids: Sequence[int]) -> None:
        """Forget answers sent or given up; returns once that is committed (or failed, logged)."""
        if not ids:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._finishing.append((list(ids), done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._finish_all(), name="reply-journal-writer")
        await done

    async def retry_later(
        self, ids: Sequence[int], *, parts_done: int, error: str, retry_at: datetime
    ) -> None:
        """Hand failed answers to the delivery engine's retries, the first after `parts_done`."""
        self.let_go(ids)
        async with self._turns.writing(self._sessions) as session:
            for index, message_id in enumerate(ids):
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == message_id)
                    .values(
                        attempts=1,
                        parts_done=parts_done if index == 0 else 0,
                        last_error=error,
                        not_before=retry_at,
                        claimed_by=None,
                        claimed_until=None,
                    )
                )

    def let_go(self, ids: Iterable[int]) -> None:
        """Stop renewing claims: the delivery engine sends these answers once they lapse."""
        self._held.difference_update(ids)

    async def _finish_all(self) -> None:
        try:
            busy = False
            while self._finishing:
                if busy:
                    await asyncio.sleep(_FINISH_GATHER)
                busy = True
                batch = self._finishing[: self._max_batch]
                del self._finishing[: self._max_batch]
                ids = [i for chunk, _ in batch for i in chunk]
                try:
                    async with self._turns.writing(self._sessions) as session:
                        driver = await asyncpg_begun(session)
                        if driver is not None:
                            await driver.execute(_PG_FINISH, ids)
                        else:
                            await session.execute(delete(_TABLE).where(_TABLE.c.id.in_(ids)))
                except Exception as error:
                    # The claims lapse and the answers go out again: a duplicate, not a loss.
                    log.warning("could not finish %d journaled answers: %r", len(ids), error)
                self._held.difference_update(ids)
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._writer = None
            for _, done in self._finishing:
                if not done.done():
                    done.set_result(None)
            self._finishing.clear()

    async def _renew_while_held(self) -> None:
        try:
            while self._held:
                await asyncio.sleep(self.lease.total_seconds() / 3)
                ids = list(self._held)
                if not ids:
                    break
                try:
                    until = self._clock.now() + self.lease
                    async with self._turns.writing(self._sessions) as session:
                        await renew(session, ids, worker=self.worker, until=until)
                except Exception:
                    log.exception("could not renew the claims of journaled answers")
        finally:
            self._renewer = None
