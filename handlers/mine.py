"""/cuatoi: what I have registered, what waits for my answer, and updating my progress."""

from __future__ import annotations

from handlers import commendations
from handlers.commitments import CONTENT_MAX, CONTENT_MIN, PACT_ACTION, registration_is_late
from handlers.context import ACTION_PREFIX, Context
from handlers.parsing import format_number, parse_percent
from handlers.permissions import Action, can
from handlers.scope import Scope, member_scope
from handlers.types import Choice
from storage import commitments as commitment_store
from storage import initiatives as initiative_store
from storage.models import (
    Commitment,
    CommitmentStatus,
    DeadlineKind,
    Movement,
    PactStatus,
)
from storage.text import clean

FLOW = "mine"
PERCENT_CHOICES = (25, 50, 75, 100)
NOTE_MAX = 500


async def show(ctx: Context) -> None:
    """List my commitments with their pacts, proposals awaiting me, and my unit's congress work."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    session = ctx.session
    ctx.enter(FLOW, "pick")
    mine = await commitment_store.of_author(session, scope.campaign.id, scope.member.id)
    pacts = await commitment_store.pacts_of_commitments(session, [c.id for c in mine])
    lines = [ctx.t("mine.title", name=scope.member.full_name)]
    choices: list[Choice] = []
    if not mine:
        lines.append(ctx.t("mine.no_commitments"))
    for commitment in mine:
        movement = await session.get(Movement, commitment.movement_id)
        lines.append(_commitment_line(ctx, commitment, movement))
        pact = pacts.get(commitment.id)
        if pact is not None:
            lines.append(ctx.t(f"mine.pact_{pact.status.value}"))
        if commitment.status == CommitmentStatus.REGISTERED:
            choices.append(ctx.choice(commitment.reference, f"k{commitment.id}"))
    awaiting = await commitment_store.pacts_awaiting(
        session, scope.member.id, scope.unit if _answers_for_unit(scope) else None, ctx.now
    )
    if awaiting:
        lines.append(ctx.t("mine.awaiting_title"))
        for pact, commitment in awaiting:
            lines.append(
                ctx.t(
                    "mine.awaiting_line",
                    reference=commitment.reference,
                    content=_short(commitment.content),
                )
            )
            choices.append(
                Choice(
                    ctx.t("mine.accept_pact", reference=commitment.reference),
                    f"{ACTION_PREFIX}:{PACT_ACTION}:{pact.id}:y",
                )
            )
            choices.append(
                Choice(
                    ctx.t("mine.decline_pact", reference=commitment.reference),
                    f"{ACTION_PREFIX}:{PACT_ACTION}:{pact.id}:n",
                )
            )
    answered = await commitment_store.pacts_answered(
        session,
        scope.member.id,
        scope.unit.id if _answers_for_unit(scope) else None,
        scope.campaign.id,
    )
    if answered:
        lines.append(ctx.t("mine.with_me_title"))
        lines += [
            ctx.t(
                "mine.with_me_line",
                reference=commitment.reference,
                proposer=proposer.full_name,
                state=ctx.t(f"mine.with_me_{pact.status.value}"),
            )
            for pact, commitment, proposer in answered
        ]
    work = await commitment_store.congress_work(session, scope.campaign.id, scope.unit.id)
    if work is not None:
        lines.append(
            ctx.t(
                "mine.congress_work",
                title=work.title,
                status=ctx.t(f"work.status_{work.status.value}"),
                percent=work.progress_percent,
            )
        )
    lines += await _initiative_lines(ctx, scope)
    lines += await commendations.mine_lines(ctx, scope)
    if choices:
        lines.append(ctx.t("mine.pick_hint"))
    ctx.reply("\n".join(lines), choices)


async def _initiative_lines(ctx: Context, scope: Scope) -> list[str]:
    """Say where each of my initiatives stands, with the reviewer's notes."""
    session, campaign_id, author_id = ctx.session, scope.campaign.id, scope.member.id
    mine = await initiative_store.of_author(session, campaign_id, author_id)
    draft = await initiative_store.draft_of(session, campaign_id, author_id)
    if not mine and draft is None:
        return []
    lines = [ctx.t("initiative.mine.title")]
    lines += [
        ctx.t(
            "initiative.mine.line",
            reference=initiative.reference or "",
            title=initiative.title,
            status=ctx.t(f"initiative.status.{initiative.status.value}"),
            note=ctx.t("initiative.mine.note", note=initiative.review_note)
            if initiative.review_note
            else "",
        )
        for initiative in mine
    ]
    if draft is not None:
        lines.append(
            ctx.t("initiative.mine.draft", title=draft.title or ctx.t("initiative.untitled"))
        )
    return lines


