"""/toi: what the bot knows about me."""

from __future__ import annotations

from handlers.context import Context
from storage import accounts, units


async def show(ctx: Context) -> None:
    """Show the member's name, unit, role and linked messengers."""
    member = ctx.member
    if member is None:
        ctx.say("hint.not_member")
        return
    unit = await units.get(ctx.session, member.unit_id)
    if unit is None:  # the unit was removed under the member; say what we know
        unit_line = "?"
    else:
        above = await units.ancestors(ctx.session, unit)
        unit_line = " › ".join([u.name for u in reversed(above)] + [unit.name])
    channels = ", ".join(
        ctx.t(f"channel.{account.channel}")
        for account in await accounts.of_member(ctx.session, member.id)
    )
    consent = (
        ctx.local_date(member.consent_at) if member.consent_at else ctx.t("profile.no_consent")
    )
    ctx.say(
        "profile.card",
        name=member.full_name,
        unit=unit_line,
        role=ctx.t(f"role.{member.role.value}"),
        status=ctx.t(f"status.{member.status.value}"),
        channels=channels,
        consent=consent,
    )
