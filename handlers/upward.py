"""/nopbaocao: CĐCS officers submit the upward report; the level above sees who has not."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time

from handlers.audit_log import note
from handlers.context import Context
from handlers.permissions import Action, can, refusal
from handlers.scope import Scope, member_scope
from storage import upward
from storage.models import Deadline, DeadlineKind, ReportSubmission, Unit, UnitKind
from storage.progress import progress
from storage.text import clean

FLOW = "upward"
ACTION = "report"
HIGHLIGHTS_MIN, HIGHLIGHTS_MAX = 10, 2000
NAMES_SHOWN = 15


async def start(ctx: Context) -> None:
    """Open the report form of a CĐCS, or show an upper unit who has submitted."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    # A CĐCS's officers submit; those above follow who has submitted.
    grassroots = scope.unit.kind == UnitKind.GRASSROOTS
    action = Action.SUBMIT_REPORT if grassroots else Action.VIEW_UNIT_PROGRESS
    key = refusal(scope.member, action, scope.unit, scope.unit)
    if key is not None:
        ctx.say(key)
        return
    deadlines = await upward.report_deadlines(ctx.session, scope.campaign.id)
    if not deadlines:
        ctx.say("upward.none")
        return
    if scope.unit.kind != UnitKind.GRASSROOTS:
        await _status(ctx, scope, deadlines)
        return
    ctx.enter(FLOW, "pick")
    choices = []
    for deadline in deadlines:
        done = await upward.submission(ctx.session, deadline.id, scope.unit.id)
        state = (
            ctx.t("upward.state_submitted")
            if done
            else ctx.t("upward.state_overdue")
            if deadline.due_on < ctx.today
            else ""
        )
        label = ctx.t(
            "upward.pick_line", title=deadline.title, date=ctx.day(deadline.due_on), state=state
        )
        choices.append(ctx.choice(label, f"d{deadline.id}"))
    ctx.say("upward.pick", choices=choices)


