"""The schedule, derived from the database: campaign dates and scheduled broadcasts."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import broadcasts as broadcast_store
from storage import recognition, schedule_runs
from storage.models import Audience as DeadlineAudience
from storage.models import (
    Broadcast,
    BroadcastStatus,
    Campaign,
    ChannelAccount,
    Commitment,
    CommitmentKind,
    CommitmentStatus,
    Deadline,
    DeadlineKind,
    Member,
    MemberStatus,
    Milestone,
    MilestoneKind,
    Phase,
    Role,
    Unit,
)
from storage.units import in_subtree

DIGEST_WEEKDAY = 0  # Monday
ROUNDUP_WEEKDAY = 4  # Friday
OVERDUE_DAYS = (1, 3)  # days after a report's deadline when those late are reminded


class RunKind(enum.StrEnum):
    MILESTONE = "milestone"
    NOTICE = "notice"
    REMINDER = "reminder"
    OVERDUE = "overdue"  # a report not submitted after its deadline
    PHASE_START = "phase_start"
    PHASE_REVIEW = "phase_review"
    DIGEST = "digest"
    BROADCAST = "broadcast"
    STORY_ROUNDUP = "story_roundup"  # the week's approved exemplar stories


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a job: what, when (UTC), and until when it still makes sense."""

    key: str
    kind: RunKind
    at: datetime
    subject_id: int  # the milestone, deadline, phase, campaign or broadcast it is about
    campaign_id: int | None
    title: str
    days_before: int = 0
    expires: datetime | None = None  # a reminder is pointless once its deadline has passed


@dataclass(frozen=True, slots=True)
class PlanConfig:
    """The local time zone and the time of day of reminders, phase runs and digests."""

    zone: ZoneInfo
    run_time: time = time(8, 0)


def _at(day: date, moment: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, moment, tzinfo=zone).astimezone(UTC)


def _time(text: str, fallback: time) -> time:
    try:
        return time.fromisoformat(text)
    except ValueError:
        return fallback


async def derive(
    session: AsyncSession, config: PlanConfig, start: datetime, end: datetime
) -> list[Run]:
    """Return the runs due in [start, end), in the order they fall."""
    zone = config.zone
    first_day = start.astimezone(zone).date() - timedelta(days=1)
    last_day = end.astimezone(zone).date() + timedelta(days=1)
    runs: list[Run] = []
    campaigns = (
        await session.scalars(
            select(Campaign).where(
                # A digest follows the campaign's last week; reviews follow its last day.
                Campaign.ends_on >= first_day - timedelta(days=7),
                Campaign.starts_on <= last_day + timedelta(days=400),
            )
        )
    ).all()
    for campaign in campaigns:
        runs += await _campaign_runs(session, campaign, config)
        runs += await _roundup_runs(session, campaign, config, start, end)
    scheduled = await session.scalars(
        select(Broadcast).where(
            Broadcast.status == BroadcastStatus.SCHEDULED,
            Broadcast.scheduled_for >= start,
            Broadcast.scheduled_for < end,
        )
    )
    for broadcast in scheduled:
        assert broadcast.scheduled_for is not None
        runs.append(
            Run(
                key=f"broadcast:{broadcast.id}",
                kind=RunKind.BROADCAST,
                at=broadcast.scheduled_for,
                subject_id=broadcast.id,
                campaign_id=None,
                title=str(broadcast.payload.get("text", ""))[:60],
            )
        )
    return sorted((r for r in runs if start <= r.at < end), key=lambda r: (r.at, r.key))


