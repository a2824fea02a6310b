"""Queries on messenger accounts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ChannelAccount


async def touch(
    session: AsyncSession,
    *,
    channel: str,
    external_id: str,
    chat_id: str,
    display_name: str | None,
    now: datetime,
    lock: bool = True,
) -> ChannelAccount:
    """Return the account, created on first contact, marked reachable and seen now.

    With `lock`, the row stays locked (on PostgreSQL) until the caller's transaction ends,
    so one user's messages are handled one after another even across processes.
    """
    statement = select(ChannelAccount).where(
        ChannelAccount.channel == channel, ChannelAccount.external_id == external_id
    )
    if lock:
        statement = statement.with_for_update()
    account = await session.scalar(statement)
    if account is None:
        # A row this transaction inserts stays locked until it ends, like a selected one.
        account = await _create(session, channel, external_id, chat_id, display_name, now)
    account.chat_id = chat_id
    account.reachable = True
    account.last_seen_at = now
    if display_name:
        account.display_name = display_name[:128]
    return account


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
    """Return the account a member is reached on: the most recently used reachable one."""
    for account in await of_member(session, member_id):
        if account.reachable:
            return account
    return None
