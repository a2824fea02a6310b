"""/lichgui: an officer sees what the bot will send on its own in the coming days."""

from __future__ import annotations

from datetime import datetime

from handlers.context import Context
from handlers.i18n import Catalogue
from handlers.permissions import Action, refusal
from handlers.scope import member_scope
from storage import schedule
from storage.clock import QuietHours
from storage.schedule import PlanConfig, Run

DAYS = 30
SHOWN = 25  # runs listed in one message


def describe(texts: Catalogue, run: Run) -> str:
    """Say what a run is, in a few words."""
    return texts(f"schedule.view.kind_{run.kind.value}", title=run.title, days=run.days_before)


def when(run: Run, config: PlanConfig, quiet: QuietHours | None) -> datetime:
    """Return when a run's messages reach phones, local time: after the quiet hours."""
    moment = quiet.resumes_at(run.at) if quiet is not None else run.at
    return moment.astimezone(config.zone)


async def show(ctx: Context) -> None:
    """List the coming runs that reach the officer's subtree, with how many each reaches."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    key = refusal(scope.member, Action.VIEW_SCHEDULE, scope.unit, scope.unit)
    if key is not None:
        ctx.say(key)
        return
    settings = ctx.services.config
    config = PlanConfig(zone=settings.timezone, run_time=settings.run_time)
    coming = await schedule.coming(ctx.session, config, ctx.now, DAYS)
    lines = [ctx.t("schedule.view.title", days=DAYS, unit=scope.unit.name)]
    for run in coming:
        if len(lines) > SHOWN:
            break
        if not await schedule.concerns(ctx.session, run, scope.unit):
            continue
        size = await schedule.audience_size(ctx.session, run, scope.unit)
        moment = when(run, config, settings.quiet)
        lines.append(
            ctx.t(
                "schedule.view.line",
                when=moment.strftime("%H:%M %d/%m/%Y"),
                what=describe(ctx.t, run),
                audience=size,
            )
        )
    if len(lines) == 1:
        ctx.say("schedule.view.empty", days=DAYS)
        return
    ctx.reply("\n".join(lines))
