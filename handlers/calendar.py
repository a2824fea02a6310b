"""/lich and /phongtrao: the campaign's calendar and its movements."""

from __future__ import annotations

from handlers.context import Context
from handlers.permissions import is_officer
from handlers.scope import Scope, member_scope
from storage import campaigns
from storage.models import Audience, UnitKind


async def show_calendar(ctx: Context) -> None:
    """Show the current phase, days left, and the next deadlines and milestones."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    campaign, today = scope.campaign, ctx.today
    lines = [ctx.t("calendar.title", name=campaign.name)]
    phase = campaigns.phase_on(await campaigns.phases(ctx.session, campaign.id), today)
    if phase is not None:
        lines.append(
            ctx.t(
                "calendar.phase",
                name=phase.name,
                start=ctx.day(phase.starts_on),
                end=ctx.day(phase.ends_on),
                days=(phase.ends_on - today).days,
            )
        )
        if phase.focus:
            lines.append(ctx.t("calendar.focus", focus=phase.focus))
    elif today < campaign.starts_on:
        lines.append(ctx.t("calendar.not_started", start=ctx.day(campaign.starts_on)))
    elif today > campaign.ends_on:
        lines.append(ctx.t("calendar.ended", end=ctx.day(campaign.ends_on)))
    deadlines = [
        d
        for d in await campaigns.deadlines_from(ctx.session, campaign.id, today, limit=10)
        if _concerns(d.audience, scope)
    ][:3]
    if deadlines:
        lines.append(ctx.t("calendar.deadlines"))
        lines += [
            ctx.t(
                "calendar.deadline_line",
                date=ctx.day(d.due_on),
                title=d.title,
                days=_days_left(ctx, (d.due_on - today).days),
            )
            for d in deadlines
        ]
    milestones = await campaigns.milestones_from(ctx.session, campaign.id, today, limit=5)
    if milestones:
        lines.append(ctx.t("calendar.milestones"))
        lines += [
            ctx.t("calendar.milestone_line", date=ctx.day(m.falls_on), title=m.title)
            for m in milestones
        ]
    ctx.reply("\n".join(lines))


async def show_movements(ctx: Context) -> None:
    """List the campaign's movements, those aimed at the member's sector first."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    sector = scope.unit.sector.value if scope.unit.sector else None
    movements = await campaigns.movements(ctx.session, scope.campaign.id)
    mine = [m for m in movements if sector is not None and sector in m.sectors]
    general = [m for m in movements if not m.sectors]
    others = [m for m in movements if m not in mine and m not in general]
    lines = [ctx.t("movements.title", name=scope.campaign.name)]
    for group_key, group in (
        ("movements.for_your_sector", mine),
        ("movements.for_everyone", general),
        ("movements.for_other_sectors", others),
    ):
        if not group:
            continue
        lines.append(ctx.t(group_key))
        for movement in group:
            lines.append(ctx.t("movements.line", name=movement.name))
            if movement.description:
                lines.append(ctx.t("movements.description", text=movement.description))
    lines.append(ctx.t("movements.how_to_register"))
    ctx.reply("\n".join(lines))


def _concerns(audience: Audience, scope: Scope) -> bool:
    """Tell whether a deadline's audience includes this member."""
    if audience == Audience.MEMBERS:
        return True
    if not is_officer(scope.member):
        return False
    return audience == Audience.OFFICERS or scope.unit.kind == UnitKind.GRASSROOTS


def _days_left(ctx: Context, days: int) -> str:
    return ctx.t("calendar.today") if days == 0 else ctx.t("calendar.days_left", days=days)
