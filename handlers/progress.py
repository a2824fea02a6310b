"""/tiendo: accepted initiatives against targets; officers get their units and two charts.

An officer gets the units right below theirs, as a table and as bars of percentage of target,
and the trend of their whole subtree: accepted initiatives added up week by week since the
campaign began, against the target. A member gets their unit's figures only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from handlers import charts
from handlers.charts import Bar, Trend, TrendPoint
from handlers.context import Context
from handlers.parsing import format_number
from handlers.permissions import Action, can
from handlers.scope import Scope, member_scope
from handlers.targets import shortfall_text
from handlers.types import Attachment, Reply
from storage import progress as progress_store
from storage.progress import Standing

log = logging.getLogger(__name__)

# Units listed, and drawn, at most: the furthest behind.
SHOWN = 25
_NAME_MAX = 42
_TITLE_MAX = 80


async def show(ctx: Context) -> None:
    """Show the member's unit against its target, or an officer's units and their charts."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    own, below = await progress_store.standings(ctx.session, scope.unit, scope.campaign.id)
    title = ctx.t("progress.title", campaign=scope.campaign.name)
    officer = can(scope.member, Action.VIEW_UNIT_PROGRESS, scope.unit, scope.unit)
    if not officer or not below:
        text = "\n".join(
            [
                title,
                ctx.t(
                    "progress.unit_line",
                    unit=scope.unit.name,
                    accepted=format_number(own.achieved),
                    target=_against(ctx, own),
                    waiting=format_number(own.figures.initiatives_waiting),
                ),
            ]
        )
        # An officer of a unit with nothing below still gets the trend of their unit.
        trend = await _trend_chart(ctx, scope, own) if officer else None
        ctx.outcome.replies.append(Reply(text=text, attachments=(trend,) if trend else ()))
        return
    lines = [
        title,
        ctx.t(
            "progress.officer_total",
            unit=scope.unit.name,
            accepted=format_number(own.achieved),
            target=_against(ctx, own),
            waiting=format_number(own.figures.initiatives_waiting),
        ),
    ]
    warning = await shortfall_text(ctx, scope.unit, scope.campaign.id)
    if warning:
        lines.append(warning)
    ranked = progress_store.worst_first(below)
    shown = ranked[:SHOWN]
    lines.append(ctx.t("progress.table_title"))
    lines += [_row(ctx, rank, standing) for rank, standing in enumerate(shown, 1)]
    if len(ranked) > len(shown):
        lines.append(ctx.t("progress.and_more", count=len(ranked) - len(shown)))
    bars = [
        Bar(
            label=_short(standing.unit.name),
            percent=float(standing.percent) if standing.percent is not None else None,
            note=ctx.t(
                "progress.chart_bar",
                accepted=format_number(standing.achieved),
                target=format_number(standing.target),
            )
            if standing.target is not None
            else ctx.t("progress.chart_no_target", accepted=format_number(standing.achieved)),
        )
        for standing in shown
    ]
    chart = await _drawn(
        ctx,
        "progress.chart_name",
        lambda: charts.draw_bars(
            f"{ctx.t('progress.chart_title')}\n{_short(scope.unit.name, _TITLE_MAX)}",
            ctx.t("progress.chart_axis"),
            bars,
        ),
    )
    trend = await _trend_chart(ctx, scope, own)
    attachments = tuple(a for a in (chart, trend) if a is not None)
    ctx.outcome.replies.append(Reply(text="\n".join(lines), attachments=attachments))


async def _trend_chart(ctx: Context, scope: Scope, own: Standing) -> Attachment | None:
    """Draw the accepted initiatives of the unit's subtree week by week; None before it starts."""
    campaign = scope.campaign
    weeks = await progress_store.accepted_by_week(
        ctx.session, scope.unit, campaign, ctx.services.config.timezone, ctx.today
    )
    if not weeks:
        return None
    points, total = [], 0
    for week in weeks:
        total += week.accepted
        day = (week.last - campaign.starts_on).days + 1
        points.append(TrendPoint(day=day, label=week.last.strftime("%d/%m"), total=total))
    trend = Trend(
        title=f"{ctx.t('progress.trend_title')}\n{_short(scope.unit.name, _TITLE_MAX)}",
        x_axis=ctx.t("progress.trend_x_axis"),
        y_axis=ctx.t("progress.trend_y_axis"),
        points=points,
        days=(campaign.ends_on - campaign.starts_on).days + 1,
        total_label=ctx.t("progress.trend_total"),
        target=own.target,
        target_label=ctx.t("progress.trend_target", target=format_number(own.target))
        if own.target is not None
        else ctx.t("progress.trend_no_target"),
        pace_label=ctx.t("progress.trend_pace"),
    )
    return await _drawn(ctx, "progress.trend_name", lambda: charts.draw_trend(trend))


async def _drawn(ctx: Context, name: str, draw: Callable[[], bytes]) -> Attachment | None:
    """Draw a chart in a thread; None if it cannot be: the text says it all already."""
    try:
        png = await asyncio.to_thread(draw)
    except Exception:
        log.exception(
            "could not draw %s for member %s", name, ctx.member.id if ctx.member else None
        )
        return None
    return Attachment.generated("photo", ctx.t(name), png, "image/png")


def _against(ctx: Context, standing: Standing) -> str:
    if standing.target is None:
        return ctx.t("progress.no_target")
    if standing.percent is None:  # a target of zero
        return ctx.t("progress.zero_target")
    return ctx.t(
        "progress.against_target",
        target=format_number(standing.target),
        percent=standing.percent,
    )


def _row(ctx: Context, rank: int, standing: Standing) -> str:
    figures = standing.figures
    return ctx.t(
        "progress.row",
        rank=rank,
        unit=standing.unit.name,
        members=format_number(figures.members),
        commitments=format_number(figures.commitments),
        accepted=format_number(standing.achieved),
        waiting=format_number(figures.initiatives_waiting),
        target=format_number(standing.target)
        if standing.target is not None
        else ctx.t("progress.target_none"),
        percent=ctx.t("progress.percent", percent=standing.percent)
        if standing.percent is not None
        else ctx.t("progress.none"),
    )


def _short(name: str, limit: int = _NAME_MAX) -> str:
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"
