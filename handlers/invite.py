"""/moi: an officer creates an invitation for their unit or one below it."""

from __future__ import annotations

from handlers.audit_log import note
from handlers.context import Context
from handlers.parsing import parse_id
from handlers.permissions import Action, refusal
from handlers.types import Choice
from storage import invitations, units
from storage.models import Role, Unit
from storage.text import clean_line

FLOW = "invite"
LISTED_UNITS = 8


async def start(ctx: Context) -> None:
    """Begin an invitation: show the officer's unit and those right under it."""
    officer = ctx.active_member
    own = await units.get(ctx.session, officer.unit_id) if officer is not None else None
    key = refusal(officer, Action.INVITE_MEMBER, own, own)
    if key is not None or own is None:
        ctx.say(key or "permission.denied")
        return
    sizes = _sizes(ctx.text.partition(" ")[2])
    if sizes is None:
        ctx.say("invite.bad_sizes", uses_max=invitations.USES_MAX, days_max=invitations.DAYS_MAX)
        return
    listed = await units.subtree(ctx.session, own, limit=LISTED_UNITS)
    ctx.enter(FLOW, "unit", **sizes)
    ctx.say("invite.ask_unit", choices=[ctx.choice(_label(u), f"u{u.id}") for u in listed])


async def resume(ctx: Context) -> None:
    """Continue the invitation at its current step."""
    officer = ctx.active_member
    own = await units.get(ctx.session, officer.unit_id) if officer else None
    if officer is None or own is None:
        ctx.leave()
        ctx.say("permission.officers_only")
        return
    if ctx.conversation.step == "unit":
        await _choose_unit(ctx, own)
    elif ctx.conversation.step == "role":
        await _choose_role(ctx, own)
    else:
        ctx.leave()


async def _choose_unit(ctx: Context, own: Unit) -> None:
    if ctx.pressed is None:
        query = clean_line(ctx.text)[:100]
        found = await units.search(ctx.session, query, within=own, limit=LISTED_UNITS)
        if not found:
            ctx.say("invite.none_found", query=query)
            return
        ctx.say("invite.ask_unit", choices=[ctx.choice(_label(u), f"u{u.id}") for u in found])
        return
    value = ctx.pressed
    unit = await units.get(ctx.session, int(value[1:])) if value[1:].isdigit() else None
    key = refusal(ctx.member, Action.INVITE_MEMBER, unit, own)
    if key is not None or unit is None:
        ctx.say(key or "permission.outside_subtree")
        return
    ctx.goto("role", unit_id=unit.id)
    ctx.say("invite.ask_role", unit=unit.name, choices=_role_choices(ctx, unit))


def _role_choices(ctx: Context, unit: Unit | None) -> list[Choice]:
    """Offer the roles a code to `unit` may give: members only in a CĐCS."""
    return [
        ctx.choice(ctx.t(f"role.{role.value}"), role.value)
        for role in (Role.MEMBER, Role.OFFICER)
        if unit is None or invitations.admits(role, unit)
    ]


async def _choose_role(ctx: Context, own: Unit) -> None:
    unit = await units.get(ctx.session, int(ctx.conversation.data["unit_id"]))
    if ctx.pressed not in (Role.MEMBER.value, Role.OFFICER.value):
        ctx.say("invite.ask_role_again", choices=_role_choices(ctx, unit))
        return
    role = Role(ctx.pressed)
    if unit is not None and not invitations.admits(role, unit):  # a forged press
        ctx.say("invite.member_needs_grassroots", choices=_role_choices(ctx, unit))
        return
    action = Action.INVITE_OFFICER if role == Role.OFFICER else Action.INVITE_MEMBER
    key = refusal(ctx.member, action, unit, own)
    if key is not None or unit is None:
        ctx.leave()
        ctx.say(key or "permission.outside_subtree")
        return
    config, data = ctx.services.config, ctx.conversation.data
    # An officer's code makes one officer; a member's code is shared with a whole unit. The
    # officer may say otherwise, as `thidua invite --uses --days` does: /moi 300 30.
    default_uses = 1 if role == Role.OFFICER else config.invite_default_uses
    uses = int(data.get("uses") or default_uses)
    days = int(data.get("days") or config.invite_default_days)
    invitation = await invitations.create(
        ctx.session,
        unit=unit,
        role=role,
        uses=uses,
        days=days,
        now=ctx.now,
        created_by_id=ctx.member.id if ctx.member else None,
    )
    note(
        ctx,
        "invite.create",
        unit_id=unit.id,
        subject=f"invitation:{invitation.id}",
        role=role.value,
        uses=uses,
        days=days,
    )
    ctx.leave()
    links = "\n".join(ctx.services.invite_links.links(invitation.code))
    ctx.say(
        "invite.created",
        code=invitation.code,
        unit=unit.name,
        role=ctx.t(f"role.{role.value}"),
        uses=uses,
        expires=ctx.local_time(invitation.expires_at),
        links=links or ctx.t("invite.no_link"),
    )


def _sizes(arguments: str) -> dict[str, int] | None:
    """Read "/moi [uses [days]]": the numbers given, or None when they are not numbers in range."""
    words = arguments.split()
    if len(words) > 2:
        return None
    numbers = [parse_id(word) for word in words]
    if any(n is None for n in numbers):
        return None
    sizes = dict(zip(("uses", "days"), (n for n in numbers if n is not None), strict=False))
    if not 1 <= sizes.get("uses", 1) <= invitations.USES_MAX:
        return None
    if not 1 <= sizes.get("days", 1) <= invitations.DAYS_MAX:
        return None
    return sizes


def _label(unit: Unit) -> str:
    return f"{unit.name} ({unit.code})"
