"""/nhatky: an admin reads the audit log of their subtree; and how handlers write to it."""

from __future__ import annotations

from collections.abc import Callable

from handlers.context import Context
from handlers.permissions import Action, refusal
from storage import audit, units
from storage.models import Unit

FLOW = "audit"
PAGE = 10
SUBJECT_MAX = 40

Texts = Callable[..., str]


def note(
    ctx: Context,
    action: str,
    *,
    unit_id: int | None,
    subject: str | None = None,
    **detail: object,
) -> None:
    """Record the member's action in the audit log, in the message's own transaction."""
    audit.record(
        ctx.session,
        now=ctx.now,
        actor=ctx.member,
        via=ctx.incoming.channel,
        action=action,
        unit_id=unit_id,
        subject=subject,
        detail={key: value for key, value in detail.items() if value is not None},
    )


def action_label(t: Texts, has: Callable[[str], bool], action: str) -> str:
    """Name an action as people read it: its catalogue label, else its raw name."""
    key = f"audit.action.{action}"
    return t(key) if has(key) else action


def actor_name(t: Texts, row: audit.Row) -> str:
    """Name who acted: the member, the command line, or the bot itself."""
    if row.actor is not None:
        return row.actor
    return t("audit.actor_cli") if row.entry.via == "cli" else t("audit.actor_system")


async def show(ctx: Context) -> None:
    """Show the newest entries of the admin's subtree."""
    unit = await _admin_unit(ctx)
    if unit is None:
        return
    ctx.enter(FLOW, "page", offset=0)
    await _page(ctx, unit, 0)


async def resume(ctx: Context) -> None:
    """Show the next page, once more checked against what this member may see."""
    unit = await _admin_unit(ctx)
    if unit is None:
        ctx.leave()
        return
    if ctx.pressed != "more":
        ctx.leave()
        ctx.say("hint.free_text")
        return
    offset = int(ctx.conversation.data.get("offset") or 0) + PAGE
    ctx.goto("page", offset=offset)
    await _page(ctx, unit, offset)


async def _admin_unit(ctx: Context) -> Unit | None:
    member = ctx.active_member
    unit = await units.get(ctx.session, member.unit_id) if member is not None else None
    key = refusal(member, Action.VIEW_AUDIT, unit, unit)
    if key is not None or unit is None:
        ctx.say("hint.not_member" if ctx.member is None else key or "permission.denied")
        return None
    return unit


async def _page(ctx: Context, unit: Unit, offset: int) -> None:
    found = await audit.rows(ctx.session, within=unit, offset=offset, limit=PAGE + 1)
    shown = found[:PAGE]
    if not shown:
        ctx.leave()
        ctx.say("audit.empty" if offset == 0 else "audit.no_more", unit=unit.name)
        return
    lines = [ctx.t("audit.title", unit=unit.name, start=offset + 1, end=offset + len(shown))]
    lines += [_line(ctx, row) for row in shown]
    if len(found) > PAGE:
        ctx.reply("\n".join(lines), [ctx.choice(ctx.t("audit.more"), "more")])
        return
    ctx.leave()
    ctx.reply("\n".join(lines))


def _line(ctx: Context, row: audit.Row) -> str:
    subject = row.entry.subject
    return ctx.t(
        "audit.line",
        time=ctx.local_time(row.entry.at),
        actor=actor_name(ctx.t, row),
        action=action_label(ctx.t, ctx.t.has, row.entry.action),
        unit=row.unit_name or ctx.t("audit.no_unit"),
        subject=ctx.t("audit.subject", subject=subject[:SUBJECT_MAX]) if subject else "",
    )