async def _campaign_runs(
    session: AsyncSession, campaign: Campaign, config: PlanConfig
) -> list[Run]:
    zone, morning = config.zone, config.run_time
    phases: Sequence[Phase] = (
        await session.scalars(
            select(Phase).where(Phase.campaign_id == campaign.id, Phase.active.is_(True))
        )
    ).all()
    milestones: Sequence[Milestone] = (
        await session.scalars(
            select(Milestone).where(
                Milestone.campaign_id == campaign.id, Milestone.active.is_(True)
            )
        )
    ).all()
    deadlines: Sequence[Deadline] = (
        await session.scalars(
            select(Deadline).where(Deadline.campaign_id == campaign.id, Deadline.active.is_(True))
        )
    ).all()
    runs: list[Run] = []
    for milestone in milestones:
        moment = _time(milestone.announce_at, morning)
        runs.append(
            Run(
                key=f"milestone:{milestone.id}:D0@{milestone.falls_on.isoformat()}",
                kind=RunKind.MILESTONE,
                at=_at(milestone.falls_on, moment, zone),
                subject_id=milestone.id,
                campaign_id=campaign.id,
                title=milestone.title,
            )
        )
        for days in sorted(set(milestone.notice_days), reverse=True):
            if days <= 0:
                continue
            runs.append(
                Run(
                    key=f"milestone:{milestone.id}:D-{days}@{milestone.falls_on.isoformat()}",
                    kind=RunKind.NOTICE,
                    at=_at(milestone.falls_on - timedelta(days=days), moment, zone),
                    subject_id=milestone.id,
                    campaign_id=campaign.id,
                    title=milestone.title,
                    days_before=days,
                )
            )
    for deadline in deadlines:
        # Due means by the end of the day, local time.
        expires = _at(deadline.due_on + timedelta(days=1), time(0, 0), zone)
        for days in sorted(set(deadline.reminder_days), reverse=True):
            if days <= 0:
                continue
            runs.append(
                Run(
                    key=f"deadline:{deadline.id}:T-{days}@{deadline.due_on.isoformat()}",
                    kind=RunKind.REMINDER,
                    at=_at(deadline.due_on - timedelta(days=days), morning, zone),
                    subject_id=deadline.id,
                    campaign_id=campaign.id,
                    title=deadline.title,
                    days_before=days,
                    expires=expires,
                )
            )
        if deadline.kind == DeadlineKind.REPORT:
            # Units that have not reported are reminded after the deadline too.
            for days in OVERDUE_DAYS:
                runs.append(
                    Run(
                        key=f"deadline:{deadline.id}:T+{days}@{deadline.due_on.isoformat()}",
                        kind=RunKind.OVERDUE,
                        at=_at(deadline.due_on + timedelta(days=days), morning, zone),
                        subject_id=deadline.id,
                        campaign_id=campaign.id,
                        title=deadline.title,
                        days_before=days,
                        expires=_at(deadline.due_on + timedelta(days=days + 1), time(0, 0), zone),
                    )
                )
    announced_starts = {m.falls_on for m in milestones if m.kind == MilestoneKind.PHASE_START}
    for phase in phases:
        # A phase-start milestone on the same day already carries the phase's focus.
        if phase.starts_on not in announced_starts:
            runs.append(
                Run(
                    key=f"phase:{phase.id}:start@{phase.starts_on.isoformat()}",
                    kind=RunKind.PHASE_START,
                    at=_at(phase.starts_on, morning, zone),
                    subject_id=phase.id,
                    campaign_id=campaign.id,
                    title=phase.name,
                )
            )
        # The review (sơ kết) goes to officers the morning after the phase's last day.
        runs.append(
            Run(
                key=f"phase:{phase.id}:review@{phase.ends_on.isoformat()}",
                kind=RunKind.PHASE_REVIEW,
                at=_at(phase.ends_on + timedelta(days=1), morning, zone),
                subject_id=phase.id,
                campaign_id=campaign.id,
                title=phase.name,
            )
        )
    day = campaign.starts_on + timedelta(days=(DIGEST_WEEKDAY - campaign.starts_on.weekday()) % 7)
    if day == campaign.starts_on:
        day += timedelta(days=7)  # nothing to digest on the first day
    while day <= campaign.ends_on + timedelta(days=7):
        runs.append(
            Run(
                key=f"digest:{campaign.id}@{day.isoformat()}",
                kind=RunKind.DIGEST,
                at=_at(day, morning, zone),
                subject_id=campaign.id,
                campaign_id=campaign.id,
                title=campaign.name,
            )
        )
        day += timedelta(days=7)
    return runs


async def _roundup_runs(
    session: AsyncSession, campaign: Campaign, config: PlanConfig, start: datetime, end: datetime
) -> list[Run]:
    """Return the weekly exemplar roundups in [start, end) of weeks with approved stories.

    A roundup gathers the stories approved in the week before it; a week without any has no
    run at all, so nothing empty is listed in /lichgui or sent.
    """
    zone, week = config.zone, timedelta(days=7)
    approved = await recognition.approval_times(session, campaign.id, start - week, end)
    if not approved:
        return []
    first = max(start.astimezone(zone).date(), campaign.starts_on)
    day = first + timedelta(days=(ROUNDUP_WEEKDAY - first.weekday()) % 7)
    runs: list[Run] = []
    while day <= min(end.astimezone(zone).date(), campaign.ends_on + week):
        at = _at(day, config.run_time, zone)
        if any(at - week <= moment < at for moment in approved):
            runs.append(
                Run(
                    key=f"stories:{campaign.id}@{day.isoformat()}",
                    kind=RunKind.STORY_ROUNDUP,
                    at=at,
                    subject_id=campaign.id,
                    campaign_id=campaign.id,
                    title=campaign.name,
                )
            )
        day += week
    return runs


