"""Queries on messenger accounts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ChannelAccount, Conversation, Member

# Seen-times closer than this are not written again: most messages then update nothing.
_SEEN_PRECISION = timedelta(minutes=5)


async def load_for_message(
    session: AsyncSession,
    *,
    channel: str,
    external_id: str,
    chat_id: str,
    display_name: str | None,
    now: datetime,
) -> tuple[ChannelAccount, Conversation, Member | None]:
    """Return the sender's account (locked on PostgreSQL), conversation and member at once.

    One query in the usual case; the account and its idle conversation are created on first
    contact. The row lock keeps one person's messages in order across processes.
    """
    statement = (
        select(ChannelAccount, Conversation, Member)
        .outerjoin(Conversation, Conversation.account_id == ChannelAccount.id)
        .outerjoin(Member, Member.id == ChannelAccount.member_id)
        .where(ChannelAccount.channel == channel, ChannelAccount.external_id == external_id)
        .with_for_update(of=ChannelAccount)
    )
    row = (await session.execute(statement)).first()
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


def _refresh(
    account: ChannelAccount, chat_id: str, display_name: str | None, now: datetime
) -> None:
    """Update what a message tells about its account, writing only what changed."""
    if account.chat_id != chat_id:
        account.chat_id = chat_id
    if not account.reachable:
        account.reachable = True  # they wrote to us: they can be written to again
    if now - account.last_seen_at > _SEEN_PRECISION:
        account.last_seen_at = now
    name = (display_name or "")[:128] or None
    if name and account.display_name != name:
        account.display_name = name


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
