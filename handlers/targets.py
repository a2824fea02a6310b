"""/chitieu: an officer sets the initiative targets of the units directly under them."""

from __future__ import annotations

import re
from collections.abc import Sequence

from handlers.audit_log import note
from handlers.context import Context
from handlers.parsing import format_number
from handlers.permissions import OUTSIDE_SUBTREE, Action, can, refusal
from handlers.scope import Scope, member_scope
from handlers.types import Choice
from storage import targets as target_store
from storage import units
from storage.models import Unit
from storage.text import clean_line, fold

FLOW = "targets"
PAGE = 10
METRIC = target_store.INITIATIVES
_WITH_WORDS = re.compile(r"\s*([\d.,\s]*\d)\s*(?:sang kien|sk)\s*")


async def start(ctx: Context) -> None:
    """Show the targets of the units under the officer and let them pick one to set."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    if not await _may_set_any(ctx, scope):
        return
    ctx.enter(FLOW, "pick")
    await _overview(ctx, scope, offset=0)


async def resume(ctx: Context) -> None:
    """Continue at the current step: picking a unit, or typing its target."""
    scope = await member_scope(ctx)
    if scope is None:
        ctx.leave()
        return
    if not await _may_set_any(ctx, scope):
        ctx.leave()
        return
    if ctx.conversation.step == "value":
        await _value(ctx, scope)
    else:
        await _pick(ctx, scope)


async def _may_set_any(ctx: Context, scope: Scope) -> bool:
    """Tell whether the member may set a target of some unit; if not, answer why."""
    children = await units.children(ctx.session, scope.unit)
    # Any unit right below stands for them all: the rule is the same for each.
    key = refusal(scope.member, Action.SET_TARGETS, children[0] if children else None, scope.unit)
    if key is None:
        return True
    own = refusal(scope.member, Action.SET_TARGETS, scope.unit, scope.unit)
    if not children and own == OUTSIDE_SUBTREE:
        ctx.say("targets.no_children", unit=scope.unit.name)
    else:
        ctx.say(key)
    return False


async def _pick(ctx: Context, scope: Scope) -> None:
    pressed = ctx.pressed
    if pressed is None:
        await _search(ctx, scope)
        return
    if pressed.startswith("p") and pressed[1:].isdigit():
        await _overview(ctx, scope, offset=int(pressed[1:]))
        return
    unit = await _child(ctx, scope, pressed)
    if unit is None:
        ctx.say(OUTSIDE_SUBTREE)
        return
    ctx.goto("value", unit_id=unit.id)
    current = await target_store.get(ctx.session, unit.id, scope.campaign.id, METRIC)
    ctx.say(
        "targets.ask_value",
        unit=unit.name,
        current=ctx.t("targets.current_value", value=format_number(current))
        if current is not None
        else ctx.t("targets.current_none"),
        choices=[ctx.choice(ctx.t("targets.back"), "back")],
    )


async def _search(ctx: Context, scope: Scope) -> None:
    query = clean_line(ctx.text)[:100]
    folded = fold(query)
    children = await units.children(ctx.session, scope.unit)
    found = [
        u
        for u in children
        if folded and (folded in u.name_folded or query.strip().upper() == u.code)
    ]
    if not found:
        ctx.say("targets.none_found", query=query)
        return
    goals = await target_store.of_units(
        ctx.session, [u.id for u in found], scope.campaign.id, METRIC
    )
    ctx.say("targets.pick", choices=_unit_choices(ctx, found[:PAGE], goals))


async def _value(ctx: Context, scope: Scope) -> None:
    if ctx.pressed == "back":
        ctx.goto("pick")
        await _overview(ctx, scope, offset=0)
        return
    unit_id = ctx.conversation.data.get("unit_id")
    unit = await _child(ctx, scope, f"u{unit_id}")
    if unit is None:
        ctx.leave()
        ctx.say(OUTSIDE_SUBTREE)
        return
    if ctx.pressed is not None:
        ctx.say("targets.type_number", unit=unit.name)
        return
    text = clean_line(ctx.text)
    value = target_store.parse_count(_number_part(text))
    if value is None:
        ctx.say("targets.bad_number", text=text[:50], unit=unit.name)
        return
    if value > target_store.MAX_VALUE:
        ctx.say("targets.too_large", maximum=format_number(target_store.MAX_VALUE), unit=unit.name)
        return
    previous = await target_store.put(
        ctx.session,
        unit_id=unit.id,
        campaign_id=scope.campaign.id,
        metric=METRIC,
        value=value,
        now=ctx.now,
        set_by_id=scope.member.id,
    )
    if previous != value:
        note(
            ctx,
            "target.set",
            unit_id=unit.id,
            subject=f"campaign:{scope.campaign.id}",
            metric=METRIC,
            value=value,
            previous=previous,
        )
    if previous is None:
        ctx.say("targets.set", unit=unit.name, value=format_number(value))
    elif previous == value:
        ctx.say("targets.unchanged", unit=unit.name, value=format_number(value))
    else:
        ctx.say(
            "targets.changed",
            unit=unit.name,
            old=format_number(previous),
            value=format_number(value),
        )
    ctx.goto("pick")
    await _overview(ctx, scope, offset=0)


async def _overview(ctx: Context, scope: Scope, *, offset: int) -> None:
    """Show the officer's target, the sum of those below, a warning if short, and a page."""
    children = await units.children(ctx.session, scope.unit)
    goals = await target_store.of_units(
        ctx.session, [scope.unit.id, *(u.id for u in children)], scope.campaign.id, METRIC
    )
    own = goals.get(scope.unit.id)
    given = [goals[u.id] for u in children if u.id in goals]
    lines = [
        ctx.t(
            "targets.overview",
            campaign=scope.campaign.name,
            unit=scope.unit.name,
            own=ctx.t("targets.own_value", value=format_number(own))
            if own is not None
            else ctx.t("targets.own_none"),
            given=len(given),
            count=len(children),
            total=format_number(sum(given)),
        )
    ]
    warning = await shortfall_text(ctx, scope.unit, scope.campaign.id)
    if warning:
        lines.append(warning)
    offset = max(0, min(offset, len(children) - 1))
    page = children[offset : offset + PAGE]
    choices = _unit_choices(ctx, page, goals)
    if offset + PAGE < len(children):
        choices.append(ctx.choice(ctx.t("targets.next_page"), f"p{offset + PAGE}"))
    if offset > 0:
        choices.append(ctx.choice(ctx.t("targets.previous_page"), f"p{max(0, offset - PAGE)}"))
    lines.append(ctx.t("targets.pick"))
    ctx.reply("\n".join(lines), choices)