async def coming(session: AsyncSession, config: PlanConfig, now: datetime, days: int) -> list[Run]:
    """Return the runs of the coming `days` days that have not happened yet."""
    runs = await derive(session, config, now, now + timedelta(days=days))
    done = await schedule_runs.recorded(session, (run.key for run in runs))
    return [run for run in runs if run.key not in done]


async def scope_of(session: AsyncSession, run: Run) -> Unit | None:
    """Return the unit a run is addressed under: its campaign's root, or its author's unit."""
    if run.kind == RunKind.BROADCAST:
        broadcast = await session.get(Broadcast, run.subject_id)
        return await session.get(Unit, broadcast.scope_unit_id) if broadcast else None
    campaign = await session.get(Campaign, run.campaign_id)
    return await session.get(Unit, campaign.root_unit_id) if campaign else None


async def concerns(session: AsyncSession, run: Run, scope: Unit) -> bool:
    """Tell whether a run reaches anyone in `scope`'s subtree."""
    if run.kind == RunKind.BROADCAST:
        broadcast = await session.get(Broadcast, run.subject_id)
        return broadcast is not None and await _overlaps(session, broadcast.scope_unit_id, scope)
    campaign = await session.get(Campaign, run.campaign_id)
    return campaign is not None and await _overlaps(session, campaign.root_unit_id, scope)


async def _overlaps(session: AsyncSession, unit_id: int, scope: Unit) -> bool:
    unit = await session.get(Unit, unit_id)
    return unit is not None and (
        unit.path.startswith(scope.path) or scope.path.startswith(unit.path)
    )


async def audience_size(session: AsyncSession, run: Run, scope: Unit) -> int:
    """Count who in `scope`'s subtree a run would reach if it ran now."""
    audience = broadcast_store.Audience(kind="everyone")
    author: int | None = None
    if run.kind == RunKind.BROADCAST:
        broadcast = await session.get(Broadcast, run.subject_id)
        if broadcast is None:
            return 0
        audience = broadcast_store.Audience.from_dict(broadcast.audience)
        author = broadcast.author_id
        scope_unit = await session.get(Unit, broadcast.scope_unit_id)
        if scope_unit is None:
            return 0
        # An officer above the author sees the whole broadcast; one below sees their part.
        if scope_unit.path.startswith(scope.path) is False:
            scope_unit = scope
        scope = scope_unit
    elif run.kind in (RunKind.PHASE_REVIEW, RunKind.DIGEST):
        audience = broadcast_store.Audience(kind="officers")
    elif run.kind in (RunKind.REMINDER, RunKind.OVERDUE):
        deadline = await session.get(Deadline, run.subject_id)
        if deadline is None:
            return 0
        if deadline.kind == DeadlineKind.COMMITMENT_REGISTRATION:
            return await _unregistered_or_officers(session, scope, deadline.campaign_id)
        kind = "everyone" if deadline.audience == DeadlineAudience.MEMBERS else "officers"
        audience = broadcast_store.Audience(kind=kind)
    return await _count(session, scope, audience, author)


async def _count(
    session: AsyncSession, scope: Unit, audience: broadcast_store.Audience, author: int | None
) -> int:
    counts = await broadcast_store.count(session, scope, audience, exclude_member_id=author)
    return sum(n for channel, n in counts.items() if channel != "unreachable")


async def _unregistered_or_officers(session: AsyncSession, scope: Unit, campaign_id: int) -> int:
    """Count whom a registration reminder reaches: the unregistered, and officers."""
    registered = exists().where(
        Commitment.author_id == Member.id,
        Commitment.campaign_id == campaign_id,
        Commitment.kind == CommitmentKind.INDIVIDUAL,
        Commitment.status == CommitmentStatus.REGISTERED,
    )
    reachable = exists().where(
        ChannelAccount.member_id == Member.id, ChannelAccount.reachable.is_(True)
    )
    count = await session.scalar(
        select(func.count(Member.id))
        .join(Unit, Unit.id == Member.unit_id)
        .where(
            in_subtree(scope.path),
            Member.status == MemberStatus.ACTIVE,
            reachable,
            or_(~registered, Member.role.in_((Role.OFFICER, Role.ADMIN))),
        )
    )
    return int(count or 0)
