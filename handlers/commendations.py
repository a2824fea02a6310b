"""/khenthuong: an officer records a commendation of a member or a unit of their branch.

The commendation is announced to the commended unit's subtree as the officer's own
broadcast: it is their act, so they get its delivery report like any announcement of theirs,
it is listed with their broadcasts, and they are not sent a copy of their own words.
"""

from __future__ import annotations

from collections.abc import Sequence

from handlers.audit_log import note
from handlers.context import Context
from handlers.permissions import Action, can, refusal
from handlers.scope import Scope, member_scope
from handlers.types import Reply
from storage import broadcasts as broadcast_store
from storage import campaigns, members, recognition, units
from storage import commitments as commitment_store
from storage.models import (
    Broadcast,
    BroadcastStatus,
    Commendation,
    Member,
    MemberStatus,
    Phase,
    Unit,
)
from storage.text import clean, clean_line, fold

FLOW = "commend"
TITLE_MIN, TITLE_MAX = 2, 100
REASON_MIN, REASON_MAX = 10, 1000
LISTED = 8
KINDS = ("member", "unit")


async def start(ctx: Context) -> None:
    """Ask whom the officer commends: a member or a unit."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    key = refusal(scope.member, Action.COMMEND, scope.unit, scope.unit)
    if key is not None:
        ctx.say(key)
        return
    ctx.enter(FLOW, "whom")
    _ask_whom(ctx, scope)


def _ask_whom(ctx: Context, scope: Scope) -> None:
    ctx.say(
        "commend.ask_whom",
        unit=scope.unit.name,
        choices=[ctx.choice(ctx.t(f"commend.whom_{kind}"), kind) for kind in KINDS],
    )


async def resume(ctx: Context) -> None:
    """Continue at the current step; the officer's rights are checked again at each."""
    scope = await member_scope(ctx)
    key = refusal(scope.member, Action.COMMEND, scope.unit, scope.unit) if scope else None
    if scope is None or key is not None:
        ctx.leave()
        if key is not None:
            ctx.say(key)
        return
    step = ctx.conversation.step
    if step == "whom":
        await _whom(ctx, scope)
    elif step == "member":
        await _member(ctx, scope)
    elif step == "unit":
        await _unit(ctx, scope)
    elif step in ("title", "reason", "phase", "confirm"):
        target = await _target(ctx, scope, lock=step == "confirm")
        if target is None:
            ctx.leave()
            ctx.say("permission.outside_subtree")
            return
        member, unit = target
        if step == "title":
            await _title(ctx, scope)
        elif step == "reason":
            await _reason(ctx, scope)
        elif step == "phase":
            await _phase(ctx, scope, member, unit)
        else:
            await _confirm(ctx, scope, member, unit)
    else:
        ctx.leave()


async def _whom(ctx: Context, scope: Scope) -> None:
    if ctx.pressed == "member":
        ctx.goto("member")
        ctx.say("commend.ask_member", unit=scope.unit.name)
    elif ctx.pressed == "unit":
        ctx.goto("unit")
        await _offer_units(ctx, await units.subtree(ctx.session, scope.unit, limit=LISTED))
    else:
        _ask_whom(ctx, scope)


async def _member(ctx: Context, scope: Scope) -> None:
    pressed = ctx.pressed or ""
    if pressed.startswith("m") and pressed[1:].isdigit():
        member = await members.get(ctx.session, int(pressed[1:]))
        unit = await units.get(ctx.session, member.unit_id) if member is not None else None
        if member is None or unit is None or not _may_commend(scope, member, unit):
            ctx.say("permission.outside_subtree")
            return
        await _ask_title(ctx, scope, member, unit)
        return
    query = clean_line(ctx.text)[:100]
    found = await commitment_store.find_members(
        ctx.session, scope.unit, fold(query), exclude_id=scope.member.id, limit=LISTED
    )
    if not found:
        ctx.say("commend.member_none_found", query=query, unit=scope.unit.name)
        return
    ctx.say(
        "commend.member_results",
        choices=[ctx.choice(f"{m.full_name} – {u.name}", f"m{m.id}") for m, u in found],
    )


async def _offer_units(ctx: Context, found: Sequence[Unit]) -> None:
    ctx.say(
        "commend.ask_unit",
        choices=[ctx.choice(f"{u.name} ({u.code})", f"u{u.id}") for u in found],
    )


