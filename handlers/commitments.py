"""/dangky: registering an emulation commitment, optionally as a pact with a counterpart."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from handlers.audit_log import note
from handlers.context import ACTION_PREFIX, Context
from handlers.parsing import format_number, parse_target
from handlers.permissions import Action, can, refusal
from handlers.scope import Scope, member_scope
from handlers.types import Choice, Reply
from storage import campaigns, counters, members, units
from storage.commitments import find_members
from storage.models import (
    Campaign,
    Commitment,
    CommitmentKind,
    DeadlineKind,
    Movement,
    Pact,
    Unit,
)
from storage.text import clean, clean_line, fold

FLOW = "register"
PACT_ACTION = "pact"
CONTENT_MIN, CONTENT_MAX = 10, 1000
SEARCH_MIN = 2
LISTED = 8


def late_policy(campaign: Campaign) -> str:
    """Return "allow" or "refuse": what happens to a registration after its deadline."""
    return str(campaign.options.get("late_registration", "allow"))


def pact_expiry_days(campaign: Campaign) -> int:
    return int(campaign.options.get("pact_expiry_days", 7))


async def registration_is_late(
    ctx: Context, campaign: Campaign, kind: DeadlineKind
) -> tuple[bool, str | None]:
    """Tell whether registering now is after the deadline of `kind`, and that deadline's day."""
    deadline = await campaigns.deadline_of(ctx.session, campaign.id, kind)
    if deadline is None:
        return False, None
    late = campaigns.is_past(deadline.due_on, ctx.now, ctx.services.config.timezone)
    return late, ctx.day(deadline.due_on)


