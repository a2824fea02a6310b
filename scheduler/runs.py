"""What each kind of run does: queue its messages, in the caller's transaction."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.context import ACTION_PREFIX
from handlers.i18n import Catalogue
from handlers.types import Choice, Reply
from storage import accounts, outbox, recognition, units, upward
from storage import broadcasts as broadcast_store
from storage import commitments as commitment_store
from storage import members as member_store
from storage.models import (
    Broadcast,
    BroadcastStatus,
    Campaign,
    Deadline,
    DeadlineKind,
    Milestone,
    MilestoneKind,
    Phase,
    Unit,
    UnitKind,
)
from storage.progress import Figures, Progress, behind, progress
from storage.schedule import Run, RunKind

log = logging.getLogger(__name__)

LIST_LIMIT = 10  # units listed in one officer's message; /donvi shows the rest


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a run needs besides its session."""

    texts: Catalogue
    zone: ZoneInfo
    now: datetime


def _day(value: date) -> str:
    return value.strftime("%d/%m/%Y")


async def execute(session: AsyncSession, run: Run, ctx: RunContext) -> int:
    """Queue the messages of one run; return how many recipients it reached."""
    match run.kind:
        case RunKind.MILESTONE | RunKind.NOTICE:
            return await _milestone(session, run, ctx)
        case RunKind.REMINDER | RunKind.OVERDUE:
            return await _reminder(session, run, ctx)
        case RunKind.PHASE_START:
            return await _phase_start(session, run, ctx)
        case RunKind.PHASE_REVIEW:
            return await _phase_review(session, run, ctx)
        case RunKind.DIGEST:
            return await _digest(session, run, ctx)
        case RunKind.BROADCAST:
            return await _broadcast(session, run, ctx)
        case RunKind.STORY_ROUNDUP:
            return await _story_roundup(session, run, ctx)
    raise ValueError(f"unknown run kind {run.kind!r}")


async def skip(session: AsyncSession, run: Run, ctx: RunContext) -> None:
    """Deal with a run that is too late to happen: a scheduled broadcast tells its author."""
    if run.kind != RunKind.BROADCAST:
        return
    broadcast = await session.get(Broadcast, run.subject_id)
    if broadcast is None or broadcast.status != BroadcastStatus.SCHEDULED:
        return
    await broadcast_store.cancel(session, broadcast, ctx.now)
    if broadcast.author_id is not None and broadcast.scheduled_for is not None:
        when = broadcast.scheduled_for.astimezone(ctx.zone).strftime("%H:%M %d/%m/%Y")
        text = ctx.texts("schedule.late_broadcast", number=broadcast.id, when=when)
        await _tell(session, broadcast.author_id, text, ctx.now)


async def _campaign_root(session: AsyncSession, campaign_id: int | None) -> tuple[Campaign, Unit]:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise LookupError(f"campaign {campaign_id} is gone")
    root = await units.get(session, campaign.root_unit_id)
    if root is None:
        raise LookupError(f"unit {campaign.root_unit_id} is gone")
    return campaign, root


async def _announce(
    session: AsyncSession,
    run: Run,
    root: Unit,
    text: str,
    ctx: RunContext,
    *,
    audience: str = "everyone",
) -> int:
    """Queue one text to an audience under `root` as the bot's own broadcast."""
    _, queued = await _broadcast_to(session, run, root, text, ctx, audience=audience)
    return queued


async def _broadcast_to(
    session: AsyncSession,
    run: Run,
    root: Unit,
    text: str,
    ctx: RunContext,
    *,
    audience: str = "everyone",
    campaign_id: int | None = None,
) -> tuple[Broadcast, int]:
    """Queue the bot's own broadcast; return it and how many it will try."""
    broadcast = Broadcast(
        author_id=None,
        origin=run.key,
        scope_unit_id=root.id,
        payload={"text": text},
        audience=broadcast_store.Audience(kind=audience, campaign_id=campaign_id).to_dict(),
        status=BroadcastStatus.SCHEDULED,
        scheduled_for=run.at,
        created_at=ctx.now,
    )
    session.add(broadcast)
    await session.flush()
    return broadcast, await broadcast_store.queue(session, broadcast, root, ctx.now)


