"""Answering a pact (giao ước thi đua) proposal."""

from __future__ import annotations

from handlers.audit_log import note
from handlers.context import Context
from handlers.permissions import Action, can
from handlers.types import Reply
from storage import units
from storage.models import Commitment, Pact, PactStatus


async def decide(ctx: Context, args: list[str]) -> None:
    """Accept or decline a pact; only its counterpart (or the counterpart unit's officers) may."""
    if len(args) != 2 or not args[0].isdigit() or args[1] not in ("y", "n"):
        _refuse(ctx, "choice.invalid")
        return
    pact = await ctx.session.get(Pact, int(args[0]), with_for_update=True)
    commitment = await ctx.session.get(Commitment, pact.commitment_id) if pact else None
    responder = ctx.active_member
    if pact is None or commitment is None or responder is None:
        _refuse(ctx, "choice.invalid")
        return
    if responder.id == pact.proposer_id or not await _may_answer(ctx, pact):
        _refuse(ctx, "permission.denied")
        return
    if pact.status == PactStatus.PROPOSED and pact.expires_at <= ctx.now:
        # Pressed before the expiry job came round: expire it here, and tell the proposer.
        pact.status = PactStatus.EXPIRED
        await ctx.notify(
            pact.proposer_id, Reply(ctx.t("pact.proposer_expired", reference=commitment.reference))
        )
    if pact.status != PactStatus.PROPOSED:
        _refuse(ctx, f"pact.already_{pact.status.value}")
        return
    accepted = args[1] == "y"
    pact.status = PactStatus.ACCEPTED if accepted else PactStatus.DECLINED
    pact.responded_by_id = responder.id
    pact.responded_at = ctx.now
    ctx.outcome.choice_accepted = True
    verdict = "accepted" if accepted else "declined"
    if pact.counterpart_unit_id is not None:
        # Answering for a unit is an officer's act; a member's own answer is not audited.
        note(
            ctx,
            "pact.accept" if accepted else "pact.decline",
            unit_id=pact.counterpart_unit_id,
            subject=f"pact:{pact.id}",
            reference=commitment.reference,
        )
    ctx.say(f"pact.you_{verdict}", reference=commitment.reference)
    await ctx.notify(
        pact.proposer_id,
        Reply(
            ctx.t(
                f"pact.proposer_{verdict}", reference=commitment.reference, who=responder.full_name
            )
        ),
    )


async def _may_answer(ctx: Context, pact: Pact) -> bool:
    member = ctx.active_member
    if member is None:
        return False
    if pact.counterpart_member_id is not None:
        return pact.counterpart_member_id == member.id
    target = await units.get(ctx.session, pact.counterpart_unit_id or 0)
    own = await units.get(ctx.session, member.unit_id)
    if target is None or own is None:
        return False
    # The counterpart unit's own officers, or officers above it, answer for it.
    return can(member, Action.ANSWER_PACT_FOR_UNIT, target, own)


def _refuse(ctx: Context, key: str) -> None:
    ctx.outcome.choice_notice = ctx.t(key)
    ctx.say(key)
