"""Help and cancel: the commands every user has."""

from __future__ import annotations

from handlers.context import Context
from handlers.permissions import is_officer


async def show(ctx: Context) -> None:
    """List the commands this user can use."""
    if ctx.member is None:
        ctx.say("help.newcomer")
        return
    ctx.say("help.member")
    if is_officer(ctx.member):
        ctx.say("help.officer")


async def cancel(ctx: Context) -> None:
    """Leave whatever conversation is under way."""
    if ctx.conversation.flow is None:
        ctx.say("cancel.nothing")
        return
    ctx.leave()
    ctx.say("cancel.done")
