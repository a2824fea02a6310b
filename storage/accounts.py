"""Queries on messenger accounts."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import configure_mappers
from sqlalchemy.orm.attributes import instance_dict, instance_state, set_committed_value

from storage import inbox, transactions
from storage.base import Base
from storage.models import ChannelAccount, Conversation, Member

# Seen-times closer than this are not written again: most messages then update nothing.
_SEEN_PRECISION = timedelta(minutes=5)

# How long after a person's last message a channel still lets the bot write to them; a channel
# not listed has no such rule. A Zalo Official Account may send consultation messages only
# within 7 days of the person's last interaction. (A seen-time may lag by _SEEN_PRECISION: the
# window is then taken as closing a few minutes early, never late.)
PUSH_WINDOWS: Mapping[str, timedelta] = {"zalo_oa": timedelta(days=7)}


_SENDER = (
    ChannelAccount.channel == bindparam("channel"),
    ChannelAccount.external_id == bindparam("external_id"),
)
# Built once: building a statement costs more than running it.
_LOCK_SENDER = select(ChannelAccount.id).where(*_SENDER).with_for_update()
_LOAD_SENDER = (
    select(ChannelAccount, Conversation, Member)
    .outerjoin(Conversation, Conversation.account_id == ChannelAccount.id)
    .outerjoin(Member, Member.id == ChannelAccount.member_id)
    .where(*_SENDER)
)


async def load_for_message(
    session: AsyncSession,
    *,
    channel: str,
    external_id: str,
    chat_id: str,
    display_name: str | None,
    now: datetime,
) -> tuple[ChannelAccount, Conversation, Member | None]:
    """Return the sender's account (locked on PostgreSQL), conversation and member.

    The account and its idle conversation are created on first contact. The row lock keeps
    one person's messages in order across processes; it is waited for if another holds it.
    """
    sender = {"channel": channel, "external_id": external_id}
    if session.get_bind().dialect.name == "postgresql":
        # Lock, then read in a statement of its own: a statement that waited for the lock
        # would still see the conversation as it was before the lock holder changed it.
        await session.execute(_LOCK_SENDER, sender)
    row = (await session.execute(_LOAD_SENDER, sender)).first()
    if row is None:
        account = await _create(session, channel, external_id, chat_id, display_name, now)
        await session.flush()
        member = await session.get(Member, account.member_id) if account.member_id else None
        conversation = None
    else:
        account, conversation, member = row
    _refresh(account, chat_id, display_name, now)
    if conversation is None:
        conversation = Conversation(
            account_id=account.id, flow=None, step=None, data={}, nonce="", updated_at=now
        )
        session.add(conversation)
    return account, conversation, member


class AccountBusyError(Exception):
    """Another transaction holds the sender's account: roll back and take the waiting path."""


