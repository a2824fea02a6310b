"""/sangkien: a member writes an initiative step by step, kept as a draft until it is sent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from handlers.context import Context
from handlers.parsing import format_number, parse_vnd
from handlers.scope import Scope, member_scope
from handlers.types import Attachment, Reply
from storage import commitments as commitment_store
from storage import counters, members, units
from storage import initiatives as initiative_store
from storage.models import Initiative, InitiativeStatus
from storage.text import clean, clean_line, fold

FLOW = "initiative"
TITLE_MIN, TITLE_MAX = 5, 200
TEXT_MIN, TEXT_MAX = 10, 2000
COAUTHORS_MAX = 10
ATTACHMENTS_MAX = 5
ATTACHMENT_MB = 20  # what a bot may fetch from Telegram
ALLOWED_DOCUMENTS = (
    "application/pdf",
    "application/msword",
    "application/vnd.openxmlformats-officedocument",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "image/",
)
TEXT_STEPS = ("title", "problem", "solution", "benefit")

Step = Callable[[Context, Scope, Initiative], Awaitable[None]]


def vnd(ctx: Context, amount: int) -> str:
    """Show an amount the Vietnamese way: 50.000.000 đồng."""
    return ctx.t("initiative.vnd", amount=format_number(amount))


async def start(ctx: Context) -> None:
    """Offer the waiting draft or initiative to correct, or begin a new one."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    draft = await initiative_store.draft_of(ctx.session, scope.campaign.id, scope.member.id)
    to_fix = [
        i
        for i in await initiative_store.of_author(ctx.session, scope.campaign.id, scope.member.id)
        if i.status == InitiativeStatus.CHANGES_REQUESTED
    ]
    if draft is None and not to_fix:
        await _begin(ctx, scope)
        return
    ctx.enter(FLOW, "choose")
    lines, choices = [], []
    for initiative in to_fix:
        lines.append(
            ctx.t(
                "initiative.changes_waiting",
                reference=initiative.reference,
                title=initiative.title,
                note=initiative.review_note or "",
            )
        )
        choices.append(
            ctx.choice(
                ctx.t("initiative.edit_resubmit", reference=initiative.reference),
                f"fix{initiative.id}",
            )
        )
    if draft is not None:
        lines.append(
            ctx.t("initiative.draft_waiting", title=draft.title or ctx.t("initiative.untitled"))
        )
        choices.append(ctx.choice(ctx.t("initiative.continue_draft"), "draft"))
        choices.append(ctx.choice(ctx.t("initiative.new_instead"), "new"))
    else:
        choices.append(ctx.choice(ctx.t("initiative.write_new"), "new"))
    ctx.reply("\n\n".join(lines), choices)