async def shortfall_text(ctx: Context, parent: Unit, campaign_id: int) -> str | None:
    """Warn when the targets of the units under `parent` add up to less than its own."""
    short = await target_store.shortfall(ctx.session, parent, campaign_id, METRIC)
    if short is None:
        return None
    text = ctx.t(
        "targets.shortfall",
        unit=parent.name,
        total=format_number(short.children_total),
        target=format_number(short.parent_target),
        missing=format_number(short.missing),
    )
    if short.children_without:
        text += ctx.t("targets.shortfall_without", count=short.children_without)
    return text


def _unit_choices(ctx: Context, found: Sequence[Unit], goals: dict[int, int]) -> list[Choice]:
    return [
        ctx.choice(
            ctx.t("targets.unit_button", unit=u.name, value=format_number(goals[u.id]))
            if u.id in goals
            else ctx.t("targets.unit_button_none", unit=u.name),
            f"u{u.id}",
        )
        for u in found
    ]


async def _child(ctx: Context, scope: Scope, value: str) -> Unit | None:
    """Return the unit a choice names if the officer may set its target, whatever was sent."""
    if not value.startswith("u") or not value[1:].isdigit():
        return None
    unit = await units.get(ctx.session, int(value[1:]))
    if unit is None or not can(scope.member, Action.SET_TARGETS, unit, scope.unit):
        return None
    return unit


def _number_part(text: str) -> str:
    """Drop the words people may type after the number: "25 sáng kiến", "25 sk"."""
    match = _WITH_WORDS.fullmatch(fold(text))
    return match.group(1) if match else text