def _commitment_line(ctx: Context, commitment: Commitment, movement: Movement | None) -> str:
    target = ""
    if commitment.target_value is not None:
        amount = f"{format_number(commitment.target_value)} {commitment.target_unit or ''}"
        target = ctx.t("mine.target", target=amount.strip())
    return ctx.t(
        "mine.commitment_line",
        reference=commitment.reference,
        kind=ctx.t(f"register.kind_{commitment.kind.value}_short"),
        movement=movement.name if movement else "?",
        content=_short(commitment.content),
        target=target,
        status=ctx.t(f"mine.status_{commitment.status.value}"),
        percent=commitment.progress_percent,
        late=ctx.t("mine.late") if commitment.late else "",
    )


async def resume(ctx: Context) -> None:
    """Continue managing a commitment."""
    scope = await member_scope(ctx)
    if scope is None:
        ctx.leave()
        return
    step = ctx.conversation.step
    if step == "pick":
        await _pick(ctx, scope)
    elif step == "menu":
        await _menu(ctx, scope)
    elif step == "edit":
        await _edit(ctx, scope)
    elif step == "withdraw":
        await _withdraw(ctx, scope)
    elif step == "percent":
        await _percent(ctx, scope)
    elif step == "note":
        await _note(ctx, scope)
    else:
        ctx.leave()


async def _own_commitment(ctx: Context, scope: Scope, commitment_id: int) -> Commitment | None:
    commitment = await ctx.session.get(Commitment, commitment_id)
    if commitment is None or commitment.author_id != scope.member.id:
        return None
    if commitment.status != CommitmentStatus.REGISTERED:
        return None
    return commitment


async def _pick(ctx: Context, scope: Scope) -> None:
    value = ctx.pressed or ""
    if not (value.startswith("k") and value[1:].isdigit()):
        ctx.leave()
        ctx.say("hint.free_text")
        return
    commitment = await _own_commitment(ctx, scope, int(value[1:]))
    if commitment is None:
        ctx.say("choice.invalid")
        return
    ctx.goto("menu", commitment_id=commitment.id)
    movement = await ctx.session.get(Movement, commitment.movement_id)
    ctx.reply(
        _commitment_line(ctx, commitment, movement)
        + "\n"
        + ctx.t("mine.full_content", content=commitment.content),
        [
            ctx.choice(ctx.t("mine.update_progress"), "progress"),
            ctx.choice(ctx.t("mine.edit"), "edit"),
            ctx.choice(ctx.t("mine.withdraw"), "withdraw"),
        ],
    )


async def _menu(ctx: Context, scope: Scope) -> None:
    commitment = await _own_commitment(ctx, scope, int(ctx.conversation.data["commitment_id"]))
    if commitment is None:
        ctx.leave()
        ctx.say("choice.invalid")
        return
    if ctx.pressed == "progress":
        ctx.goto("percent")
        ctx.say(
            "mine.ask_percent",
            choices=[ctx.choice(_percent_label(ctx, p), str(p)) for p in PERCENT_CHOICES],
        )
        return
    if ctx.pressed in ("edit", "withdraw"):
        late, due = await registration_is_late(
            ctx, scope.campaign, DeadlineKind.COMMITMENT_REGISTRATION
        )
        if late:
            ctx.leave()
            ctx.say("mine.locked_after_deadline", date=due)
            return
        if ctx.pressed == "edit":
            ctx.goto("edit")
            ctx.say("register.ask_content_plain", minimum=CONTENT_MIN, maximum=CONTENT_MAX)
        else:
            ctx.goto("withdraw")
            ctx.say(
                "mine.confirm_withdraw",
                reference=commitment.reference,
                choices=[
                    ctx.choice(ctx.t("mine.withdraw_yes"), "yes"),
                    ctx.choice(ctx.t("mine.withdraw_no"), "no"),
                ],
            )
        return
    ctx.say("choice.invalid")