async def take_and_load(
    session: AsyncSession,
    *,
    channel: str,
    update_key: str,
    external_id: str,
    chat_id: str,
    display_name: str | None,
    now: datetime,
    wait: bool = False,
) -> tuple[ChannelAccount, Conversation, Member | None] | None:
    """Claim an update as handled and load its sender: `inbox.take`, then `load_for_message`.

    Returns None if the update was handled before. On PostgreSQL, unless `wait`, both are one
    statement (one round trip) that does not wait for the sender's row lock: if another
    transaction holds it, this raises AccountBusyError and the caller rolls back and calls again
    with `wait=True`. On SQLite both run together in aiosqlite's thread (one hand-off).
    """
    dialect = session.get_bind().dialect
    row: Sequence[Any] | None = None
    if dialect.name == "sqlite":
        bound = transactions.sqlite_time(dialect)
        take = functools.partial(
            _sqlite_take_and_load, channel, update_key, bound(now), external_id
        )
        _ran, row = await transactions.on_sqlite(session, take)  # None: not on aiosqlite
    elif dialect.name == "postgresql" and not wait:
        driver = await _Driver.begin(session)
        try:
            row = await driver.fetchrow(_PG_TAKE_AND_LOAD, channel, update_key, now, external_id)
        except Exception as error:  # asyncpg's own, or SQLAlchemy's DBAPIError around it
            if _sqlstate(error) == _LOCK_NOT_AVAILABLE:
                raise AccountBusyError(f"{channel}:{external_id}") from error
            raise
    if row is None:
        if not await inbox.take(session, channel=channel, update_key=update_key, now=now):
            return None
        return await load_for_message(
            session,
            channel=channel,
            external_id=external_id,
            chat_id=chat_id,
            display_name=display_name,
            now=now,
        )
    if not row[0]:
        return None
    if row[1] is None:  # first contact: no account yet
        return await load_for_message(
            session,
            channel=channel,
            external_id=external_id,
            chat_id=chat_id,
            display_name=display_name,
            now=now,
        )
    loaders = _row_loaders(dialect)
    account = loaders[0](session, row)
    conversation = loaders[1](session, row)
    member = loaders[2](session, row)
    assert isinstance(account, ChannelAccount)
    assert conversation is None or isinstance(conversation, Conversation)
    assert member is None or isinstance(member, Member)
    seen = _seen(account, chat_id, display_name, now)
    if seen:
        # One statement rather than the ORM's flush, which costs several times as much.
        names = sorted(seen)
        values = [seen[name] for name in names]
        if dialect.name == "sqlite":
            bound = transactions.sqlite_time(dialect)
            values = [bound(v) if isinstance(v, datetime) else v for v in values]
            sql = _update_account_sql(tuple(names), "?")
            refresh = functools.partial(_sqlite_execute, sql, (*values, account.id))
            ran, _ = await transactions.on_sqlite(session, refresh)
            assert ran  # the row came from aiosqlite above
        else:
            driver = await _Driver.begin(session)
            await driver.execute(_update_account_sql(tuple(names), "$"), account.id, *values)
        for name in names:
            set_committed_value(account, name, seen[name])
    if conversation is None:
        conversation = Conversation(
            account_id=account.id, flow=None, step=None, data={}, nonce="", updated_at=now
        )
        session.add(conversation)
    return account, conversation, member


_LOCK_NOT_AVAILABLE = "55P03"


def _sqlstate(error: Exception) -> str | None:
    if isinstance(error, DBAPIError):
        return getattr(error.orig, "sqlstate", None)
    return getattr(error, "sqlstate", None)


class _Driver:
    """Statements straight on the driver, in the session's transaction (PostgreSQL).

    Straight on asyncpg when SQLAlchemy's adapter lets us begin its transaction first (BEGIN,
    as it would itself): its cursor and result layers cost about as much CPU as the round
    trip. Otherwise through `exec_driver_sql`. Either way the values come back as the driver
    gives them, with no SQLAlchemy type processing.
    """

    def __init__(self, connection: AsyncConnection | None, driver: Any) -> None:
        self._connection = connection
        self._driver = driver

    @classmethod
    async def begin(cls, session: AsyncSession) -> _Driver:
        """Begin the session's transaction now, before its first statement."""
        driver = await transactions.asyncpg_begun(session)
        if driver is not None:
            return cls(None, driver)
        return cls(await session.connection(), None)

    async def fetchrow(self, sql: str, *params: object) -> Sequence[Any]:
        """Run a statement and return its one row."""
        if self._driver is None:
            assert self._connection is not None
            return (await self._connection.exec_driver_sql(sql, params)).one()
        found = await self._driver.fetchrow(sql, *params)
        if found is None:
            raise LookupError("the statement returned no row")
        return found  # type: ignore[no-any-return]

    async def execute(self, sql: str, *params: object) -> None:
        if self._driver is None:
            assert self._connection is not None
            await self._connection.exec_driver_sql(sql, params)
        else:
            await self._driver.execute(sql, *params)


@functools.cache
def _update_account_sql(names: tuple[str, ...], style: str) -> str:
    """The refresh of an account's columns: PostgreSQL's numbered parameters ("$", the id
    first) or SQLite's question marks ("?", the id last)."""
    if style == "?":
        assignments = ", ".join(f"{name} = ?" for name in names)
        return f"UPDATE channel_accounts SET {assignments} WHERE id = ?"
    assignments = ", ".join(f"{name} = ${index}" for index, name in enumerate(names, start=2))
    return f"UPDATE channel_accounts SET {assignments} WHERE id = $1"


_SENDER_TABLES = ((ChannelAccount, "a"), (Conversation, "c"), (Member, "m"))


def _select_list() -> str:
    return ", ".join(
        f"{alias}.{column.name}"
        for model, alias in _SENDER_TABLES
        for column in model.__table__.columns
    )


