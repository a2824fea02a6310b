"""Where a member stands: their unit and the campaign it takes part in."""

from __future__ import annotations

from dataclasses import dataclass

from handlers.context import Context
from storage import campaigns, units
from storage.models import Campaign, Member, Unit


@dataclass(frozen=True, slots=True)
class Scope:
    """An active member, their unit and their campaign."""

    member: Member
    unit: Unit
    campaign: Campaign


async def member_scope(ctx: Context) -> Scope | None:
    """Return the member's scope, or answer why there is none and return None."""
    member = ctx.active_member
    if member is None:
        ctx.say_standing()
        return None
    unit = await units.get(ctx.session, member.unit_id)
    if unit is None:
        ctx.say("campaign.none")
        return None
    campaign = await campaigns.for_unit(ctx.session, unit, ctx.today)
    if campaign is None:
        ctx.say("campaign.none")
        return None
    return Scope(member=member, unit=unit, campaign=campaign)