async def _tell(
    session: AsyncSession, member_id: int, message: str | Reply, now: datetime
) -> int | None:
    """Queue a message to a member's preferred account; return the account's id, if any."""
    account = await accounts.preferred(session, member_id)
    if account is None:
        return None
    reply = message if isinstance(message, Reply) else Reply(text=message)
    outbox.enqueue(
        session, account_id=account.id, channel=account.channel, payload=reply.to_dict(), now=now
    )
    return account.id


def _listed(ctx: RunContext, head: str, lines: list[str], *, tail: str | None = None) -> str:
    """Join a heading and at most LIST_LIMIT lines, saying how many more there are."""
    shown = [head, *lines[:LIST_LIMIT]]
    if len(lines) > LIST_LIMIT:
        shown.append(ctx.texts("schedule.and_more", count=len(lines) - LIST_LIMIT))
    if tail:
        shown.append(tail)
    return "\n".join(shown)


def _one(account_id: int | None) -> int:
    return 0 if account_id is None else 1


async def _milestone(session: AsyncSession, run: Run, ctx: RunContext) -> int:
    milestone = await session.get(Milestone, run.subject_id)
    if milestone is None:
        return 0
    _, root = await _campaign_root(session, milestone.campaign_id)
    fields = {
        "title": milestone.title,
        "announcement": milestone.announcement,
        "date": _day(milestone.falls_on),
    }
    if run.kind == RunKind.NOTICE:
        key = "schedule.notice_tomorrow" if run.days_before == 1 else "schedule.notice"
        text = ctx.texts(key, days=run.days_before, **fields)
    else:
        text = ctx.texts("schedule.milestone", **fields)
        if milestone.kind == MilestoneKind.PHASE_START:
            for phase in await _phases_starting(session, milestone.campaign_id, milestone.falls_on):
                if phase.focus:
                    text += ctx.texts(
                        "schedule.milestone_focus", phase=phase.name, focus=phase.focus
                    )
    return await _announce(session, run, root, text.strip(), ctx)


async def _phases_starting(session: AsyncSession, campaign_id: int, day: date) -> list[Phase]:
    rows = await session.scalars(
        select(Phase).where(
            Phase.campaign_id == campaign_id, Phase.starts_on == day, Phase.active.is_(True)
        )
    )
    return list(rows.all())


async def _reminder(session: AsyncSession, run: Run, ctx: RunContext) -> int:
    deadline = await session.get(Deadline, run.subject_id)
    if deadline is None:
        return 0
    campaign, root = await _campaign_root(session, deadline.campaign_id)
    fields = {"title": deadline.title, "date": _day(deadline.due_on), "days": run.days_before}
    if deadline.kind == DeadlineKind.REPORT:
        return await _report_reminders(session, run, root, deadline, fields, ctx)
    if deadline.kind == DeadlineKind.COMMITMENT_REGISTRATION:
        key = (
            "schedule.reminder_register_tomorrow"
            if run.days_before == 1
            else "schedule.reminder_register"
        )
        broadcast, sent = await _broadcast_to(
            session,
            run,
            root,
            ctx.texts(key, **fields),
            ctx,
            audience="no_commitment",
            campaign_id=campaign.id,
        )
        told = await _officers_behind_on_registration(session, root, campaign, fields, ctx)
        # An officer told about their units reads their own reminder there, not twice.
        withdrawn = await outbox.withdraw(session, broadcast.id, told)
        broadcast.recipients -= withdrawn
        return sent - withdrawn + len(told)
    return await _congress_work_reminders(session, root, campaign, fields, ctx)


