"""Help and cancel: the commands every user has."""

from __future__ import annotations

from handlers.context import Context
from handlers.permissions import Action, can, is_officer
from storage import units


async def show(ctx: Context) -> None:
    """List the commands this user can use."""
    if ctx.member is None or ctx.active_member is None:
        ctx.say("help.newcomer")
        if ctx.member is not None:
            ctx.say_standing()
        return
    ctx.say("help.member")
    if is_officer(ctx.member):
        ctx.say("help.officer")
    unit = await units.get(ctx.session, ctx.member.unit_id)
    if can(ctx.member, Action.VIEW_AUDIT, unit, unit):
        ctx.say("audit.help_admin")


async def cancel(ctx: Context) -> None:
    """Leave whatever conversation is under way."""
    if ctx.conversation.flow is None:
        ctx.say("cancel.nothing")
        return
    ctx.leave()
    ctx.say("cancel.done")
