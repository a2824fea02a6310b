"""Upward reports (báo cáo kết quả): the report deadlines of a campaign and who has submitted."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Campaign, Deadline, DeadlineKind, ReportSubmission, Unit, UnitKind
from storage.units import in_subtree


async def report_deadlines(session: AsyncSession, campaign_id: int) -> Sequence[Deadline]:
    """Return the campaign's active report deadlines, earliest first."""
    rows = await session.scalars(
        select(Deadline)
        .where(
            Deadline.campaign_id == campaign_id,
            Deadline.kind == DeadlineKind.REPORT,
            Deadline.active.is_(True),
        )
        .order_by(Deadline.due_on, Deadline.id)
    )
    return rows.all()


def period_of(campaign: Campaign, deadline: Deadline, all_deadlines: Sequence[Deadline]) -> date:
    """Return the first day a report covers: the day after the previous report was due."""
    earlier = [d.due_on for d in all_deadlines if d.due_on < deadline.due_on]
    start = max(earlier) if earlier else None
    if start is None:
        return campaign.starts_on
    return date.fromordinal(start.toordinal() + 1)


async def submission(
    session: AsyncSession, deadline_id: int, unit_id: int
) -> ReportSubmission | None:
    return await session.scalar(
        select(ReportSubmission).where(
            ReportSubmission.deadline_id == deadline_id, ReportSubmission.unit_id == unit_id
        )
    )


async def submitted_units(session: AsyncSession, deadline_id: int) -> set[int]:
    """Return the ids of the units that have submitted a report for a deadline."""
    rows = await session.scalars(
        select(ReportSubmission.unit_id).where(ReportSubmission.deadline_id == deadline_id)
    )
    return set(rows.all())


async def grassroots_under(session: AsyncSession, root: Unit) -> Sequence[Unit]:
    """Return the CĐCS at or under `root`, by name: the units that report."""
    rows = await session.scalars(
        select(Unit)
        .where(in_subtree(root.path), Unit.kind == UnitKind.GRASSROOTS)
        .order_by(Unit.name)
    )
    return rows.all()