async def _report_reminders(
    session: AsyncSession,
    run: Run,
    root: Unit,
    deadline: Deadline,
    fields: Mapping[str, object],
    ctx: RunContext,
) -> int:
    """Send the form to CĐCS officers who have not reported; list those late to the level above."""
    done = await upward.submitted_units(session, deadline.id)
    missing = [u for u in await upward.grassroots_under(session, root) if u.id not in done]
    if not missing:
        return 0
    key = "upward.form_overdue" if run.kind == RunKind.OVERDUE else "upward.form_reminder"
    button = (Choice(ctx.texts("upward.open_form"), f"{ACTION_PREFIX}:report:{deadline.id}"),)
    sent = 0
    for officer, unit in await member_store.officers_under(session, root):
        if unit.kind == UnitKind.GRASSROOTS:
            if unit in missing:
                form = Reply(text=ctx.texts(key, unit=unit.name, **fields), choices=button)
                sent += _one(await _tell(session, officer.id, form, ctx.now))
            continue
        below = [u for u in missing if u.path.startswith(unit.path)]
        if not below:
            continue
        head = ctx.texts("upward.officer_missing", unit=unit.name, count=len(below), **fields)
        lines = [ctx.texts("schedule.unit_line", unit=u.name) for u in below]
        sent += _one(await _tell(session, officer.id, _listed(ctx, head, lines), ctx.now))
    return sent


async def _officers_behind_on_registration(
    session: AsyncSession,
    root: Unit,
    campaign: Campaign,
    fields: Mapping[str, object],
    ctx: RunContext,
) -> list[int]:
    """Tell each officer which units under them still have members to register.

    Return the accounts told, so that their own reminder is not sent to them apart.
    """
    figures = await progress(session, root, campaign.id)
    officers = await member_store.officers_under(session, root)
    registered = await commitment_store.registered_among(
        session, campaign.id, [officer.id for officer, _ in officers]
    )
    told: list[int] = []
    for officer, unit in officers:
        shown = figures.children(unit) or [unit]
        late = behind(figures, shown)
        if not late:
            continue
        head = ctx.texts("schedule.reminder_register_officer", unit=unit.name, **fields)
        lines = [
            ctx.texts(
                "schedule.reminder_register_officer_line",
                unit=u.name,
                registered=f.registered,
                members=f.members,
                percent=f.registered_percent,
            )
            for u, f in late
        ]
        yourself = (
            ctx.texts("schedule.reminder_register_yourself")
            if officer.id not in registered
            else None
        )
        text = _listed(ctx, head, lines, tail=yourself)
        account = await _tell(session, officer.id, text, ctx.now)
        if account is not None:
            told.append(account)
    return told


async def _congress_work_reminders(
    session: AsyncSession,
    root: Unit,
    campaign: Campaign,
    fields: Mapping[str, object],
    ctx: RunContext,
) -> int:
    """Remind CĐCS officers whose unit has no congress work; list the missing to those above."""
    figures = await progress(session, root, campaign.id)
    missing = sorted(
        (
            u
            for u in figures.units.values()
            if u.kind == UnitKind.GRASSROOTS and figures.of(u).grassroots_with_work == 0
        ),
        key=lambda u: u.name,
    )
    if not missing:
        return 0
    sent = 0
    for officer, unit in await member_store.officers_under(session, root):
        if unit.kind == UnitKind.GRASSROOTS:
            if unit in missing:
                text = ctx.texts("schedule.reminder_congress_work", unit=unit.name, **fields)
                sent += _one(await _tell(session, officer.id, text, ctx.now))
            continue
        below = [u for u in missing if u.path.startswith(unit.path)]
        if not below:
            continue
        head = ctx.texts(
            "schedule.reminder_congress_work_officer",
            unit=unit.name,
            count=len(below),
            **fields,
        )
        lines = [ctx.texts("schedule.unit_line", unit=u.name) for u in below]
        sent += _one(await _tell(session, officer.id, _listed(ctx, head, lines), ctx.now))
    return sent


async def _phase_start(session: AsyncSession, run: Run, ctx: RunContext) -> int:
    phase = await session.get(Phase, run.subject_id)
    if phase is None:
        return 0
    _, root = await _campaign_root(session, phase.campaign_id)
    text = ctx.texts(
        "schedule.phase_start",
        phase=phase.name,
        start=_day(phase.starts_on),
        end=_day(phase.ends_on),
    )
    if phase.focus:
        text += ctx.texts("schedule.phase_focus", focus=phase.focus)
    return await _announce(session, run, root, text, ctx)


