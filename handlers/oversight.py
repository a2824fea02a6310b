"""/donvi: an officer follows registration in the units under them."""

from __future__ import annotations

from handlers.context import Context
from handlers.permissions import Action, can, refusal
from handlers.scope import Scope, member_scope
from storage import commitments as commitment_store
from storage import units
from storage.models import Unit, UnitKind

FLOW = "oversight"
PAGE = 10


async def show(ctx: Context) -> None:
    """Show each unit directly under the officer: members, registrations, missing congress works."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    key = refusal(scope.member, Action.VIEW_UNIT_PROGRESS, scope.unit, scope.unit)
    if key is not None:
        ctx.say(key)
        return
    ctx.enter(FLOW, "list")
    children = await units.children(ctx.session, scope.unit)
    shown = children or [scope.unit]
    lines = [ctx.t("units.title", unit=scope.unit.name, campaign=scope.campaign.name)]
    choices = []
    for unit in shown:
        total, registered = await commitment_store.member_counts(
            ctx.session, unit, scope.campaign.id
        )
        missing = await commitment_store.grassroots_without_work(
            ctx.session, unit, scope.campaign.id
        )
        percent = round(100 * registered / total) if total else 0
        lines.append(
            ctx.t("units.line", unit=unit.name, registered=registered, total=total, percent=percent)
        )
        if unit.kind == UnitKind.GRASSROOTS:
            lines.append(ctx.t("units.work_missing" if missing else "units.work_done"))
        elif missing:
            names = ", ".join(u.name for u in missing[:5])
            more = ctx.t("units.and_more", count=len(missing) - 5) if len(missing) > 5 else ""
            lines.append(ctx.t("units.works_missing", count=len(missing), names=names, more=more))
        if total > registered:
            choices.append(ctx.choice(ctx.t("units.list_button", unit=unit.name), f"n{unit.id}:0"))
    ctx.reply("\n".join(lines), choices)


async def resume(ctx: Context) -> None:
    """Show a page of members who have not registered in a unit."""
    scope = await member_scope(ctx)
    if scope is None:
        ctx.leave()
        return
    unit, offset = await _target(ctx, scope)
    if unit is None:
        ctx.say("permission.outside_subtree")
        return
    ctx.goto("list")
    rows, total = await commitment_store.members_not_registered(
        ctx.session, unit, scope.campaign.id, offset=offset, limit=PAGE
    )
    if total == 0:
        ctx.say("units.all_registered", unit=unit.name)
        return
    lines = [
        ctx.t(
            "units.not_registered_title",
            unit=unit.name,
            start=offset + 1,
            end=offset + len(rows),
            total=total,
        )
    ]
    lines += [ctx.t("units.member_line", name=m.full_name, unit=u.name) for m, u in rows]
    choices = []
    if offset + PAGE < total:
        choices.append(ctx.choice(ctx.t("units.next_page"), f"n{unit.id}:{offset + PAGE}"))
    if offset > 0:
        choices.append(
            ctx.choice(ctx.t("units.previous_page"), f"n{unit.id}:{max(0, offset - PAGE)}")
        )
    ctx.reply("\n".join(lines), choices)


async def _target(ctx: Context, scope: Scope) -> tuple[Unit | None, int]:
    value = ctx.pressed or ""
    unit_part, _, offset_part = value[1:].partition(":")
    if not value.startswith("n") or not unit_part.isdigit() or not offset_part.isdigit():
        return None, 0
    unit = await units.get(ctx.session, int(unit_part))
    if unit is None or not can(scope.member, Action.VIEW_UNIT_PROGRESS, unit, scope.unit):
        return None, 0
    return unit, int(offset_part)
