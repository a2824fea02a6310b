"""/lienket: one member, several messengers.

From a member's account it shows their linked accounts, a one-time code and a choice of the
account that gets reminders; `/lienket CODE` sent from another account links that account to
the same member. Two members are never merged: an account of another member is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import update

from handlers.context import ACTION_PREFIX, Context
from handlers.types import Choice, Reply
from storage import accounts, links, outbox
from storage.models import ChannelAccount, Member, MemberStatus

PREFER_ACTION = "link"


async def start(ctx: Context) -> None:
    """Show the member's accounts and a fresh code, or link this account with a code."""
    _word, _, rest = ctx.text.partition(" ")
    if rest.strip():
        await _redeem(ctx, links.normalise(rest))
        return
    member = ctx.active_member
    if member is None:
        if ctx.member is None:
            ctx.say("link.newcomer")
        else:
            ctx.say_standing()
        return
    owned = await accounts.of_member(ctx.session, member.id)
    code = await links.issue(ctx.session, member.id, ctx.now)
    ctx.say(
        "link.code",
        accounts=_listing(ctx, owned),
        code=code,
        minutes=int(links.VALID_FOR.total_seconds() // 60),
    )
    if len(owned) > 1:
        ctx.say("link.ask_preferred", choices=_prefer_choices(ctx, owned))


async def prefer(ctx: Context, args: list[str]) -> None:
    """Make the pressed account the one that gets the member's reminders."""
    member = ctx.active_member
    if member is None:
        ctx.say_standing()
        return
    owned = await accounts.of_member(ctx.session, member.id)
    chosen = next((a for a in owned if args and str(a.id) == args[0]), None)
    if chosen is None:
        ctx.say("link.gone")
        return
    await ctx.session.execute(
        update(ChannelAccount)
        .where(ChannelAccount.member_id == member.id)
        .values(preferred=ChannelAccount.id == chosen.id)
        .execution_options(synchronize_session="fetch")
    )
    ctx.say("link.preferred", account=_label(ctx, chosen))


async def _redeem(ctx: Context, code: str) -> None:
    until = await links.blocked_until(ctx.session, ctx.account.id, ctx.now)
    if until is not None:
        ctx.say("link.too_many", time=ctx.local_time(until))
        return
    member_id = await links.holder(ctx.session, code, ctx.now)
    member = await ctx.session.get(Member, member_id) if member_id is not None else None
    if member is None or member.status != MemberStatus.ACTIVE:
        await links.record_wrong(ctx.session, ctx.account.id, ctx.now)
        ctx.say("link.bad_code")
        return
    if ctx.account.member_id == member.id:
        ctx.say("link.already")
        return
    if ctx.account.member_id is not None:
        ctx.say("link.other_member")
        return
    await links.use(ctx.session, code, member.id)
    await links.forget_wrong(ctx.session, ctx.account.id)
    ctx.account.member_id = member.id
    ctx.member = member
    owned = await accounts.of_member(ctx.session, member.id)
    ctx.say("link.done", name=member.full_name, accounts=_listing(ctx, owned))
    await _tell_other_account(ctx, owned)


async def _tell_other_account(ctx: Context, owned: Sequence[ChannelAccount]) -> None:
    """Tell the member on an account of theirs other than this one (the preferred if any)."""
    others = [a for a in owned if a.id != ctx.account.id and a.reachable]
    if not others:
        return
    target = next((a for a in others if a.preferred), others[0])
    text = ctx.t("link.notice", account=_label(ctx, ctx.account))
    outbox.enqueue(
        ctx.session,
        account_id=target.id,
        channel=target.channel,
        payload=Reply(text).to_dict(),
        now=ctx.now,
    )
    ctx.outcome.queued_notifications = True


def _label(ctx: Context, account: ChannelAccount) -> str:
    channel = ctx.t(f"channel.{account.channel}")
    if not account.display_name:
        return channel
    return ctx.t("link.account", channel=channel, name=account.display_name)


def _listing(ctx: Context, owned: Sequence[ChannelAccount]) -> str:
    return "\n".join(
        ctx.t("link.line_preferred" if a.preferred else "link.line", account=_label(ctx, a))
        for a in owned
    )


def _prefer_choices(ctx: Context, owned: Sequence[ChannelAccount]) -> list[Choice]:
    return [
        Choice(_label(ctx, a), f"{ACTION_PREFIX}:{PREFER_ACTION}:{a.id}")
        for a in owned
        if a.reachable
    ]