async def _unit(ctx: Context, scope: Scope) -> None:
    pressed = ctx.pressed or ""
    if pressed.startswith("u") and pressed[1:].isdigit():
        unit = await units.get(ctx.session, int(pressed[1:]))
        key = refusal(scope.member, Action.COMMEND, unit, scope.unit)
        if key is not None or unit is None:
            ctx.say(key or "permission.outside_subtree")
            return
        await _ask_title(ctx, scope, None, unit)
        return
    query = clean_line(ctx.text)[:100]
    found = await units.search(ctx.session, query, within=scope.unit, limit=LISTED)
    if not found:
        ctx.say("invite.none_found", query=query)
        found = await units.subtree(ctx.session, scope.unit, limit=LISTED)
    await _offer_units(ctx, found)


def _may_commend(scope: Scope, member: Member, unit: Unit) -> bool:
    """Only active members of the officer's branch, never the officer themself."""
    return (
        member.status == MemberStatus.ACTIVE
        and member.id != scope.member.id
        and can(scope.member, Action.COMMEND, unit, scope.unit)
    )


async def _target(
    ctx: Context, scope: Scope, *, lock: bool = False
) -> tuple[Member | None, Unit] | None:
    """Load whom the conversation commends, if this officer may still commend them.

    Whatever the conversation says, the branch decides, checked again on every step; when
    recording, the rows are locked so that a move or a demotion cannot slip in between.
    """
    data = ctx.conversation.data
    if lock:
        # The officer's own row too: a demotion or a move committed meanwhile is seen here.
        await ctx.session.refresh(scope.member, with_for_update=True)
    member: Member | None = None
    if data.get("member_id") is not None:
        member = await ctx.session.get(Member, int(data["member_id"]), with_for_update=lock)
        if member is None:
            return None
        home = await ctx.session.get(Unit, member.unit_id)
        if home is None or not _may_commend(scope, member, home):
            return None
        return member, home
    if data.get("unit_id") is None:
        return None
    unit = await ctx.session.get(Unit, int(data["unit_id"]), with_for_update=lock)
    if unit is None or not can(scope.member, Action.COMMEND, unit, scope.unit):
        return None
    return None, unit


def _titles(ctx: Context, kind: str) -> list[str]:
    return [line.strip() for line in ctx.t(f"commend.titles_{kind}").splitlines() if line.strip()]


async def _ask_title(ctx: Context, scope: Scope, member: Member | None, unit: Unit) -> None:
    kind = "member" if member is not None else "unit"
    ctx.goto("title", kind=kind, member_id=member.id if member else None, unit_id=unit.id)
    _say_ask_title(ctx, kind, member.full_name if member else unit.name)


def _say_ask_title(ctx: Context, kind: str, name: str) -> None:
    choices = [ctx.choice(title, f"t{i}") for i, title in enumerate(_titles(ctx, kind))]
    ctx.say("commend.ask_title", name=name, maximum=TITLE_MAX, choices=choices)


async def _title(ctx: Context, scope: Scope) -> None:
    kind = str(ctx.conversation.data.get("kind"))
    titles = _titles(ctx, kind)
    pressed = ctx.pressed or ""
    if pressed.startswith("t") and pressed[1:].isdigit() and int(pressed[1:]) < len(titles):
        title = titles[int(pressed[1:])]
    elif ctx.pressed is None:
        title = clean_line(ctx.text)
        # A bare number is a mistyped choice, not a title; the choices are offered again.
        if not TITLE_MIN <= len(title) <= TITLE_MAX or not any(c.isalpha() for c in title):
            choices = [ctx.choice(t, f"t{i}") for i, t in enumerate(titles)]
            ctx.say(
                "commend.title_length",
                minimum=TITLE_MIN,
                maximum=TITLE_MAX,
                length=len(title),
                choices=choices,
            )
            return
    else:
        ctx.say("choice.invalid")
        return
    ctx.goto("reason", title=title)
    ctx.say("commend.ask_reason", title=title, minimum=REASON_MIN, maximum=REASON_MAX)


async def _reason(ctx: Context, scope: Scope) -> None:
    reason = clean(ctx.text)
    if ctx.pressed is not None or not REASON_MIN <= len(reason) <= REASON_MAX:
        ctx.say("commend.reason_length", minimum=REASON_MIN, maximum=REASON_MAX, length=len(reason))
        return
    ctx.goto("phase", reason=reason)
    await _ask_phase(ctx, scope)


async def _ask_phase(ctx: Context, scope: Scope) -> None:
    phases = await campaigns.phases(ctx.session, scope.campaign.id)
    running = campaigns.phase_on(phases, ctx.today)
    choices = [
        ctx.choice(
            ctx.t("commend.phase_running", phase=p.name) if p is running else p.name, f"p{p.id}"
        )
        for p in phases
    ]
    choices.append(ctx.choice(ctx.t("commend.no_phase"), "none"))
    ctx.say("commend.ask_phase", choices=choices)


