"""Targets (chỉ tiêu): the number a unit is to reach in a campaign, per metric."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import Target, Unit

# Accepted initiatives (the "01 triệu sáng kiến" programme); more metrics may follow.
INITIATIVES = "initiatives"
METRICS = (INITIATIVES,)
MAX_VALUE = 10_000_000

# "25", "1000", "1.000", "1,000", "1 000", "1.000.000": whole numbers, thousands grouped by
# threes with one kind of separator.
_PLAIN = re.compile(r"\d{1,9}")
_GROUPED = re.compile(r"\d{1,3}(?:([.,\s])\d{3})(?:\1\d{3})*")


def parse_count(text: str) -> int | None:
    """Read a whole number written the Vietnamese or the English way; None if it is not one."""
    value = " ".join(text.split())
    if _PLAIN.fullmatch(value):
        return int(value)
    if _GROUPED.fullmatch(value):
        return int(re.sub(r"[.,\s]", "", value))
    return None


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A parent's target and the lower sum of its children's."""

    parent_target: int
    children_total: int
    children_without: int  # children with no target at all

    @property
    def missing(self) -> int:
        return self.parent_target - self.children_total


async def get(session: AsyncSession, unit_id: int, campaign_id: int, metric: str) -> int | None:
    """Return a unit's target, or None when it has none."""
    return await session.scalar(
        select(Target.value).where(
            Target.unit_id == unit_id, Target.campaign_id == campaign_id, Target.metric == metric
        )
    )


async def of_units(
    session: AsyncSession, unit_ids: Iterable[int], campaign_id: int, metric: str
) -> dict[int, int]:
    """Return the targets of the given units that have one, by unit id."""
    ids = list(unit_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(Target.unit_id, Target.value).where(
            Target.unit_id.in_(ids), Target.campaign_id == campaign_id, Target.metric == metric
        )
    )
    return {unit_id: int(value) for unit_id, value in rows.all()}


async def put(
    session: AsyncSession,
    *,
    unit_id: int,
    campaign_id: int,
    metric: str,
    value: int,
    now: datetime,
    set_by_id: int | None = None,
) -> int | None:
    """Set a unit's target, returning the value it replaced (None if there was none)."""
    if metric not in METRICS or not 0 <= value <= MAX_VALUE:
        raise ValueError(f"invalid target {metric}={value}")
    previous = await get(session, unit_id, campaign_id, metric)
    if previous != value:
        await upsert(
            session,
            [
                {
                    "unit_id": unit_id,
                    "campaign_id": campaign_id,
                    "metric": metric,
                    "value": value,
                    "set_by_id": set_by_id,
                    "updated_at": now,
                }
            ],
        )
    return previous


async def upsert(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert targets, or update those a unit already has for the campaign and metric."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(Target)
    statement = statement.on_conflict_do_update(
        index_elements=[Target.unit_id, Target.campaign_id, Target.metric],
        set_={
            "value": statement.excluded.value,
            "set_by_id": statement.excluded.set_by_id,
            "updated_at": statement.excluded.updated_at,
        },
    )
    await session.execute(statement, rows)


async def shortfall(
    session: AsyncSession, parent: Unit, campaign_id: int, metric: str
) -> Shortfall | None:
    """Tell whether the targets of the units right under `parent` add up to less than its own."""
    found = await shortfalls(session, campaign_id, metric, parent_ids={parent.id})
    return found[0][1] if found else None


async def shortfalls(
    session: AsyncSession,
    campaign_id: int,
    metric: str,
    *,
    parent_ids: Collection[int] | None = None,
) -> list[tuple[Unit, Shortfall]]:
    """Find the units whose children's targets add up to less than their own, by code."""
    parent, child = aliased(Unit), aliased(Unit)
    own, theirs = aliased(Target), aliased(Target)
    children_total = func.coalesce(func.sum(theirs.value), 0)
    statement = (
        select(parent, own.value, func.count(child.id), func.count(theirs.id), children_total)
        .join(own, own.unit_id == parent.id)
        .join(child, child.parent_id == parent.id)
        .outerjoin(
            theirs,
            (theirs.unit_id == child.id)
            & (theirs.campaign_id == campaign_id)
            & (theirs.metric == metric),
        )
        .where(own.campaign_id == campaign_id, own.metric == metric, own.value > 0)
        .group_by(parent.id, own.value)
        .having(children_total < own.value)
        .order_by(parent.code)
    )
    if parent_ids is not None:
        statement = statement.where(parent.id.in_(list(parent_ids)))
    return [
        (unit, Shortfall(int(value), int(total), int(children) - int(with_target)))
        for unit, value, children, with_target, total in (await session.execute(statement)).all()
    ]
