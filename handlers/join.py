"""Joining a union: by invitation code, or by finding one's unit and asking its officers."""

from __future__ import annotations

from handlers.audit_log import note
from handlers.context import ACTION_PREFIX, Context
from handlers.permissions import Action, refusal
from handlers.types import Choice, Reply
from storage import invitations, members, units
from storage.models import Member, MemberStatus, Role, Unit, UnitKind
from storage.text import clean_line

FLOW = "join"
DECIDE_ACTION = "join"

NAME_MIN, NAME_MAX = 2, 100
SEARCH_MIN, SEARCH_MAX = 2, 100
SEARCH_RESULTS = 8


async def start(ctx: Context) -> None:
    """Handle /start, with or without an invitation code."""
    _, _, code = ctx.text.partition(" ")
    code = code.strip()
    member = ctx.member
    if member is not None and member.status == MemberStatus.ACTIVE:
        unit = await units.get(ctx.session, member.unit_id)
        key = "join.already_member_code" if code else "join.welcome_back"
        ctx.say(key, name=member.full_name, unit=unit.name if unit else "?")
        return
    if member is not None and member.status == MemberStatus.PENDING:
        ctx.say("join.still_pending")
        return
    if code:
        await _start_with_code(ctx, code)
        return
    ctx.enter(FLOW, "search", mode="request")
    ctx.say("join.ask_unit")


async def _start_with_code(ctx: Context, code: str) -> None:
    invitation = await invitations.find(ctx.session, code)
    problem = invitations.problem(invitation, ctx.now)
    if problem is not None or invitation is None:
        ctx.say(f"join.code_{problem}", code=invitations.normalize_code(code)[:32])
        return
    unit = await units.get(ctx.session, invitation.unit_id)
    if unit is None:
        ctx.say("join.code_unknown", code=invitation.code)
        return
    ctx.enter(FLOW, "name", mode="invite", code=invitation.code, unit_id=unit.id)
    ctx.say("join.invited", unit=unit.name, role=ctx.t(f"role.{invitation.role.value}"))
    ctx.say("join.ask_name")


async def resume(ctx: Context) -> None:
    """Continue the joining conversation at its current step."""
    step = ctx.conversation.step
    if step == "search":
        await _search(ctx)
    elif step == "name":
        _take_name(ctx)
    elif step == "consent":
        await _consent(ctx)
    else:
        ctx.leave()
        ctx.say("hint.not_member")


async def _search(ctx: Context) -> None:
    if ctx.pressed is not None:
        await _pick_unit(ctx, ctx.pressed)
        return
    query = clean_line(ctx.text)
    if len(query) < SEARCH_MIN:
        ctx.say("join.search_too_short", minimum=SEARCH_MIN)
        return
    if len(query) > SEARCH_MAX:
        ctx.say("input.too_long", maximum=SEARCH_MAX, length=len(query))
        return
    found = await units.search(
        ctx.session, query[:100], kinds=[UnitKind.GRASSROOTS], limit=SEARCH_RESULTS
    )
    if not found:
        ctx.say("join.search_none", query=query[:100])
        return
    ctx.say("join.search_results", choices=[ctx.choice(_unit_label(u), f"u{u.id}") for u in found])


async def _pick_unit(ctx: Context, value: str) -> None:
    unit = await units.get(ctx.session, int(value[1:])) if value[1:].isdigit() else None
    if unit is None or unit.kind != UnitKind.GRASSROOTS:
        ctx.say("choice.invalid")
        return
    ctx.goto("name", unit_id=unit.id)
    ctx.say("join.unit_chosen", unit=unit.name)
    ctx.say("join.ask_name")


def _take_name(ctx: Context) -> None:
    if ctx.pressed is not None or not ctx.text:
        ctx.say("join.ask_name")
        return
    name = clean_line(ctx.text)
    letters = sum(ch.isalpha() for ch in name)
    if len(name) > NAME_MAX:
        ctx.say("join.name_too_long", maximum=NAME_MAX, length=len(name))
        return
    if letters < NAME_MIN:
        ctx.say("join.name_invalid")
        return
    ctx.goto("consent", name=name)
    ctx.say(
        "consent.text",
        version=ctx.services.config.consent_version,
        choices=[
            ctx.choice(ctx.t("consent.accept"), "yes"),
            ctx.choice(ctx.t("consent.decline"), "no"),
        ],
    )