# The update claimed as `inbox.take` does, and the sender loaded as `load_for_message` does,
# in one statement. The lateral join yields one row even when the account does not exist yet.
_PG_TAKE_AND_LOAD = f"""
WITH taken AS (
    INSERT INTO inbound_updates (channel, update_key, received_at, processed_at)
    VALUES ($1, $2, $3, $3)
    ON CONFLICT (channel, update_key) DO UPDATE SET processed_at = excluded.processed_at
    WHERE inbound_updates.processed_at IS NULL
    RETURNING 1
)
SELECT (SELECT count(*) FROM taken), sender.*
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT {_select_list()}
    FROM channel_accounts AS a
    LEFT JOIN conversations AS c ON c.account_id = a.id
    LEFT JOIN members AS m ON m.id = a.member_id
    WHERE a.channel = $1 AND a.external_id = $4
    FOR UPDATE OF a NOWAIT
) AS sender ON true
"""

# The same on SQLite, as two statements run together in aiosqlite's thread (one hand-off).
_SQLITE_TAKE = """
INSERT INTO inbound_updates (channel, update_key, received_at, processed_at)
VALUES (?, ?, ?, ?)
ON CONFLICT (channel, update_key) DO UPDATE SET processed_at = excluded.processed_at
WHERE inbound_updates.processed_at IS NULL
RETURNING 1
"""
_SQLITE_LOAD = f"""
SELECT {_select_list()}
FROM channel_accounts AS a
LEFT JOIN conversations AS c ON c.account_id = a.id
LEFT JOIN members AS m ON m.id = a.member_id
WHERE a.channel = ? AND a.external_id = ?
"""


def _sqlite_take_and_load(
    channel: str, update_key: str, now: object, external_id: str, db: sqlite3.Connection
) -> Sequence[Any]:
    """In aiosqlite's thread: claim the update and read its sender, a row as on PostgreSQL."""
    cursor = db.execute(_SQLITE_TAKE, (channel, update_key, now, now))
    try:
        taken = cursor.fetchone() is not None
        sender = cursor.execute(_SQLITE_LOAD, (channel, external_id)).fetchone()
    finally:
        cursor.close()
    return (int(taken), *(sender or (None,)))


def _sqlite_execute(sql: str, params: Sequence[Any], db: sqlite3.Connection) -> None:
    """In aiosqlite's thread: run one statement."""
    db.execute(sql, params).close()


_Loader = Callable[[AsyncSession, Sequence[Any]], Any]
_loaders: dict[str, tuple[_Loader, ...]] = {}


def _row_loaders(dialect: Dialect) -> tuple[_Loader, ...]:
    """Per sender table, a function turning its columns of a row into a persistent instance."""
    found = _loaders.get(dialect.name)
    if found is None:
        # Instances are built below the ORM's queries, which would otherwise configure the
        # mappers first: a fresh process's first message must not find them unconfigured.
        configure_mappers()
        start, built = 1, []  # after the claim count
        for model, _alias in _SENDER_TABLES:
            built.append(_loader(dialect, model, start))
            start += len(model.__table__.columns)
        found = _loaders[dialect.name] = tuple(built)
    return found


def _loader(dialect: Dialect, model: type[Base], start: int) -> _Loader:
    """Return what loads `model` from a row's columns from `start` on, as the ORM would.

    Each value goes through its column type's result processing; a row whose primary key is
    NULL there (the outer join found nothing) loads as None.
    """
    mapper = sa_inspect(model)
    columns = list(model.__table__.columns)
    fields = [
        (
            start + index,
            mapper.get_property_by_column(column).key,
            column.type.dialect_impl(dialect).result_processor(dialect, None),
        )
        for index, column in enumerate(columns)
    ]
    key_index = start + next(i for i, column in enumerate(columns) if column.primary_key)
    new_instance = mapper.class_manager.new_instance
    identity_key = mapper.identity_key_from_primary_key

    def load(session: AsyncSession, row: Sequence[Any]) -> Any:
        if row[key_index] is None:
            return None
        instance = new_instance()
        instance_dict(instance).update(
            (key, row[index] if process is None else process(row[index]))
            for index, key, process in fields
        )
        # Now as if a query had loaded it: persistent in the session, its changes flushed.
        # Every column is set and no history was recorded, so there is nothing to reset or
        # expire (what make_transient_to_detached does), and no related object to cascade to
        # (what Session.add walks): attach it to the identity map as a query's loading would.
        state = instance_state(instance)
        state.key = identity_key((row[key_index],))
        session.sync_session._update_impl(state)
        return instance

    return load


