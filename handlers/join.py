"""Joining a union: by invitation code, or by finding one's unit and asking its officers."""

from __future__ import annotations

import unicodedata

from handlers import privacy
from handlers.audit_log import note
from handlers.context import ACTION_PREFIX, Context
from handlers.permissions import Action, refusal
from handlers.types import Choice, Reply
from storage import invitations, members, units
from storage.models import Member, MemberStatus, Role, Unit, UnitKind
from storage.text import clean_line, fold

FLOW = "join"
DECIDE_ACTION = "join"

NAME_MIN, NAME_MAX = 2, 100
SEARCH_MIN, SEARCH_MAX = 2, 100
SEARCH_RESULTS = 8
REQUESTS_LISTED = 10
# Typed answers to the consent question, folded, on messengers without buttons.
_ACCEPT = frozenset({"dong y", "toi dong y", "co", "ok", "yes"})
_DECLINE = frozenset({"khong", "khong dong y", "toi khong dong y", "no"})
# What a full name may not hold: digits, emoji and other pictographs, control characters.
_NOT_IN_NAMES = ("N", "So", "C")
# What joining by code sets on a request by search that it turns into a membership.
_JOINING_FIELDS = (
    "full_name",
    "name_folded",
    "unit_id",
    "role",
    "status",
    "consent_at",
    "consent_version",
)


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
    if code:
        # A pending request gives way to a code: the officer who sent it has decided.
        await _start_with_code(ctx, code)
        return
    if member is not None and member.status == MemberStatus.PENDING:
        ctx.enter(FLOW, "pending")
        ctx.say(
            "join.still_pending",
            choices=[
                ctx.choice(ctx.t("join.keep_request"), "keep"),
                ctx.choice(ctx.t("join.withdraw_request"), "withdraw"),
            ],
        )
        return
    ctx.enter(FLOW, "search", mode="request")
    ctx.say("join.ask_unit")


async def free_text(ctx: Context) -> None:
    """Answer text outside a conversation: an invitation code starts joining; else a hint."""
    if ctx.active_member is not None:
        ctx.say("hint.free_text")
        return
    text = clean_line(ctx.text)
    if invitations.looks_like_code(text) and await invitations.find(ctx.session, text):
        await _start_with_code(ctx, text)
        return
    ctx.say_standing()


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
    elif step == "pending":
        await _pending(ctx)
    else:
        ctx.leave()
        ctx.say("hint.not_member")


async def _pending(ctx: Context) -> None:
    """Keep or withdraw a join request still waiting for an officer."""
    member = ctx.member
    if ctx.pressed not in ("keep", "withdraw"):
        ctx.leave()
        ctx.say_standing()
        return
    ctx.leave()
    if ctx.pressed == "keep" or member is None or member.status != MemberStatus.PENDING:
        ctx.say_standing()
        return
    member = await members.get_locked(ctx.session, member.id)
    if member is None or member.status != MemberStatus.PENDING:  # decided meanwhile
        ctx.say_standing()
        return
    # Kept, nameless, rather than deleted: on SQLite a deleted row's id is given again, and
    # the officers' old buttons would then decide someone else's request.
    erased = privacy.placeholders(ctx).name
    member.status = MemberStatus.REJECTED
    member.full_name, member.name_folded, member.erased_at = erased, fold(erased), ctx.now
    ctx.account.member_id = None
    ctx.member = None
    ctx.say("join.withdrawn")


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
    if invitations.looks_like_code(query) and await invitations.find(ctx.session, query):
        # "mã" in the question can read as the invitation code someone was given.
        await _start_with_code(ctx, query)
        return
    found = await units.search(
        ctx.session, query[:100], kinds=[UnitKind.GRASSROOTS], limit=SEARCH_RESULTS + 1
    )
    if not found:
        ctx.say("join.search_none", query=query[:100])
        return
    key = "join.search_results_more" if len(found) > SEARCH_RESULTS else "join.search_results"
    shown = found[:SEARCH_RESULTS]
    ctx.say(key, shown=len(shown), choices=[ctx.choice(_unit_label(u), f"u{u.id}") for u in shown])


