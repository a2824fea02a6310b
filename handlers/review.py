"""/duyet: an officer reviews the initiatives of their branch, oldest first, one at a time."""

from __future__ import annotations

from handlers.audit_log import note as audit_note
from handlers.context import Context
from handlers.initiatives import vnd
from handlers.parsing import parse_vnd
from handlers.permissions import Action, can, refusal
from handlers.scope import Scope, member_scope
from handlers.types import Attachment, Reply
from storage import initiatives as initiative_store
from storage import units
from storage.models import Initiative, InitiativeStatus
from storage.text import clean

FLOW = "review"
REASON_MIN, REASON_MAX = 5, 1000
LEVELS = ("unit", "higher")


async def start(ctx: Context) -> None:
    """Show the first initiative waiting in the officer's branch."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    key = refusal(scope.member, Action.REVIEW_INITIATIVE, scope.unit, scope.unit)
    if key is not None:
        ctx.say(key)
        return
    ctx.enter(FLOW, "card", skipped=[])
    await _show_next(ctx, scope)


async def _show_next(ctx: Context, scope: Scope) -> None:
    skipped = set(ctx.conversation.data.get("skipped") or [])
    queue = await initiative_store.review_queue(
        ctx.session, scope.unit, scope.campaign.id, reviewer_id=scope.member.id
    )
    waiting = [entry for entry in queue if entry[0].id not in skipped]
    if not waiting:
        ctx.leave()
        ctx.say("review.empty", unit=scope.unit.name)
        return
    initiative, author, unit = waiting[0]
    ctx.goto("card", id=initiative.id)
    coauthors = await initiative_store.names(ctx.session, initiative.co_author_ids)
    value = initiative.estimated_value
    text = ctx.t(
        "review.card",
        reference=initiative.reference or "",
        position=len(queue) - len(waiting) + 1,
        total=len(queue),
        title=initiative.title,
        author=author.full_name,
        unit=unit.name,
        coauthors=ctx.t("review.coauthors", names=", ".join(coauthors)) if coauthors else "",
        submitted=ctx.local_time(initiative.submitted_at) if initiative.submitted_at else "",
        field=initiative.field or ctx.t("initiative.no_field"),
        problem=initiative.problem,
        solution=initiative.solution,
        benefit=initiative.benefit,
        value=vnd(ctx, value) if value else ctx.t("initiative.no_value"),
    )
    files = tuple(Attachment.from_dict(raw) for raw in initiative.attachments)
    if files:
        ctx.outcome.replies.append(
            Reply(text=ctx.t("review.attachments", count=len(files)), attachments=files)
        )
    ctx.reply(
        text,
        [
            ctx.choice(ctx.t("review.accept"), "accept"),
            ctx.choice(ctx.t("review.reject"), "reject"),
            ctx.choice(ctx.t("review.changes"), "changes"),
            ctx.choice(ctx.t("review.later"), "later"),
        ],
    )


async def resume(ctx: Context) -> None:
    """Continue the review at its current step."""
    scope = await member_scope(ctx)
    key = (
        refusal(scope.member, Action.REVIEW_INITIATIVE, scope.unit, scope.unit)
        if scope is not None
        else None
    )
    if scope is None or key is not None:
        ctx.leave()
        if key is not None:
            ctx.say(key)
        return
    initiative = await _reviewable(ctx, scope)
    if initiative is None:
        ctx.say("review.gone")
        await _show_next(ctx, scope)
        return
    step = ctx.conversation.step
    if step == "card":
        await _card(ctx, scope, initiative)
    elif step == "value":
        await _value(ctx, scope, initiative)
    elif step == "level":
        await _level(ctx, scope, initiative)
    elif step == "accept_note":
        await _accept_note(ctx, scope, initiative)
    elif step == "reason":
        await _reason(ctx, scope, initiative)
    elif step == "note":
        await _changes_note(ctx, scope, initiative)
    else:
        ctx.leave()


async def _reviewable(ctx: Context, scope: Scope) -> Initiative | None:
    """Load the initiative under review, locked, if this officer may still review it."""
    raw = ctx.conversation.data.get("id")
    if raw is None:
        return None
    initiative = await ctx.session.get(Initiative, int(raw), with_for_update=True)
    if initiative is None or initiative.status != InitiativeStatus.SUBMITTED:
        return None
    unit = await units.get(ctx.session, initiative.unit_id)
    # Whatever the conversation or the callback data say, the branch decides.
    if unit is None or not can(scope.member, Action.REVIEW_INITIATIVE, unit, scope.unit):
        return None
    if initiative.author_id == scope.member.id:
        return None
    return initiative


async def _card(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    pressed = ctx.pressed
    if pressed == "accept":
        ctx.goto("value")
        choices = []
        if initiative.estimated_value:
            label = ctx.t("review.keep_estimate", value=vnd(ctx, initiative.estimated_value))
            choices.append(ctx.choice(label, "keep"))
        choices.append(ctx.choice(ctx.t("review.no_recognised_value"), "none"))
        ctx.say("review.ask_recognised_value", choices=choices)
    elif pressed == "reject":
        ctx.goto("reason")
        ctx.say("review.ask_reason", minimum=REASON_MIN, maximum=REASON_MAX)
    elif pressed == "changes":
        ctx.goto("note")
        ctx.say("review.ask_note", minimum=REASON_MIN, maximum=REASON_MAX)
    elif pressed == "later":
        skipped = [*(ctx.conversation.data.get("skipped") or []), initiative.id]
        ctx.goto("card", skipped=skipped)
        await _show_next(ctx, scope)
    else:
        ctx.leave()
        ctx.say("hint.free_text")


async def _value(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    if ctx.pressed == "keep":
        value = initiative.estimated_value
    elif ctx.pressed == "none":
        value = None
    else:
        value = parse_vnd(ctx.text)
        if value is None:
            ctx.say("initiative.bad_value", text=ctx.text[:60])
            return
    ctx.goto("level", value=value)
    ctx.say(
        "review.ask_level",
        choices=[ctx.choice(ctx.t(f"review.level_{level}"), level) for level in LEVELS],
    )


async def _level(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    if ctx.pressed not in LEVELS:
        ctx.say(
            "review.ask_level",
            choices=[ctx.choice(ctx.t(f"review.level_{level}"), level) for level in LEVELS],
        )
        return
    ctx.goto("accept_note", level=ctx.pressed)
    ctx.say("review.ask_accept_note", choices=[ctx.choice(ctx.t("review.no_note"), "none")])


async def _accept_note(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    note = None if ctx.pressed == "none" else clean(ctx.text) or None
    if note is not None and len(note) > REASON_MAX:
        ctx.say("input.too_long", maximum=REASON_MAX, length=len(note))
        return
    data = ctx.conversation.data
    value = data.get("value")
    level = str(data.get("level"))
    initiative.recognised_value = int(value) if value is not None else None
    initiative.recognised_level = level
    _decide(ctx, scope, initiative, InitiativeStatus.ACCEPTED, note)
    level_name = ctx.t(f"review.level_{level}_name")
    ctx.say("review.accepted", reference=initiative.reference, level=level_name)
    await ctx.notify(
        initiative.author_id,
        Reply(
            text=ctx.t(
                "review.author_accepted",
                reference=initiative.reference,
                title=initiative.title,
                level=level_name,
                value=ctx.t("review.author_accepted_value", value=vnd(ctx, int(value)))
                if value
                else "",
                note=ctx.t("review.author_note", note=note) if note else "",
            )
        ),
    )
    await _offer_next(ctx, scope)


async def _reason(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    await _decide_with_note(ctx, scope, initiative, InitiativeStatus.REJECTED)


async def _changes_note(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    await _decide_with_note(ctx, scope, initiative, InitiativeStatus.CHANGES_REQUESTED)


# For each decision that needs words: the length message, the officer's and the author's text.
_NOTE_TEXTS = {
    InitiativeStatus.REJECTED: (
        "review.reason_length",
        "review.rejected",
        "review.author_rejected",
    ),
    InitiativeStatus.CHANGES_REQUESTED: (
        "review.note_length",
        "review.changes_sent",
        "review.author_changes",
    ),
}


async def _decide_with_note(
    ctx: Context, scope: Scope, initiative: Initiative, status: InitiativeStatus
) -> None:
    """Reject or ask for changes: the reason is required, and the author reads it."""
    length_key, done_key, author_key = _NOTE_TEXTS[status]
    note = clean(ctx.text)
    if not REASON_MIN <= len(note) <= REASON_MAX:
        ctx.say(length_key, minimum=REASON_MIN, maximum=REASON_MAX, length=len(note))
        return
    _decide(ctx, scope, initiative, status, note)
    ctx.say(done_key, reference=initiative.reference)
    text = ctx.t(author_key, reference=initiative.reference, title=initiative.title, note=note)
    await ctx.notify(initiative.author_id, Reply(text=text))
    await _offer_next(ctx, scope)


def _decide(
    ctx: Context,
    scope: Scope,
    initiative: Initiative,
    status: InitiativeStatus,
    note: str | None,
) -> None:
    initiative.status = status
    initiative.review_note = note
    initiative.reviewer_id = scope.member.id
    initiative.reviewed_at = initiative.updated_at = ctx.now
    audit_note(
        ctx,
        _AUDIT_ACTIONS[status],
        unit_id=initiative.unit_id,
        subject=f"initiative:{initiative.id}",
        reference=initiative.reference,
        level=initiative.recognised_level if status == InitiativeStatus.ACCEPTED else None,
        value=initiative.recognised_value if status == InitiativeStatus.ACCEPTED else None,
    )


_AUDIT_ACTIONS = {
    InitiativeStatus.ACCEPTED: "initiative.accept",
    InitiativeStatus.REJECTED: "initiative.reject",
    InitiativeStatus.CHANGES_REQUESTED: "initiative.changes",
}


async def _offer_next(ctx: Context, scope: Scope) -> None:
    skipped = ctx.conversation.data.get("skipped") or []
    ctx.goto("card", skipped=skipped, id=None)
    await _show_next(ctx, scope)