async def start(ctx: Context) -> None:
    """Begin a registration: choose a movement."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    late, due = await registration_is_late(
        ctx, scope.campaign, DeadlineKind.COMMITMENT_REGISTRATION
    )
    if late and late_policy(scope.campaign) == "refuse":
        ctx.say("register.closed", date=due)
        return
    movements = _sector_first(await campaigns.movements(ctx.session, scope.campaign.id), scope.unit)
    if not movements:
        ctx.say("register.no_movements")
        return
    ctx.enter(FLOW, "movement", campaign_id=scope.campaign.id)
    if late:
        ctx.say("register.late_warning", date=due)
    ctx.say("register.ask_movement", choices=[ctx.choice(m.name, f"m{m.id}") for m in movements])


async def resume(ctx: Context) -> None:
    """Continue the registration at its current step."""
    scope = await member_scope(ctx)
    if scope is None:
        ctx.leave()
        return
    steps = {
        "movement": _movement,
        "kind": _kind,
        "unit": _unit,
        "content": _content,
        "target": _target,
        "pact": _pact,
        "pact_search": _pact_search,
        "confirm": _confirm,
    }
    step = steps.get(ctx.conversation.step or "")
    if step is None:
        ctx.leave()
        return
    await step(ctx, scope)


def _sector_first(movements: Any, unit: Unit) -> list[Movement]:
    sector = unit.sector.value if unit.sector else None
    return sorted(movements, key=lambda m: 0 if sector and sector in m.sectors else 1)


async def _movement(ctx: Context, scope: Scope) -> None:
    value = ctx.pressed or ""
    movement_id = int(value[1:]) if value.startswith("m") and value[1:].isdigit() else None
    movement = await ctx.session.get(Movement, movement_id) if movement_id else None
    if movement is None or movement.campaign_id != scope.campaign.id or not movement.active:
        movements = _sector_first(
            await campaigns.movements(ctx.session, scope.campaign.id), scope.unit
        )
        ctx.say(
            "register.ask_movement", choices=[ctx.choice(m.name, f"m{m.id}") for m in movements]
        )
        return
    if can(scope.member, Action.COMMIT_FOR_UNIT, scope.unit, scope.unit):
        ctx.goto("kind", movement_id=movement.id)
        ctx.say("register.ask_kind", movement=movement.name, choices=_kind_choices(ctx))
        return
    ctx.goto("content", movement_id=movement.id, kind=CommitmentKind.INDIVIDUAL.value)
    ctx.say(
        "register.ask_content", movement=movement.name, minimum=CONTENT_MIN, maximum=CONTENT_MAX
    )


def _kind_choices(ctx: Context) -> list[Choice]:
    return [
        ctx.choice(ctx.t("register.kind_individual"), "i"),
        ctx.choice(ctx.t("register.kind_collective"), "c"),
    ]


async def _kind(ctx: Context, scope: Scope) -> None:
    if ctx.pressed == "i":
        ctx.goto("content", kind=CommitmentKind.INDIVIDUAL.value)
        ctx.say("register.ask_content_plain", minimum=CONTENT_MIN, maximum=CONTENT_MAX)
        return
    if ctx.pressed == "c":
        listed = await units.subtree(ctx.session, scope.unit, limit=LISTED)
        ctx.goto("unit", kind=CommitmentKind.COLLECTIVE.value)
        ctx.say("register.ask_unit", choices=[ctx.choice(_label(u), f"u{u.id}") for u in listed])
        return
    ctx.say("register.ask_kind_again", choices=_kind_choices(ctx))


async def _unit(ctx: Context, scope: Scope) -> None:
    if ctx.pressed is None:
        query = clean_line(ctx.text)[:100]
        found = await units.search(ctx.session, query, within=scope.unit, limit=LISTED)
        if not found:
            ctx.say("invite.none_found", query=query)
            return
        ctx.say("register.ask_unit", choices=[ctx.choice(_label(u), f"u{u.id}") for u in found])
        return
    unit = await _unit_from(ctx, ctx.pressed)
    if unit is None or not can(scope.member, Action.COMMIT_FOR_UNIT, unit, scope.unit):
        ctx.say("permission.outside_subtree")
        return
    ctx.goto("content", unit_id=unit.id)
    ctx.say(
        "register.ask_content_for_unit", unit=unit.name, minimum=CONTENT_MIN, maximum=CONTENT_MAX
    )


async def _content(ctx: Context, scope: Scope) -> None:
    content = clean(ctx.text)
    if ctx.pressed is not None or len(content) < CONTENT_MIN:
        ctx.say("register.content_too_short", minimum=CONTENT_MIN, length=len(content))
        return
    if len(content) > CONTENT_MAX:
        ctx.say("register.content_too_long", maximum=CONTENT_MAX, length=len(content))
        return
    if ctx.conversation.data.get("editing"):
        ctx.goto("confirm", content=content)
        await _show_summary(ctx, scope)
        return
    ctx.goto("target", content=content)
    ctx.say("register.ask_target", choices=[ctx.choice(ctx.t("register.skip"), "skip")])


async def _target(ctx: Context, scope: Scope) -> None:
    if ctx.pressed == "skip":
        ctx.goto("pact", target_value=None, target_unit=None)
    else:
        parsed = parse_target(clean_line(ctx.text)) if ctx.pressed is None else None
        if parsed is None:
            ctx.say("register.target_invalid", choices=[ctx.choice(ctx.t("register.skip"), "skip")])
            return
        ctx.goto("pact", target_value=parsed[0], target_unit=parsed[1])
    collective = ctx.conversation.data.get("kind") == CommitmentKind.COLLECTIVE.value
    ctx.say(
        "register.ask_pact",
        choices=[
            ctx.choice(ctx.t("register.pact_none"), "none"),
            ctx.choice(
                ctx.t("register.pact_with_unit" if collective else "register.pact_with_member"),
                "with",
            ),
        ],
    )


async def _pact(ctx: Context, scope: Scope) -> None:
    if ctx.pressed == "with":
        collective = ctx.conversation.data.get("kind") == CommitmentKind.COLLECTIVE.value
        ctx.goto("pact_search")
        ctx.say(
            "register.ask_counterpart_unit" if collective else "register.ask_counterpart_member"
        )
        return
    ctx.goto("confirm", counterpart=None)
    await _show_summary(ctx, scope)


async def _pact_search(ctx: Context, scope: Scope) -> None:
    data = ctx.conversation.data
    collective = data.get("kind") == CommitmentKind.COLLECTIVE.value
    if ctx.pressed is not None:
        counterpart = await _counterpart_from(ctx, scope, ctx.pressed, collective)
        if counterpart is None:
            ctx.say("choice.invalid")
            return
        ctx.goto("confirm", counterpart=counterpart)
        await _show_summary(ctx, scope)
        return
    query = clean_line(ctx.text)[:100]
    if len(query) < SEARCH_MIN:
        ctx.say("join.search_too_short", minimum=SEARCH_MIN)
        return
    root = await units.get(ctx.session, scope.campaign.root_unit_id)
    if root is None:
        ctx.say("campaign.none")
        return
    if collective:
        own_id = int(data["unit_id"])
        found_units = [
            u
            for u in await units.search(ctx.session, query, within=root, limit=LISTED + 1)
            if u.id != own_id
        ]
        choices = [ctx.choice(_label(u), f"t{u.id}") for u in found_units[:LISTED]]
    else:
        area = await _pact_area(ctx, scope)
        found = await find_members(ctx.session, area, fold(query), exclude_id=scope.member.id)
        choices = [ctx.choice(f"{m.full_name} – {u.name}", f"p{m.id}") for m, u in found]
    if not choices:
        ctx.say("register.counterpart_none", query=query)
        return
    ctx.say("register.pick_counterpart", choices=choices)


async def _counterpart_from(
    ctx: Context, scope: Scope, value: str, collective: bool
) -> dict[str, Any] | None:
    if not value[1:].isdigit():
        return None
    root = await units.get(ctx.session, scope.campaign.root_unit_id)
    if collective and value.startswith("t"):
        unit = await units.get(ctx.session, int(value[1:]))
        if unit is None or root is None or not units.is_within(unit, root):
            return None
        if unit.id == int(ctx.conversation.data["unit_id"]):
            return None
        return {"type": "unit", "id": unit.id, "label": unit.name}
    if not collective and value.startswith("p"):
        other = await members.get(ctx.session, int(value[1:]))
        if other is None or other.id == scope.member.id:
            return None
        other_unit = await units.get(ctx.session, other.unit_id)
        # The same area the search offers: colleagues of the same upper-level union.
        if other_unit is None or not units.is_within(other_unit, await _pact_area(ctx, scope)):
            return None
        return {"type": "member", "id": other.id, "label": f"{other.full_name} – {other_unit.name}"}
    return None


async def _show_summary(ctx: Context, scope: Scope) -> None:
    data = ctx.conversation.data
    movement = await ctx.session.get(Movement, int(data["movement_id"]))
    lines = [ctx.t("register.summary_title")]
    lines.append(ctx.t("register.summary_movement", movement=movement.name if movement else "?"))
    if data.get("kind") == CommitmentKind.COLLECTIVE.value:
        unit = await units.get(ctx.session, int(data["unit_id"]))
        lines.append(ctx.t("register.summary_collective", unit=unit.name if unit else "?"))
    else:
        lines.append(ctx.t("register.summary_individual"))
    lines.append(ctx.t("register.summary_content", content=data["content"]))
    if data.get("target_value") is not None:
        target = (
            f"{format_number(float(data['target_value']))} {data.get('target_unit') or ''}".strip()
        )
        lines.append(ctx.t("register.summary_target", target=target))
    counterpart = data.get("counterpart")
    if counterpart:
        lines.append(ctx.t("register.summary_pact", counterpart=counterpart["label"]))
    late, due = await registration_is_late(
        ctx, scope.campaign, DeadlineKind.COMMITMENT_REGISTRATION
    )
    if late:
        lines.append(ctx.t("register.summary_late", date=due))
    ctx.reply(
        "\n".join(lines),
        [
            ctx.choice(ctx.t("register.send"), "send"),
            ctx.choice(ctx.t("register.edit_content"), "edit"),
            ctx.choice(ctx.t("register.cancel"), "cancel"),
        ],
    )


async def _confirm(ctx: Context, scope: Scope) -> None:
    if ctx.pressed == "edit":
        ctx.goto("content", editing=True)
        ctx.say("register.ask_content_plain", minimum=CONTENT_MIN, maximum=CONTENT_MAX)
        return
    if ctx.pressed == "cancel":
        ctx.leave()
        ctx.say("cancel.done")
        return
    if ctx.pressed != "send":
        await _show_summary(ctx, scope)
        return
    late, due = await registration_is_late(
        ctx, scope.campaign, DeadlineKind.COMMITMENT_REGISTRATION
    )
    if late and late_policy(scope.campaign) == "refuse":
        ctx.leave()
        ctx.say("register.closed", date=due)
        return
    data = ctx.conversation.data
    movement = await ctx.session.get(Movement, int(data["movement_id"]))
    if movement is None or not movement.active:
        ctx.leave()
        ctx.say("register.movement_gone")
        return
    collective = data.get("kind") == CommitmentKind.COLLECTIVE.value
    unit_id = int(data["unit_id"]) if collective else scope.unit.id
    if collective:
        # Whatever the conversation says, the officer must still act for that unit.
        unit = await units.get(ctx.session, unit_id)
        key = refusal(scope.member, Action.COMMIT_FOR_UNIT, unit, scope.unit)
        if key is not None:
            ctx.leave()
            ctx.say(key)
            return
    number = await counters.next_value(ctx.session, f"commitment:{scope.campaign.id}")
    commitment = Commitment(
        reference=counters.reference("DK", scope.campaign.year, number),
        campaign_id=scope.campaign.id,
        movement_id=movement.id,
        kind=CommitmentKind.COLLECTIVE if collective else CommitmentKind.INDIVIDUAL,
        author_id=scope.member.id,
        unit_id=unit_id,
        content=str(data["content"]),
        target_value=data.get("target_value"),
        target_unit=data.get("target_unit") or None,
        late=late,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(commitment)
    await ctx.session.flush()
    if collective:
        note(
            ctx,
            "commitment.collective",
            unit_id=unit_id,
            subject=f"commitment:{commitment.id}",
            reference=commitment.reference,
        )
    counterpart = data.get("counterpart")
    ctx.leave()
    ctx.say(
        "register.receipt_late" if late else "register.receipt",
        reference=commitment.reference,
        movement=movement.name,
        date=due or "",
    )
    if counterpart:
        await propose_pact(ctx, scope, commitment, movement, counterpart)


async def propose_pact(
    ctx: Context,
    scope: Scope,
    commitment: Commitment,
    movement: Movement,
    counterpart: dict[str, Any],
) -> None:
    """Create a pact proposal and ask the counterpart (the member, or the unit's officers)."""
    expires_at = ctx.now + timedelta(days=pact_expiry_days(scope.campaign))
    pact = Pact(
        commitment_id=commitment.id,
        proposer_id=scope.member.id,
        counterpart_unit_id=counterpart["id"] if counterpart["type"] == "unit" else None,
        counterpart_member_id=counterpart["id"] if counterpart["type"] == "member" else None,
        expires_at=expires_at,
        created_at=ctx.now,
    )
    ctx.session.add(pact)
    await ctx.session.flush()
    proposer_side = scope.unit.name
    if commitment.kind == CommitmentKind.COLLECTIVE:
        unit = await units.get(ctx.session, commitment.unit_id)
        proposer_side = unit.name if unit else proposer_side
    prompt = Reply(
        text=ctx.t(
            "pact.proposal",
            proposer=scope.member.full_name,
            side=proposer_side,
            movement=movement.name,
            content=commitment.content,
            reference=commitment.reference,
            expires=ctx.local_date(expires_at),
        ),
        choices=(
            Choice(ctx.t("pact.accept"), f"{ACTION_PREFIX}:{PACT_ACTION}:{pact.id}:y"),
            Choice(ctx.t("pact.decline"), f"{ACTION_PREFIX}:{PACT_ACTION}:{pact.id}:n"),
        ),
    )
    recipients: list[int] = []
    if counterpart["type"] == "member":
        recipients = [int(counterpart["id"])]
    else:
        unit = await units.get(ctx.session, int(counterpart["id"]))
        if unit is not None:
            officers = await members.nearest_officers(ctx.session, unit)
            # Nobody answers their own proposal, even as the officer above both units.
            recipients = [m.id for m in officers if m.id != scope.member.id]
    reached = [await ctx.notify(member_id, prompt) for member_id in recipients]
    key = "pact.proposed" if any(reached) else "pact.proposed_unreachable"
    ctx.say(key, counterpart=counterpart["label"], expires=ctx.local_date(expires_at))


async def _pact_area(ctx: Context, scope: Scope) -> Unit:
    """Return where individual pact partners are found: the member's upper-level union."""
    parent = await units.get(ctx.session, scope.unit.parent_id) if scope.unit.parent_id else None
    return parent or scope.unit


async def _unit_from(ctx: Context, value: str) -> Unit | None:
    return await units.get(ctx.session, int(value[1:])) if value[1:].isdigit() else None


def _label(unit: Unit) -> str:
    return f"{unit.name} ({unit.code})"