async def _pick_unit(ctx: Context, value: str) -> None:
    unit = await units.get(ctx.session, int(value[1:])) if value[1:].isdigit() else None
    if unit is None or unit.kind != UnitKind.GRASSROOTS:
        ctx.say("choice.invalid")
        return
    ctx.goto("name", unit_id=unit.id)
    ctx.say("join.unit_chosen", unit=unit.name)
    ctx.say("join.ask_name")


def _take_name(ctx: Context) -> None:
    if ctx.pressed is not None or not ctx.text.strip():
        ctx.say("join.ask_name")
        return
    if "\n" in ctx.text.strip():
        ctx.say("join.name_one_line")
        return
    name = clean_line(ctx.text)
    if len(name) > NAME_MAX:
        ctx.say("join.name_too_long", maximum=NAME_MAX, length=len(name))
        return
    if sum(ch.isalpha() for ch in name) < NAME_MIN:
        ctx.say("join.name_invalid")
        return
    odd = sorted({ch for ch in name if not _may_be_in_name(ch)})
    if odd:
        ctx.say("join.name_characters", characters=" ".join(odd[:5]))
        return
    ctx.goto("consent", name=name)
    ctx.say(
        "consent.text",
        version=ctx.services.config.consent_version,
        choices=_consent_choices(ctx),
    )


async def _consent(ctx: Context) -> None:
    answer = ctx.pressed
    if answer is None:  # typed rather than pressed: "đồng ý", "dong y", "không"...
        typed = fold(ctx.text).strip(" .!")
        answer = "yes" if typed in _ACCEPT else "no" if typed in _DECLINE else None
    if answer not in ("yes", "no"):
        ctx.say("consent.please_choose", choices=_consent_choices(ctx))
        return
    if answer == "no":
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
    pending = ctx.member
    if pending is not None and pending.status == MemberStatus.PENDING:
        pending = await members.get_locked(ctx.session, pending.id)
        if pending is not None and pending.status == MemberStatus.ACTIVE:
            # An officer approved their request while they typed: the code is not needed.
            ctx.leave()
            own = await units.get(ctx.session, pending.unit_id)
            ctx.say(
                "join.already_member_code", name=pending.full_name, unit=own.name if own else "?"
            )
            return
    if pending is not None and pending.status != MemberStatus.PENDING:
        pending = None
    invitation = await invitations.find(ctx.session, code)
    # Checked again: the code may have been used up or expired while the user typed.
    if invitation is None or not await invitations.consume(ctx.session, code, ctx.now):
        ctx.leave()
        problem = invitations.problem(invitation, ctx.now) or invitations.InvitationProblem.USED_UP
        ctx.say(f"join.code_{problem}", code=code)
        return
    member = _new_member(ctx, name, unit, invitation.role, MemberStatus.ACTIVE)
    if pending is not None:
        # Their request by search is answered by the code: the same record becomes the member.
        for field in _JOINING_FIELDS:
            setattr(pending, field, getattr(member, field))
        member = pending
    else:
        ctx.session.add(member)
    await ctx.session.flush()
    ctx.account.member_id = member.id
    ctx.member = member
    ctx.leave()
    ctx.say("join.joined", name=member.full_name, unit=unit.name)


async def _request_to_join(ctx: Context, unit: Unit, name: str) -> None:
    officers = await members.nearest_reachable_officers(ctx.session, unit, ctx.now)
    if not officers:
        ctx.leave()
        ctx.say("join.no_officer", unit=unit.name)
        return
    member = _new_member(ctx, name, unit, Role.MEMBER, MemberStatus.PENDING)
    ctx.session.add(member)
    await ctx.session.flush()
    ctx.account.member_id = member.id
    ctx.member = member
    ctx.leave()
    prompt = Reply(
        text=ctx.t("join.approval_prompt", name=member.full_name, unit=unit.name),
        choices=_decide_choices(ctx, member),
    )
    for officer in officers:
        await ctx.notify(officer.id, prompt)
    ctx.say("join.requested", unit=unit.name)


