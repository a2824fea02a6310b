"""Import a campaign file: create or update the campaign and its parts by their codes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.campaign_file import CampaignFile, CampaignFileError, CampaignProblem
from storage.models import Campaign, Deadline, Milestone, Movement, Phase, Unit


@dataclass
class SectionReport:
    """What an import did to one kind of row."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # Rows no longer in the file: kept (commitments may refer to them) but inactive.
    deactivated: int = 0

    @property
    def changed(self) -> bool:
        """Tell whether any row was created, updated or deactivated."""
        return bool(self.created or self.updated or self.deactivated)


@dataclass
class CampaignImportReport:
    """What an import did, per section; `campaign` counts the campaign row itself."""

    code: str
    campaign_id: int
    campaign: SectionReport = field(default_factory=SectionReport)
    movements: SectionReport = field(default_factory=SectionReport)
    phases: SectionReport = field(default_factory=SectionReport)
    milestones: SectionReport = field(default_factory=SectionReport)
    deadlines: SectionReport = field(default_factory=SectionReport)

    @property
    def changed(self) -> bool:
        """Tell whether the import changed anything at all."""
        parts = (self.campaign, self.movements, self.phases, self.milestones, self.deadlines)
        return any(part.changed for part in parts)


_Row = TypeVar("_Row", Movement, Phase, Milestone, Deadline)


async def import_campaign(
    session: AsyncSession, campaign_file: CampaignFile, now: datetime
) -> CampaignImportReport:
    """Create or update a campaign from a valid file; change nothing if its root unit is unknown."""
    info = campaign_file.campaign
    root_id = await session.scalar(select(Unit.id).where(Unit.code == info.root_unit))
    if root_id is None:
        path = "campaign.root_unit"
        problem = CampaignProblem(
            campaign_file.line_of(path), path, "unknown_unit", {"code": info.root_unit}
        )
        raise CampaignFileError([problem])

    values: dict[str, Any] = {
        "name": campaign_file.render(info.name),
        "year": info.year,
        "root_unit_id": root_id,
        "starts_on": info.starts_on,
        "ends_on": info.ends_on,
        "description": campaign_file.render(info.description),
        "options": campaign_file.options.stored(),
    }
    campaign = await session.scalar(select(Campaign).where(Campaign.code == info.code))
    own = SectionReport()
    if campaign is None:
        campaign = Campaign(code=info.code, created_at=now, updated_at=now, **values)
        session.add(campaign)
        await session.flush()
        own.created = 1
    elif _assign(campaign, values):
        own.updated = 1
    else:
        own.unchanged = 1

    report = CampaignImportReport(code=info.code, campaign_id=campaign.id, campaign=own)
    report.movements = await _sync(session, Movement, campaign.id, _movements(campaign_file))
    report.phases = await _sync(session, Phase, campaign.id, _phases(campaign_file))
    report.milestones = await _sync(session, Milestone, campaign.id, _milestones(campaign_file))
    report.deadlines = await _sync(session, Deadline, campaign.id, _deadlines(campaign_file))
    if report.changed and not own.created:
        # Any change to the campaign or its parts dates the campaign.
        campaign.updated_at = now
    await session.flush()
    return report


def _movements(campaign_file: CampaignFile) -> list[dict[str, Any]]:
    return [
        {
            "code": movement.code,
            "kind": movement.kind,
            "name": campaign_file.render(movement.name),
            "description": campaign_file.render(movement.description),
            "sectors": [sector.value for sector in movement.sectors],
            "position": position,
        }
        for position, movement in enumerate(campaign_file.movements)
    ]


def _phases(campaign_file: CampaignFile) -> list[dict[str, Any]]:
    return [
        {
            "code": phase.code,
            "number": phase.number,
            "name": campaign_file.render(phase.name),
            "starts_on": phase.starts_on,
            "ends_on": phase.ends_on,
            "focus": campaign_file.render(phase.focus),
        }
        for phase in campaign_file.phases
    ]


def _milestones(campaign_file: CampaignFile) -> list[dict[str, Any]]:
    return [
        {
            "code": milestone.code,
            "kind": milestone.kind,
            "falls_on": campaign_file.milestone_date(milestone),
            "announce_at": milestone.announce_at,
            "title": campaign_file.milestone_title(milestone),
            "announcement": campaign_file.milestone_announcement(milestone),
            "notice_days": list(milestone.notice_days),
        }
        for milestone in campaign_file.milestones
    ]


def _deadlines(campaign_file: CampaignFile) -> list[dict[str, Any]]:
    return [
        {
            "code": deadline.code,
            "kind": deadline.kind,
            "title": campaign_file.render(deadline.title),
            "due_on": deadline.due_on,
            "audience": deadline.audience,
            "reminder_days": list(deadline.reminder_days),
        }
        for deadline in campaign_file.deadlines
    ]


async def _sync(
    session: AsyncSession, model: type[_Row], campaign_id: int, wanted: Sequence[dict[str, Any]]
) -> SectionReport:
    """Make the campaign's rows of `model` match `wanted`, matched by code."""
    report = SectionReport()
    rows = await session.scalars(select(model).where(model.campaign_id == campaign_id))
    existing = {row.code: row for row in rows}
    for values in wanted:
        row = existing.pop(values["code"], None)
        if row is None:
            session.add(model(campaign_id=campaign_id, active=True, **values))
            report.created += 1
        elif _assign(row, {**values, "active": True}):
            report.updated += 1
        else:
            report.unchanged += 1
    for row in existing.values():
        if row.active:
            row.active = False
            report.deactivated += 1
    return report


def _assign(row: Any, values: dict[str, Any]) -> bool:
    """Set the attributes that differ; return whether any did."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed
