"""The audit log: record officers' and admins' actions, and read them back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditEntry, Member, Unit


@dataclass(frozen=True, slots=True)
class Row:
    """One entry with the names a reader needs: who, and which unit."""

    entry: AuditEntry
    actor: str | None
    unit_code: str | None
    unit_name: str | None


def record(
    session: AsyncSession,
    *,
    now: datetime,
    actor: Member | None,
    via: str,
    action: str,
    unit_id: int | None = None,
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add one entry in the caller's transaction, so it stands or falls with the action."""
    entry = AuditEntry(
        at=now,
        actor_id=actor.id if actor is not None else None,
        via=via,
        action=action,
        unit_id=unit_id,
        subject=subject,
        detail=detail or {},
    )
    session.add(entry)
    return entry


async def rows(
    session: AsyncSession,
    *,
    within: Unit | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> list[Row]:
    """Return entries newest first, with actor and unit names, optionally within a subtree."""
    statement = (
        select(AuditEntry, Member.full_name, Unit.code, Unit.name)
        .outerjoin(Member, Member.id == AuditEntry.actor_id)
        .outerjoin(Unit, Unit.id == AuditEntry.unit_id)
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .offset(offset)
    )
    if within is not None:
        inside = Unit.path.startswith(within.path)
        # Entries about no unit (whole-file imports) belong to the top of the tree.
        statement = statement.where(
            or_(inside, AuditEntry.unit_id.is_(None)) if within.parent_id is None else inside
        )
    if since is not None:
        statement = statement.where(AuditEntry.at >= since)
    if until is not None:
        statement = statement.where(AuditEntry.at < until)
    if limit is not None:
        statement = statement.limit(limit)
    result = await session.execute(statement)
    return [Row(entry, actor, code, name) for entry, actor, code, name in result]


async def entries(
    session: AsyncSession,
    *,
    within: Unit | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
) -> Sequence[tuple[AuditEntry, str | None, str | None]]:
    """Return (entry, actor name, unit name), newest first, optionally within a subtree."""
    found = await rows(session, within=within, since=since, until=until, limit=limit)
    return [(row.entry, row.actor, row.unit_name) for row in found]