def _decide_choices(ctx: Context, applicant: Member, *, named: bool = False) -> tuple[Choice, ...]:
    suffix = f": {applicant.full_name}" if named else ""
    return tuple(
        Choice(
            ctx.t(f"join.{verdict}") + suffix,
            f"{ACTION_PREFIX}:{DECIDE_ACTION}:{applicant.id}:{answer}",
        )
        for verdict, answer in (("approve", "y"), ("reject", "n"))
    )


async def list_requests(ctx: Context) -> None:
    """Show an officer the join requests waiting in their unit and below, to decide them."""
    officer = ctx.active_member
    own_unit = await units.get(ctx.session, officer.unit_id) if officer else None
    denied = refusal(officer, Action.DECIDE_JOIN, own_unit, own_unit)
    if officer is None:
        ctx.say_standing()
        return
    if denied is not None or own_unit is None:
        ctx.say(denied or "permission.denied")
        return
    found = await members.pending_under(ctx.session, own_unit, limit=REQUESTS_LISTED + 1)
    if not found:
        ctx.say("join.requests_none", unit=own_unit.name)
        return
    shown = found[:REQUESTS_LISTED]
    lines = [
        ctx.t(
            "join.request_line",
            number=n,
            name=member.full_name,
            unit=unit.name,
            sent=ctx.local_time(member.created_at),
        )
        for n, (member, unit) in enumerate(shown, 1)
    ]
    more = ctx.t("join.requests_more", shown=len(shown)) if len(found) > len(shown) else ""
    heading = ctx.t("join.requests_heading", count=len(shown), unit=own_unit.name)
    if ctx.has_buttons:
        # One message per request, each with its own buttons, taken off when it is decided.
        ctx.reply("\n".join(filter(None, [heading, more])))
        for line, (member, _unit) in zip(lines, shown, strict=True):
            ctx.reply(line, _decide_choices(ctx, member))
        return
    # Numbered lines answer only the last message: every request's two answers in one menu.
    choices = [
        choice for member, _unit in shown for choice in _decide_choices(ctx, member, named=True)
    ]
    ctx.reply("\n".join(filter(None, [heading, *lines, more])), choices)


def _new_member(ctx: Context, name: str, unit: Unit, role: Role, status: MemberStatus) -> Member:
    return members.new_member(
        full_name=name,
        unit=unit,
        role=role,
        status=status,
        now=ctx.now,
        consent_version=ctx.services.config.consent_version,
    )


async def decide(ctx: Context, args: list[str]) -> None:
    """Handle an officer's approve / reject press on a join request."""
    if len(args) != 2 or not args[0].isdigit() or args[1] not in ("y", "n"):
        ctx.outcome.choice_notice = ctx.t("choice.invalid")
        ctx.say("choice.invalid")
        return
    officer = ctx.active_member
    own_unit = await units.get(ctx.session, officer.unit_id) if officer else None
    # Locked: two officers pressing at once must not both decide (the second reads the first's).
    applicant = await members.get_locked(ctx.session, int(args[0])) if own_unit else None
    if own_unit is not None and (applicant is None or applicant.erased_at is not None):
        # Withdrawn by the applicant (or never there): nothing left to decide.
        ctx.outcome.choice_notice = ctx.t("join.request_gone_short")
        ctx.say("join.request_gone")
        return
    target = await units.get(ctx.session, applicant.unit_id) if applicant else None
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


def _consent_choices(ctx: Context) -> list[Choice]:
    return [
        ctx.choice(ctx.t("consent.accept"), "yes"),
        ctx.choice(ctx.t("consent.decline"), "no"),
    ]


def _may_be_in_name(ch: str) -> bool:
    return not unicodedata.category(ch).startswith(_NOT_IN_NAMES)


def _unit_label(unit: Unit) -> str:
    return f"{unit.name} ({unit.code})"