def _figures_lines(figures: Progress, unit: Unit, ctx: RunContext, *, recent: bool) -> list[str]:
    total = figures.of(unit)
    lines = [
        ctx.texts(
            "schedule.figures_total",
            members=total.members,
            registered=total.registered,
            percent=total.registered_percent,
            pacts=total.pacts_accepted,
            initiatives=total.initiatives_accepted,
        )
    ]
    if total.grassroots:
        lines.append(
            ctx.texts(
                "schedule.figures_works", done=total.grassroots_with_work, total=total.grassroots
            )
        )
    if recent:
        lines.append(ctx.texts("schedule.figures_recent", count=total.registered_recently))
    children = figures.children(unit)
    ranked: list[tuple[Unit, Figures]] = sorted(
        ((u, figures.of(u)) for u in children), key=lambda p: (p[1].registered_percent, p[0].name)
    )
    for child, child_figures in ranked[:LIST_LIMIT]:
        lines.append(
            ctx.texts(
                "schedule.figures_line",
                unit=child.name,
                registered=child_figures.registered,
                members=child_figures.members,
                percent=child_figures.registered_percent,
                initiatives=child_figures.initiatives_accepted,
            )
        )
    if len(ranked) > LIST_LIMIT:
        lines.append(ctx.texts("schedule.and_more", count=len(ranked) - LIST_LIMIT))
    return lines


async def _to_officers(
    session: AsyncSession,
    root: Unit,
    figures: Progress,
    title: str,
    ctx: RunContext,
    *,
    recent: bool,
    title_fields: Mapping[str, object],
) -> int:
    sent = 0
    for officer, unit in await member_store.officers_under(session, root):
        lines = [ctx.texts(title, unit=unit.name, **title_fields)]
        lines += _figures_lines(figures, unit, ctx, recent=recent)
        sent += _one(await _tell(session, officer.id, "\n".join(lines), ctx.now))
    return sent


async def _phase_review(session: AsyncSession, run: Run, ctx: RunContext) -> int:
    phase = await session.get(Phase, run.subject_id)
    if phase is None:
        return 0
    campaign, root = await _campaign_root(session, phase.campaign_id)
    figures = await progress(session, root, campaign.id)
    fields = {"phase": phase.name, "start": _day(phase.starts_on), "end": _day(phase.ends_on)}
    return await _to_officers(
        session, root, figures, "schedule.review_title", ctx, recent=False, title_fields=fields
    )


async def _digest(session: AsyncSession, run: Run, ctx: RunContext) -> int:
    campaign, root = await _campaign_root(session, run.campaign_id)
    figures = await progress(session, root, campaign.id, since=run.at - timedelta(days=7))
    return await _to_officers(
        session,
        root,
        figures,
        "schedule.digest_title",
        ctx,
        recent=True,
        title_fields={"campaign": campaign.name},
    )


async def _broadcast(session: AsyncSession, run: Run, ctx: RunContext) -> int:
    broadcast = await session.get(Broadcast, run.subject_id, with_for_update=True)
    if broadcast is None or broadcast.status != BroadcastStatus.SCHEDULED:
        return 0
    scope = await units.get(session, broadcast.scope_unit_id)
    if scope is None:
        return 0
    queued = await broadcast_store.queue(session, broadcast, scope, ctx.now)
    log.info("scheduled broadcast %s queued", broadcast.id)
    return queued


async def _story_roundup(session: AsyncSession, run: Run, ctx: RunContext) -> int:
    """Tell the campaign's members, once a week, which exemplar stories were approved."""
    campaign, root = await _campaign_root(session, run.campaign_id)
    stories = await recognition.approved_between(
        session, campaign.id, run.at - timedelta(days=7), run.at
    )
    if not stories:
        return 0
    head = ctx.texts("story.roundup_title", count=len(stories))
    lines = [
        ctx.texts("story.roundup_line", name=story.subject_name, unit=unit.name)
        for story, unit in stories
    ]
    text = _listed(ctx, head, lines, tail=ctx.texts("story.roundup_tail"))
    return await _announce(session, run, root, text, ctx)