def _refresh(
    account: ChannelAccount, chat_id: str, display_name: str | None, now: datetime
) -> None:
    """Update what a message tells about its account, writing only what changed."""
    for name, value in _seen(account, chat_id, display_name, now).items():
        setattr(account, name, value)


def _seen(
    account: ChannelAccount, chat_id: str, display_name: str | None, now: datetime
) -> dict[str, Any]:
    """Return what a message changes about its account: the changed columns' new values."""
    changes: dict[str, Any] = {}
    if account.chat_id != chat_id:
        changes["chat_id"] = chat_id
    if not account.reachable:
        changes["reachable"] = True  # they wrote to us: they can be written to again
    if now - account.last_seen_at > _SEEN_PRECISION:
        changes["last_seen_at"] = now.astimezone(UTC)
    name = (display_name or "")[:128] or None
    if name and account.display_name != name:
        changes["display_name"] = name
    return changes


async def _create(
    session: AsyncSession,
    channel: str,
    external_id: str,
    chat_id: str,
    display_name: str | None,
    now: datetime,
) -> ChannelAccount:
    account = ChannelAccount(
        channel=channel,
        external_id=external_id,
        chat_id=chat_id,
        display_name=(display_name or "")[:128] or None,
        reachable=True,
        last_seen_at=now,
        created_at=now,
    )
    # A savepoint: if another process created the same account meanwhile, use theirs.
    try:
        async with session.begin_nested():
            session.add(account)
    except IntegrityError:
        existing = await session.scalar(
            select(ChannelAccount).where(
                ChannelAccount.channel == channel, ChannelAccount.external_id == external_id
            )
        )
        if existing is None:
            raise
        return existing
    return account


async def of_member(session: AsyncSession, member_id: int) -> Sequence[ChannelAccount]:
    """Return a member's accounts, the most recently used first."""
    statement = (
        select(ChannelAccount)
        .where(ChannelAccount.member_id == member_id)
        .order_by(ChannelAccount.last_seen_at.desc(), ChannelAccount.id)
    )
    return (await session.scalars(statement)).all()


async def mark_unreachable(session: AsyncSession, account_id: int) -> None:
    await session.execute(
        update(ChannelAccount).where(ChannelAccount.id == account_id).values(reachable=False)
    )


async def preferred(session: AsyncSession, member_id: int) -> ChannelAccount | None:
    """Return the account a member is reached on: the reachable one they chose (/lienket),
    else the most recently used reachable one."""
    reachable = [account for account in await of_member(session, member_id) if account.reachable]
    return next((account for account in reachable if account.preferred), None) or next(
        iter(reachable), None
    )


def push_window(channel: str) -> timedelta | None:
    """Return how long after a person's last message `channel` may push to them, if limited."""
    return PUSH_WINDOWS.get(channel)


def within_window(channel: str, last_seen_at: datetime, now: datetime) -> bool:
    """Tell whether a push on `channel` may reach someone last seen at `last_seen_at`."""
    window = PUSH_WINDOWS.get(channel)
    return window is None or last_seen_at >= now - window


async def pushable(
    session: AsyncSession, member_ids: Iterable[int], now: datetime
) -> dict[int, list[ChannelAccount]]:
    """Return each member's accounts a push may reach now, the most recently used first."""
    ids = set(member_ids)
    if not ids:
        return {}
    statement = (
        select(ChannelAccount)
        .where(ChannelAccount.member_id.in_(ids), ChannelAccount.reachable.is_(True))
        .order_by(ChannelAccount.last_seen_at.desc(), ChannelAccount.id)
    )
    found: dict[int, list[ChannelAccount]] = {}
    for account in (await session.scalars(statement)).all():
        if account.member_id is not None and within_window(
            account.channel, account.last_seen_at, now
        ):
            found.setdefault(account.member_id, []).append(account)
    return found


async def mark_unreachable_by_external_id(
    session: AsyncSession, channel: str, external_id: str
) -> None:
    """Mark a messenger identity unreachable (it unfollowed or blocked the bot)."""
    await session.execute(
        update(ChannelAccount)
        .where(ChannelAccount.channel == channel, ChannelAccount.external_id == external_id)
        .values(reachable=False)
    )