async def _phase(ctx: Context, scope: Scope, member: Member | None, unit: Unit) -> None:
    pressed = ctx.pressed or ""
    phase_id: int | None = None
    if pressed.startswith("p") and pressed[1:].isdigit():
        phase = await ctx.session.get(Phase, int(pressed[1:]))
        if phase is None or phase.campaign_id != scope.campaign.id:
            ctx.say("choice.invalid")
            return
        phase_id = phase.id
    elif pressed != "none":
        await _ask_phase(ctx, scope)
        return
    ctx.goto("confirm", phase_id=phase_id)
    await _show_summary(ctx, scope, member, unit)


async def _phase_name(ctx: Context, scope: Scope) -> str | None:
    raw = ctx.conversation.data.get("phase_id")
    phase = await ctx.session.get(Phase, int(raw)) if raw is not None else None
    return phase.name if phase is not None and phase.campaign_id == scope.campaign.id else None


def _whom_text(ctx: Context, member: Member | None, unit: Unit) -> str:
    if member is not None:
        return ctx.t("commend.whom_member_text", name=member.full_name, unit=unit.name)
    return ctx.t("commend.whom_unit_text", unit=unit.name)


async def _show_summary(ctx: Context, scope: Scope, member: Member | None, unit: Unit) -> None:
    data = ctx.conversation.data
    phase = await _phase_name(ctx, scope)
    ctx.say(
        "commend.summary",
        whom=_whom_text(ctx, member, unit),
        title=data["title"],
        reason=data["reason"],
        phase=phase or ctx.t("commend.no_phase_text"),
        unit=unit.name,
        choices=[
            ctx.choice(ctx.t("commend.send"), "send"),
            ctx.choice(ctx.t("register.cancel"), "cancel"),
        ],
    )


async def _confirm(ctx: Context, scope: Scope, member: Member | None, unit: Unit) -> None:
    if ctx.pressed == "cancel":
        ctx.leave()
        ctx.say("cancel.done")
        return
    if ctx.pressed != "send":
        await _show_summary(ctx, scope, member, unit)
        return
    data = ctx.conversation.data
    phase = await _phase_name(ctx, scope)
    commendation = Commendation(
        campaign_id=scope.campaign.id,
        phase_id=data.get("phase_id") if phase is not None else None,
        member_id=member.id if member is not None else None,
        unit_id=unit.id,
        title=str(data["title"]),
        reason=str(data["reason"]),
        awarded_by_id=scope.member.id,
        created_at=ctx.now,
    )
    ctx.session.add(commendation)
    await ctx.session.flush()
    text = ctx.t(
        "commend.announcement",
        whom=_whom_text(ctx, member, unit),
        title=commendation.title,
        reason=commendation.reason,
        phase=ctx.t("commend.announcement_phase", phase=phase) if phase else "",
        officer=scope.member.full_name,
        officer_unit=scope.unit.name,
    )
    broadcast = Broadcast(
        author_id=scope.member.id,
        origin=f"commendation:{commendation.id}",
        scope_unit_id=unit.id,
        payload=Reply(text=text).to_dict(),
        audience=broadcast_store.Audience(kind="everyone").to_dict(),
        status=BroadcastStatus.SCHEDULED,
        scheduled_for=None,
        created_at=ctx.now,
    )
    ctx.session.add(broadcast)
    await ctx.session.flush()
    queued = await broadcast_store.queue(ctx.session, broadcast, unit, ctx.now)
    ctx.outcome.queued_notifications = True
    note(
        ctx,
        "commendation.create",
        unit_id=unit.id,
        subject=f"commendation:{commendation.id}",
        title=commendation.title,
        member=f"member:{member.id}" if member is not None else None,
        broadcast=broadcast.id,
        recipients=queued,
    )
    ctx.leave()
    ctx.say(
        "commend.recorded",
        whom=_whom_text(ctx, member, unit),
        title=commendation.title,
        unit=unit.name,
        count=queued,
        number=broadcast.id,
    )


async def mine_lines(ctx: Context, scope: Scope) -> list[str]:
    """The member's own commendations in the campaign, for /cuatoi."""
    found = await recognition.commendations_of_member(
        ctx.session, scope.campaign.id, scope.member.id
    )
    if not found:
        return []
    lines = [ctx.t("commend.mine_title")]
    lines += [
        ctx.t(
            "commend.mine_line",
            title=commendation.title,
            date=ctx.local_date(commendation.created_at),
            phase=ctx.t("commend.mine_phase", phase=phase.name) if phase is not None else "",
            reason=_short(commendation.reason),
        )
        for commendation, phase in found
    ]
    return lines


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