async def open_form(ctx: Context, args: list[str]) -> None:
    """Open the form from the button of a pushed reminder."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    deadline = await _deadline(ctx, scope, args[0] if args else "")
    if deadline is None:
        ctx.say("choice.invalid")
        return
    await _form(ctx, scope, deadline)


async def resume(ctx: Context) -> None:
    """Continue the report at its current step."""
    scope = await member_scope(ctx)
    if scope is None:
        ctx.leave()
        return
    step = ctx.conversation.step
    if step == "pick":
        pressed = ctx.pressed or ""
        deadline = await _deadline(ctx, scope, pressed[1:] if pressed.startswith("d") else "")
        if deadline is None:
            ctx.leave()
            ctx.say("choice.invalid")
            return
        await _form(ctx, scope, deadline)
        return
    deadline = await _deadline(ctx, scope, str(ctx.conversation.data.get("deadline", "")))
    if deadline is None:
        ctx.leave()
        ctx.say("choice.invalid")
        return
    if step == "highlights":
        await _highlights(ctx, scope, deadline)
    elif step == "confirm":
        await _confirm(ctx, scope, deadline)
    else:
        ctx.leave()


async def _deadline(ctx: Context, scope: Scope, raw: str) -> Deadline | None:
    """Return a report deadline of the member's campaign that this officer's CĐCS reports to."""
    if not raw.isdigit():
        return None
    deadline = await ctx.session.get(Deadline, int(raw))
    if (
        deadline is None
        or deadline.kind != DeadlineKind.REPORT
        or deadline.campaign_id != scope.campaign.id
        or scope.unit.kind != UnitKind.GRASSROOTS
        or not can(scope.member, Action.SUBMIT_REPORT, scope.unit, scope.unit)
    ):
        return None
    return deadline


async def _figures(ctx: Context, scope: Scope, deadline: Deadline) -> dict[str, object]:
    """Compute the unit's figures for the report's period, as the form shows them."""
    all_deadlines = await upward.report_deadlines(ctx.session, scope.campaign.id)
    start = upward.period_of(scope.campaign, deadline, all_deadlines)
    since = datetime.combine(start, time(0, 0), tzinfo=ctx.services.config.timezone)
    figures = (
        await progress(ctx.session, scope.unit, scope.campaign.id, since=since.astimezone(UTC))
    ).of(scope.unit)
    return {
        "period_from": start.isoformat(),
        "period_to": deadline.due_on.isoformat(),
        "members": figures.members,
        "registered": figures.registered,
        "percent": figures.registered_percent,
        "registered_in_period": figures.registered_recently,
        "pacts": figures.pacts_accepted,
        "initiatives_submitted": figures.initiatives_submitted,
        "initiatives_accepted": figures.initiatives_accepted,
        "congress_work": bool(figures.grassroots_with_work),
    }


def _form_text(ctx: Context, scope: Scope, deadline: Deadline, figures: dict[str, object]) -> str:
    return ctx.t(
        "upward.form",
        title=deadline.title,
        unit=scope.unit.name,
        start=ctx.day(datetime.fromisoformat(str(figures["period_from"])).date()),
        end=ctx.day(deadline.due_on),
        members=figures["members"],
        registered=figures["registered"],
        percent=figures["percent"],
        registered_in_period=figures["registered_in_period"],
        pacts=figures["pacts"],
        initiatives_submitted=figures["initiatives_submitted"],
        initiatives_accepted=figures["initiatives_accepted"],
        work=ctx.t("upward.work_yes" if figures["congress_work"] else "upward.work_no"),
    )


async def _form(ctx: Context, scope: Scope, deadline: Deadline) -> None:
    figures = await _figures(ctx, scope, deadline)
    ctx.enter(FLOW, "highlights", deadline=deadline.id)
    ctx.reply(_form_text(ctx, scope, deadline, figures))
    ctx.say("upward.ask_highlights", minimum=HIGHLIGHTS_MIN, maximum=HIGHLIGHTS_MAX)


async def _highlights(ctx: Context, scope: Scope, deadline: Deadline) -> None:
    text = clean(ctx.text)
    if not HIGHLIGHTS_MIN <= len(text) <= HIGHLIGHTS_MAX:
        ctx.say(
            "upward.highlights_length",
            minimum=HIGHLIGHTS_MIN,
            maximum=HIGHLIGHTS_MAX,
            length=len(text),
        )
        return
    ctx.goto("confirm", highlights=text)
    ctx.say(
        "upward.confirm",
        highlights=text,
        choices=[
            ctx.choice(ctx.t("upward.submit"), "submit"),
            ctx.choice(ctx.t("upward.rewrite"), "rewrite"),
        ],
    )


async def _confirm(ctx: Context, scope: Scope, deadline: Deadline) -> None:
    if ctx.pressed == "rewrite":
        ctx.goto("highlights")
        ctx.say("upward.ask_highlights", minimum=HIGHLIGHTS_MIN, maximum=HIGHLIGHTS_MAX)
        return
    if ctx.pressed != "submit":
        ctx.say("hint.free_text")
        return
    figures = await _figures(ctx, scope, deadline)
    highlights = str(ctx.conversation.data.get("highlights", ""))
    existing = await upward.submission(ctx.session, deadline.id, scope.unit.id)
    if existing is None:
        ctx.session.add(
            ReportSubmission(
                deadline_id=deadline.id,
                unit_id=scope.unit.id,
                submitted_by_id=scope.member.id,
                figures=figures,
                highlights=highlights,
                submitted_at=ctx.now,
            )
        )
        key = "upward.submitted"
    else:
        existing.figures, existing.highlights = figures, highlights
        existing.submitted_by_id, existing.submitted_at = scope.member.id, ctx.now
        key = "upward.resubmitted"
    note(
        ctx,
        "upward.submit",
        unit_id=scope.unit.id,
        subject=f"deadline:{deadline.id}",
        again=existing is not None,
    )
    ctx.leave()
    ctx.say(key, unit=scope.unit.name, title=deadline.title)


async def _status(ctx: Context, scope: Scope, deadlines: Sequence[Deadline]) -> None:
    """Show an upper unit's officer which CĐCS under them have submitted each report."""
    grassroots = list(await upward.grassroots_under(ctx.session, scope.unit))
    if not grassroots:
        ctx.say("upward.not_grassroots_empty", unit=scope.unit.name)
        return
    blocks = []
    for deadline in deadlines:
        done = await upward.submitted_units(ctx.session, deadline.id)
        submitted = [u for u in grassroots if u.id in done]
        missing = [u for u in grassroots if u.id not in done]
        lines = [
            ctx.t(
                "upward.status_title",
                title=deadline.title,
                date=ctx.day(deadline.due_on),
                done=len(submitted),
                total=len(grassroots),
            )
        ]
        if submitted:
            lines.append(ctx.t("upward.status_submitted", names=_names(ctx, submitted)))
        if missing:
            lines.append(ctx.t("upward.status_missing", names=_names(ctx, missing)))
        else:
            lines.append(ctx.t("upward.status_all"))
        blocks.append("\n".join(lines))
    ctx.reply("\n\n".join(blocks))


def _names(ctx: Context, found: list[Unit]) -> str:
    names = ", ".join(u.name for u in found[:NAMES_SHOWN])
    if len(found) > NAMES_SHOWN:
        names += ctx.t("units.and_more", count=len(found) - NAMES_SHOWN)
    return names
