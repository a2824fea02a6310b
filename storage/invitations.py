"""Queries on invitation codes."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Invitation, Role, Unit, UnitKind

# No 0/O or 1/I/L: codes are read aloud and typed on phones.
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
# Bounds of a code's uses and lifetime: a province's largest CĐCS, ten years.
USES_MAX = 100_000
DAYS_MAX = 3650


class InvitationProblem(enum.StrEnum):
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED_UP = "used_up"


def admits(role: Role, unit: Unit) -> bool:
    """Tell whether a code may make someone of `role` in `unit`: members belong to a CĐCS."""
    return role != Role.MEMBER or unit.kind == UnitKind.GRASSROOTS


def new_code() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(code: str) -> str:
    return code.strip().upper()


def looks_like_code(text: str) -> bool:
    """Tell whether a text could be an invitation code, before asking the database."""
    code = normalize_code(text)
    return len(code) == CODE_LENGTH and all(ch in _ALPHABET for ch in code)


async def create(
    session: AsyncSession,
    *,
    unit: Unit,
    role: Role,
    uses: int,
    days: int,
    now: datetime,
    created_by_id: int | None = None,
) -> Invitation:
    """Create an invitation with a fresh random code."""
    invitation = Invitation(
        code=new_code(),
        unit_id=unit.id,
        role=role,
        expires_at=now + timedelta(days=days),
        uses_left=uses,
        created_by_id=created_by_id,
        created_at=now,
    )
    session.add(invitation)
    await session.flush()
    return invitation


async def find(session: AsyncSession, code: str) -> Invitation | None:
    return await session.scalar(select(Invitation).where(Invitation.code == normalize_code(code)))


def problem(invitation: Invitation | None, now: datetime) -> InvitationProblem | None:
    """Say why an invitation cannot be used now, or None when it can."""
    if invitation is None:
        return InvitationProblem.UNKNOWN
    if invitation.expires_at <= now:
        return InvitationProblem.EXPIRED
    if invitation.uses_left <= 0:
        return InvitationProblem.USED_UP
    return None


async def consume(session: AsyncSession, code: str, now: datetime) -> bool:
    """Take one use of the invitation atomically; False when none is left or it expired."""
    result = await session.execute(
        update(Invitation)
        .where(
            Invitation.code == normalize_code(code),
            Invitation.uses_left > 0,
            Invitation.expires_at > now,
        )
        .values(uses_left=Invitation.uses_left - 1)
    )
    return bool(getattr(result, "rowcount", 0))
