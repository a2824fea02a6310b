"""Conversation state, kept per account so that flows survive restarts."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Conversation


async def load(session: AsyncSession, account_id: int, now: datetime) -> Conversation:
    """Return the account's conversation row, creating an idle one if there is none."""
    conversation = await session.get(Conversation, account_id)
    if conversation is None:
        conversation = Conversation(
            account_id=account_id, flow=None, step=None, data={}, nonce="", updated_at=now
        )
        session.add(conversation)
    return conversation


def enter(
    conversation: Conversation, flow: str, step: str, data: dict[str, Any], now: datetime
) -> None:
    """Move the conversation to a flow's step; earlier choices become stale."""
    conversation.flow = flow
    conversation.step = step
    conversation.data = dict(data)
    conversation.nonce = secrets.token_hex(3)
    conversation.updated_at = now


def leave(conversation: Conversation, now: datetime) -> None:
    """End any flow; its data is dropped."""
    conversation.flow = None
    conversation.step = None
    conversation.data = {}
    conversation.nonce = secrets.token_hex(3)
    conversation.updated_at = now


async def remember_menu(
    session: AsyncSession, account_id: int, items: list[list[str]], now: datetime
) -> None:
    """Record the numbered menu last pushed to an account on a channel without buttons."""
    conversation = await load(session, account_id, now)
    conversation.menu = {"items": items}