async def _begin(ctx: Context, scope: Scope) -> None:
    draft = Initiative(
        campaign_id=scope.campaign.id,
        author_id=scope.member.id,
        unit_id=scope.unit.id,
        status=InitiativeStatus.DRAFT,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(draft)
    await ctx.session.flush()
    ctx.enter(FLOW, "title", id=draft.id)
    ctx.say("initiative.intro")
    ctx.say("initiative.ask_title", minimum=TITLE_MIN, maximum=TITLE_MAX)


async def resume(ctx: Context) -> None:
    """Continue at the current step, on the member's own draft only."""
    scope = await member_scope(ctx)
    if scope is None:
        ctx.leave()
        return
    if ctx.conversation.step == "choose":
        await _choose(ctx, scope)
        return
    initiative = await _own(ctx, scope)
    if initiative is None:
        ctx.leave()
        ctx.say("choice.invalid")
        return
    steps: dict[str, Step] = {
        "title": _title,
        "problem": _text_step,
        "solution": _text_step,
        "benefit": _text_step,
        "value": _value,
        "field": _field,
        "coauthors": _coauthors,
        "attachments": _attachments,
        "confirm": _confirm,
        "similar": _similar,
    }
    step = steps.get(ctx.conversation.step or "")
    if step is None:
        ctx.leave()
        return
    await step(ctx, scope, initiative)


async def _own(ctx: Context, scope: Scope) -> Initiative | None:
    raw = ctx.conversation.data.get("id")
    initiative = await ctx.session.get(Initiative, int(raw)) if raw is not None else None
    editable = (InitiativeStatus.DRAFT, InitiativeStatus.CHANGES_REQUESTED)
    if initiative is None or initiative.author_id != scope.member.id:
        return None
    return initiative if initiative.status in editable else None


async def _choose(ctx: Context, scope: Scope) -> None:
    pressed = ctx.pressed or ""
    if pressed == "new":
        draft = await initiative_store.draft_of(ctx.session, scope.campaign.id, scope.member.id)
        if draft is not None:
            await ctx.session.delete(draft)
        await _begin(ctx, scope)
        return
    if pressed == "draft":
        draft = await initiative_store.draft_of(ctx.session, scope.campaign.id, scope.member.id)
        if draft is None:
            await _begin(ctx, scope)
            return
        ctx.enter(FLOW, "confirm", id=draft.id)
        await _continue(ctx, scope, draft)
        return
    if pressed.startswith("fix") and pressed[3:].isdigit():
        ctx.enter(FLOW, "confirm", id=int(pressed[3:]))
        initiative = await _own(ctx, scope)
        if initiative is not None:
            await _show_summary(ctx, scope, initiative)
            return
    ctx.leave()
    ctx.say("choice.invalid")


async def _continue(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    """Ask for the first thing still missing, or show the summary when nothing is."""
    for step in TEXT_STEPS:
        if not getattr(initiative, step):
            _ask_text(ctx, step)
            return
    if initiative.field is None:
        _ask_value(ctx)
        return
    await _show_summary(ctx, scope, initiative)


def _ask_text(ctx: Context, step: str) -> None:
    ctx.goto(step)
    if step == "title":
        ctx.say("initiative.ask_title", minimum=TITLE_MIN, maximum=TITLE_MAX)
    else:
        ctx.say(f"initiative.ask_{step}", minimum=TEXT_MIN, maximum=TEXT_MAX)


def _after(ctx: Context, initiative: Initiative, step: str) -> str | None:
    """Return the step after `step` while writing; None when editing from the summary."""
    if ctx.conversation.data.get("editing"):
        return None
    order = [*TEXT_STEPS, "value"]
    return order[order.index(step) + 1]


async def _next(ctx: Context, scope: Scope, initiative: Initiative, step: str) -> None:
    following = _after(ctx, initiative, step)
    if following is None:
        await _show_summary(ctx, scope, initiative)
    elif following == "value":
        _ask_value(ctx)
    else:
        _ask_text(ctx, following)


async def _title(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    title = clean_line(ctx.text)
    if not TITLE_MIN <= len(title) <= TITLE_MAX:
        ctx.say("initiative.title_length", minimum=TITLE_MIN, maximum=TITLE_MAX, length=len(title))
        return
    initiative.title, initiative.title_folded, initiative.updated_at = title, fold(title), ctx.now
    await _next(ctx, scope, initiative, "title")


async def _text_step(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    step = ctx.conversation.step or ""
    text = clean(ctx.text)
    if not TEXT_MIN <= len(text) <= TEXT_MAX:
        ctx.say("initiative.text_length", minimum=TEXT_MIN, maximum=TEXT_MAX, length=len(text))
        return
    setattr(initiative, step, text)
    initiative.updated_at = ctx.now
    await _next(ctx, scope, initiative, step)


def _ask_value(ctx: Context) -> None:
    ctx.goto("value")
    ctx.say("initiative.ask_value", choices=[ctx.choice(ctx.t("initiative.skip"), "skip")])


async def _value(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    if ctx.pressed != "skip":
        amount = parse_vnd(ctx.text)
        if amount is None:
            ctx.say(
                "initiative.bad_value",
                text=clean_line(ctx.text)[:60],
                choices=[ctx.choice(ctx.t("initiative.skip"), "skip")],
            )
            return
        initiative.estimated_value = amount
    else:
        initiative.estimated_value = None
    initiative.updated_at = ctx.now
    if ctx.conversation.data.get("editing"):
        await _show_summary(ctx, scope, initiative)
        return
    _ask_field(ctx, scope)


def _fields(scope: Scope) -> list[str]:
    options = scope.campaign.options or {}
    fields = [str(f) for f in options.get("initiative_fields") or []]
    return fields or []


def _ask_field(ctx: Context, scope: Scope) -> None:
    ctx.goto("field")
    fields = _fields(scope) or [ctx.t("initiative.no_fields")]
    ctx.say(
        "initiative.ask_field",
        choices=[ctx.choice(name, f"f{index}") for index, name in enumerate(fields)],
    )


async def _field(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    fields = _fields(scope) or [ctx.t("initiative.no_fields")]
    pressed = ctx.pressed or ""
    index = int(pressed[1:]) if pressed.startswith("f") and pressed[1:].isdigit() else -1
    if not 0 <= index < len(fields):
        ctx.say("initiative.pick_field")
        _ask_field(ctx, scope)
        return
    initiative.field, initiative.updated_at = fields[index], ctx.now
    if ctx.conversation.data.get("editing"):
        await _show_summary(ctx, scope, initiative)
        return
    await _ask_coauthors(ctx, scope, initiative)


async def _ask_coauthors(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    ctx.goto("coauthors")
    chosen = await initiative_store.names(ctx.session, initiative.co_author_ids)
    ctx.say(
        "initiative.ask_coauthors",
        chosen=", ".join(chosen) or ctx.t("initiative.no_coauthors"),
        unit=scope.unit.name,
        choices=[ctx.choice(ctx.t("initiative.done"), "done")],
    )


async def _coauthors(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    pressed = ctx.pressed or ""
    if pressed == "done":
        if ctx.conversation.data.get("editing"):
            await _show_summary(ctx, scope, initiative)
            return
        _ask_attachments(ctx)
        return
    if pressed.startswith("m") and pressed[1:].isdigit():
        await _add_coauthor(ctx, scope, initiative, int(pressed[1:]))
        return
    query = fold(clean_line(ctx.text))
    found = await commitment_store.find_members(
        ctx.session, scope.unit, query, exclude_id=scope.member.id
    )
    if not found:
        ctx.say(
            "initiative.coauthor_none_found",
            query=clean_line(ctx.text)[:60],
            unit=scope.unit.name,
            choices=[ctx.choice(ctx.t("initiative.done"), "done")],
        )
        return
    choices = [ctx.choice(f"{m.full_name} – {u.name}", f"m{m.id}") for m, u in found]
    choices.append(ctx.choice(ctx.t("initiative.done"), "done"))
    ctx.say("initiative.coauthor_results", choices=choices)


async def _add_coauthor(ctx: Context, scope: Scope, initiative: Initiative, member_id: int) -> None:
    member = await members.get(ctx.session, member_id)
    unit = await units.get(ctx.session, member.unit_id) if member is not None else None
    # The pressed id is checked again: only active members of the author's own subtree.
    if member is None or unit is None or not unit.path.startswith(scope.unit.path):
        ctx.say("choice.invalid")
        return
    if member.id not in initiative.co_author_ids and member.id != scope.member.id:
        if len(initiative.co_author_ids) >= COAUTHORS_MAX:
            ctx.say("initiative.coauthors_full", maximum=COAUTHORS_MAX)
        else:
            initiative.co_author_ids = [*initiative.co_author_ids, member.id]
            ctx.say("initiative.coauthor_added", name=member.full_name)
    await _ask_coauthors(ctx, scope, initiative)


def _ask_attachments(ctx: Context) -> None:
    ctx.goto("attachments")
    ctx.say(
        "initiative.ask_attachments",
        count=ATTACHMENTS_MAX,
        size=ATTACHMENT_MB,
        choices=[ctx.choice(ctx.t("initiative.done"), "done")],
    )


def _acceptable(ctx: Context, attachment: Attachment) -> str | None:
    """Return why an attachment is refused, or None if it is fine."""
    name = attachment.name or ctx.t("initiative.untitled")
    if attachment.size is not None and attachment.size > ATTACHMENT_MB * 1024 * 1024:
        size = round(attachment.size / 1024 / 1024, 1)
        return ctx.t("initiative.attachment_too_big", name=name, size=size, maximum=ATTACHMENT_MB)
    mime = attachment.mime_type or ""
    if attachment.kind == "document" and not mime.startswith(ALLOWED_DOCUMENTS):
        return ctx.t("initiative.attachment_bad_type", name=name)
    return None


async def _attachments(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    if ctx.pressed == "done":
        await _show_summary(ctx, scope, initiative)
        return
    done = [ctx.choice(ctx.t("initiative.done"), "done")]
    if not ctx.incoming.attachments:
        ctx.say("initiative.attachment_expected", choices=done)
        return
    kept = list(initiative.attachments)
    for attachment in ctx.incoming.attachments:
        problem = _acceptable(ctx, attachment)
        if problem is not None:
            ctx.reply(problem, done)
            continue
        if len(kept) >= ATTACHMENTS_MAX:
            ctx.say("initiative.attachment_too_many", maximum=ATTACHMENTS_MAX, choices=done)
            break
        kept.append(attachment.to_dict())
        ctx.say(
            "initiative.attachment_added",
            name=attachment.name or ctx.t(f"attachment.{attachment.kind}"),
            count=len(kept),
            maximum=ATTACHMENTS_MAX,
            choices=done,
        )
    initiative.attachments, initiative.updated_at = kept, ctx.now


async def _show_summary(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    ctx.goto("confirm", editing=True)
    coauthors = await initiative_store.names(ctx.session, initiative.co_author_ids)
    value = initiative.estimated_value
    files = [a.get("name") or ctx.t(f"attachment.{a['kind']}") for a in initiative.attachments]
    text = ctx.t(
        "initiative.summary",
        title=initiative.title,
        problem=initiative.problem,
        solution=initiative.solution,
        benefit=initiative.benefit,
        value=vnd(ctx, value) if value else ctx.t("initiative.no_value"),
        field=initiative.field or ctx.t("initiative.no_field"),
        coauthors=", ".join(coauthors) or ctx.t("initiative.no_coauthors"),
        attachments=", ".join(files) or ctx.t("initiative.no_attachments"),
    )
    edits = ["title", "problem", "solution", "benefit", "value", "field"]
    choices = [ctx.choice(ctx.t("initiative.send"), "send")]
    choices += [ctx.choice(ctx.t(f"initiative.edit_{name}"), f"e:{name}") for name in edits]
    choices.append(ctx.choice(ctx.t("initiative.edit_coauthors"), "e:coauthors"))
    choices.append(ctx.choice(ctx.t("initiative.edit_attachments"), "e:attachments"))
    if initiative.status == InitiativeStatus.DRAFT:
        choices.append(ctx.choice(ctx.t("initiative.discard"), "discard"))
    ctx.reply(text, choices)


async def _confirm(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    pressed = ctx.pressed or ""
    if pressed == "send":
        missing = [step for step in TEXT_STEPS if not getattr(initiative, step)]
        if missing:
            ctx.goto(missing[0], editing=False)
            await _continue(ctx, scope, initiative)
            return
        found = await initiative_store.similar(
            ctx.session,
            scope.unit,
            scope.campaign.id,
            initiative.title_folded,
            exclude_id=initiative.id,
        )
        if found:
            ctx.goto("similar")
            lines = [ctx.t("initiative.similar_title")]
            lines += [
                ctx.t(
                    "initiative.similar_line",
                    reference=other.reference or "",
                    title=other.title,
                    status=ctx.t(f"initiative.status.{other.status.value}"),
                )
                for other, _ in found
            ]
            ctx.reply(
                "\n".join(lines),
                [
                    ctx.choice(ctx.t("initiative.similar_send_anyway"), "send"),
                    ctx.choice(ctx.t("initiative.similar_cancel"), "cancel"),
                ],
            )
            return
        await _submit(ctx, scope, initiative)
        return
    if pressed == "discard" and initiative.status == InitiativeStatus.DRAFT:
        await ctx.session.delete(initiative)
        ctx.leave()
        ctx.say("initiative.discarded")
        return
    if pressed.startswith("e:"):
        await _edit(ctx, scope, initiative, pressed[2:])
        return
    await _show_summary(ctx, scope, initiative)


async def _edit(ctx: Context, scope: Scope, initiative: Initiative, what: str) -> None:
    if what in TEXT_STEPS:
        _ask_text(ctx, what)
    elif what == "value":
        _ask_value(ctx)
    elif what == "field":
        _ask_field(ctx, scope)
    elif what == "coauthors":
        await _ask_coauthors(ctx, scope, initiative)
    elif what == "attachments":
        initiative.attachments = []  # sent again from scratch: simpler than picking files out
        _ask_attachments(ctx)
    else:
        await _show_summary(ctx, scope, initiative)


async def _similar(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    if ctx.pressed == "send":
        await _submit(ctx, scope, initiative)
        return
    ctx.leave()
    ctx.say("initiative.kept_as_draft")


async def _submit(ctx: Context, scope: Scope, initiative: Initiative) -> None:
    resubmitting = initiative.status == InitiativeStatus.CHANGES_REQUESTED
    if initiative.reference is None:
        number = await counters.next_value(ctx.session, f"initiative:{scope.campaign.id}")
        initiative.reference = counters.reference("SK", scope.campaign.year, number)
    initiative.status = InitiativeStatus.SUBMITTED
    initiative.submitted_at = initiative.updated_at = ctx.now
    initiative.unit_id = scope.unit.id
    ctx.leave()
    if resubmitting:
        ctx.say("initiative.resubmitted", reference=initiative.reference)
    else:
        ctx.say("initiative.submitted", reference=initiative.reference, title=initiative.title)
    # The officers nearest the author's unit who can be reached learn there is something to review.
    for officer in await members.nearest_reachable_officers(ctx.session, scope.unit, ctx.now):
        if officer.id == scope.member.id:
            continue
        text = ctx.t(
            "initiative.officer_new",
            reference=initiative.reference,
            title=initiative.title,
            author=scope.member.full_name,
            unit=scope.unit.name,
        )
        await ctx.notify(officer.id, Reply(text=text))