async def _consent(ctx: Context) -> None:
    if ctx.pressed not in ("yes", "no"):
        ctx.say(
            "consent.please_choose",
            choices=[
                ctx.choice(ctx.t("consent.accept"), "yes"),
                ctx.choice(ctx.t("consent.decline"), "no"),
            ],
        )
        return
    if ctx.pressed == "no":
        ctx.leave()
        ctx.say("consent.declined")
        return
    data = ctx.conversation.data
    unit = await units.get(ctx.session, int(data["unit_id"]))
    if unit is None:
        ctx.leave()
        ctx.say("join.unit_gone")
        return
    if data.get("mode") == "invite":
        await _join_by_invitation(ctx, unit, str(data["code"]), str(data["name"]))
    else:
        await _request_to_join(ctx, unit, str(data["name"]))


async def _join_by_invitation(ctx: Context, unit: Unit, code: str, name: str) -> None:
    invitation = await invitations.find(ctx.session, code)
    # Checked again: the code may have been used up or expired while the user typed.
    if invitation is None or not await invitations.consume(ctx.session, code, ctx.now):
        ctx.leave()
        problem = invitations.problem(invitation, ctx.now) or invitations.InvitationProblem.USED_UP
        ctx.say(f"join.code_{problem}", code=code)
        return
    member = _add_member(ctx, name, unit, invitation.role, MemberStatus.ACTIVE)
    await ctx.session.flush()
    ctx.account.member_id = member.id
    ctx.member = member
    ctx.leave()
    ctx.say("join.joined", name=member.full_name, unit=unit.name)


async def _request_to_join(ctx: Context, unit: Unit, name: str) -> None:
    officers = await members.nearest_officers(ctx.session, unit)
    if not officers:
        ctx.leave()
        ctx.say("join.no_officer", unit=unit.name)
        return
    member = _add_member(ctx, name, unit, Role.MEMBER, MemberStatus.PENDING)
    await ctx.session.flush()
    ctx.account.member_id = member.id
    ctx.member = member
    ctx.leave()
    prompt = Reply(
        text=ctx.t("join.approval_prompt", name=member.full_name, unit=unit.name),
        choices=(
            Choice(ctx.t("join.approve"), f"{ACTION_PREFIX}:{DECIDE_ACTION}:{member.id}:y"),
            Choice(ctx.t("join.reject"), f"{ACTION_PREFIX}:{DECIDE_ACTION}:{member.id}:n"),
        ),
    )
    for officer in officers:
        await ctx.notify(officer.id, prompt)
    ctx.say("join.requested", unit=unit.name)


def _add_member(ctx: Context, name: str, unit: Unit, role: Role, status: MemberStatus) -> Member:
    member = members.new_member(
        full_name=name,
        unit=unit,
        role=role,
        status=status,
        now=ctx.now,
        consent_version=ctx.services.config.consent_version,
    )
    ctx.session.add(member)
    return member


async def decide(ctx: Context, args: list[str]) -> None:
    """Handle an officer's approve / reject press on a join request."""
    if len(args) != 2 or not args[0].isdigit() or args[1] not in ("y", "n"):
        ctx.outcome.choice_notice = ctx.t("choice.invalid")
        ctx.say("choice.invalid")
        return
    officer = ctx.active_member
    applicant = await members.get(ctx.session, int(args[0]))
    target = await units.get(ctx.session, applicant.unit_id) if applicant else None
    own_unit = await units.get(ctx.session, officer.unit_id) if officer else None
    if applicant is None or target is None or own_unit is None:
        ctx.outcome.choice_notice = ctx.t("choice.invalid")
        ctx.say("choice.invalid")
        return
    if refusal(officer, Action.DECIDE_JOIN, target, own_unit) is not None:
        # A press on someone else's notice: no more said than that it is not theirs.
        ctx.outcome.choice_notice = ctx.t("permission.denied")
        ctx.say("permission.denied")
        return
    if applicant.status != MemberStatus.PENDING:
        ctx.outcome.choice_notice = ctx.t("join.already_decided_short")
        ctx.say("join.already_decided", name=applicant.full_name)
        return
    approved = args[1] == "y"
    applicant.status = MemberStatus.ACTIVE if approved else MemberStatus.REJECTED
    applicant.decided_by_id = officer.id if officer else None
    ctx.outcome.choice_accepted = True
    verdict = "approved" if approved else "rejected"
    note(
        ctx,
        "join.approve" if approved else "join.reject",
        unit_id=target.id,
        subject=f"member:{applicant.id}",
    )
    ctx.say(f"join.officer_{verdict}", name=applicant.full_name, unit=target.name)
    await ctx.notify(applicant.id, Reply(ctx.t(f"join.applicant_{verdict}", unit=target.name)))


def _unit_label(unit: Unit) -> str:
    return f"{unit.name} ({unit.code})"