async def _edit(ctx: Context, scope: Scope) -> None:
    commitment = await _own_commitment(ctx, scope, int(ctx.conversation.data["commitment_id"]))
    if commitment is None:
        ctx.leave()
        ctx.say("choice.invalid")
        return
    late, due = await registration_is_late(
        ctx, scope.campaign, DeadlineKind.COMMITMENT_REGISTRATION
    )
    if late:
        ctx.leave()
        ctx.say("mine.locked_after_deadline", date=due)
        return
    content = clean(ctx.text)
    if len(content) < CONTENT_MIN:
        ctx.say("register.content_too_short", minimum=CONTENT_MIN, length=len(content))
        return
    if len(content) > CONTENT_MAX:
        ctx.say("register.content_too_long", maximum=CONTENT_MAX, length=len(content))
        return
    commitment.content = content
    commitment.updated_at = ctx.now
    ctx.leave()
    ctx.say("mine.edited", reference=commitment.reference)


async def _withdraw(ctx: Context, scope: Scope) -> None:
    commitment = await _own_commitment(ctx, scope, int(ctx.conversation.data["commitment_id"]))
    if commitment is None or ctx.pressed != "yes":
        ctx.leave()
        ctx.say("mine.withdraw_kept" if commitment is not None else "choice.invalid")
        return
    late, due = await registration_is_late(
        ctx, scope.campaign, DeadlineKind.COMMITMENT_REGISTRATION
    )
    if late:
        ctx.leave()
        ctx.say("mine.locked_after_deadline", date=due)
        return
    commitment.status = CommitmentStatus.WITHDRAWN
    commitment.updated_at = ctx.now
    pacts = await commitment_store.pacts_of_commitments(ctx.session, [commitment.id])
    pact = pacts.get(commitment.id)
    if pact is not None and pact.status in (PactStatus.PROPOSED, PactStatus.ACCEPTED):
        pact.status = PactStatus.WITHDRAWN
    ctx.leave()
    ctx.say("mine.withdrawn", reference=commitment.reference)


async def _percent(ctx: Context, scope: Scope) -> None:
    value = parse_percent(ctx.pressed if ctx.pressed is not None else ctx.text)
    if value is None:
        ctx.say(
            "mine.percent_invalid",
            choices=[ctx.choice(_percent_label(ctx, p), str(p)) for p in PERCENT_CHOICES],
        )
        return
    ctx.goto("note", percent=value)
    ctx.say("mine.ask_note", maximum=NOTE_MAX, choices=[ctx.choice(ctx.t("register.skip"), "skip")])


async def _note(ctx: Context, scope: Scope) -> None:
    commitment = await _own_commitment(ctx, scope, int(ctx.conversation.data["commitment_id"]))
    if commitment is None:
        ctx.leave()
        ctx.say("choice.invalid")
        return
    note = None if ctx.pressed == "skip" else clean(ctx.text)
    if note is not None and len(note) > NOTE_MAX:
        ctx.say("mine.note_too_long", maximum=NOTE_MAX, length=len(note))
        return
    commitment.progress_percent = int(ctx.conversation.data["percent"])
    if note:
        commitment.progress_note = note
    commitment.updated_at = ctx.now
    ctx.leave()
    ctx.say(
        "mine.progress_saved", reference=commitment.reference, percent=commitment.progress_percent
    )


def _percent_label(ctx: Context, percent: int) -> str:
    return ctx.t("mine.done") if percent == 100 else f"{percent}%"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _answers_for_unit(scope: Scope) -> bool:
    """Tell whether the member answers pacts offered to their unit."""
    return can(scope.member, Action.ANSWER_PACT_FOR_UNIT, scope.unit, scope.unit)
