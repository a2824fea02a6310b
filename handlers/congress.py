"""/congtrinh: a CĐCS registers its work, product or task for the congresses, and reports on it."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from handlers import attachments
from handlers.audit_log import note
from handlers.commitments import late_policy, registration_is_late
from handlers.context import Context
from handlers.permissions import Action, can
from handlers.scope import Scope, member_scope
from handlers.types import Attachment
from storage import commitments as commitment_store
from storage import counters
from storage.models import CongressWork, CongressWorkUpdate, DeadlineKind, UnitKind, WorkStatus
from storage.text import clean, clean_line

FLOW = "congress"
TITLE_MIN, TITLE_MAX = 5, 200
DESCRIPTION_MIN, DESCRIPTION_MAX = 10, 1000
NOTE_MAX = 1000


async def start(ctx: Context) -> None:
    """Show the unit's congress work, or begin registering it."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    if not _may_register(scope):
        ctx.say("work.grassroots_officers_only")
        return
    work = await commitment_store.congress_work(ctx.session, scope.campaign.id, scope.unit.id)
    if work is not None:
        _show_existing(ctx, work, first_time=False)
        return
    late, due = await registration_is_late(
        ctx, scope.campaign, DeadlineKind.CONGRESS_WORK_REGISTRATION
    )
    if late and late_policy(scope.campaign) == "refuse":
        ctx.say("register.closed", date=due)
        return
    ctx.enter(FLOW, "title")
    if late:
        ctx.say("register.late_warning", date=due)
    ctx.say("work.ask_title", unit=scope.unit.name, minimum=TITLE_MIN, maximum=TITLE_MAX)


def _may_register(scope: Scope) -> bool:
    return scope.unit.kind == UnitKind.GRASSROOTS and can(
        scope.member, Action.REGISTER_CONGRESS_WORK, scope.unit, scope.unit
    )


def _show_existing(ctx: Context, work: CongressWork, *, first_time: bool) -> None:
    ctx.enter(FLOW, "existing", work_id=work.id)
    ctx.say(
        "work.card",
        reference=work.reference,
        title=work.title,
        description=work.description,
        status=ctx.t(f"work.status_{work.status.value}"),
        percent=work.progress_percent,
        choices=[
            ctx.choice(ctx.t("work.update"), "update"),
            ctx.choice(ctx.t("work.edit"), "edit"),
        ],
    )
    if not first_time:
        ctx.say("work.one_per_unit")


async def resume(ctx: Context) -> None:
    """Continue at the current step."""
    scope = await member_scope(ctx)
    if scope is None or not _may_register(scope):
        ctx.leave()
        if scope is not None:
            ctx.say("work.grassroots_officers_only")
        return
    steps = {
        "title": _title,
        "description": _description,
        "existing": _existing,
        "status": _status,
        "note": _note,
    }
    step = steps.get(ctx.conversation.step or "")
    if step is None:
        ctx.leave()
        return
    await step(ctx, scope)


async def _title(ctx: Context, scope: Scope) -> None:
    title = clean_line(ctx.text)
    if not TITLE_MIN <= len(title) <= TITLE_MAX:
        ctx.say("work.title_length", minimum=TITLE_MIN, maximum=TITLE_MAX, length=len(title))
        return
    ctx.goto("description", title=title)
    ctx.say("work.ask_description", minimum=DESCRIPTION_MIN, maximum=DESCRIPTION_MAX)


async def _description(ctx: Context, scope: Scope) -> None:
    description = clean(ctx.text)
    if not DESCRIPTION_MIN <= len(description) <= DESCRIPTION_MAX:
        ctx.say(
            "work.description_length",
            minimum=DESCRIPTION_MIN,
            maximum=DESCRIPTION_MAX,
            length=len(description),
        )
        return
    data = ctx.conversation.data
    if data.get("work_id"):  # editing
        work = await ctx.session.get(CongressWork, int(data["work_id"]))
        if work is None or work.unit_id != scope.unit.id:
            ctx.leave()
            ctx.say("choice.invalid")
            return
        work.title, work.description, work.updated_at = str(data["title"]), description, ctx.now
        ctx.leave()
        ctx.say("work.edited", reference=work.reference)
        return
    late, due = await registration_is_late(
        ctx, scope.campaign, DeadlineKind.CONGRESS_WORK_REGISTRATION
    )
    if late and late_policy(scope.campaign) == "refuse":  # the deadline passed while typing
        ctx.leave()
        ctx.say("register.closed", date=due)
        return
    number = await counters.next_value(ctx.session, f"congress_work:{scope.campaign.id}")
    work = CongressWork(
        campaign_id=scope.campaign.id,
        unit_id=scope.unit.id,
        reference=counters.reference("CT", scope.campaign.year, number),
        title=str(data["title"]),
        description=description,
        registered_by_id=scope.member.id,
        late=late,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    try:
        async with ctx.session.begin_nested():
            ctx.session.add(work)
    except IntegrityError:  # another officer of the unit registered one meanwhile
        existing = await commitment_store.congress_work(
            ctx.session, scope.campaign.id, scope.unit.id
        )
        if existing is not None:
            _show_existing(ctx, existing, first_time=False)
        return
    note(
        ctx,
        "congress_work.register",
        unit_id=scope.unit.id,
        subject=f"congress_work:{work.id}",
        reference=work.reference,
    )
    ctx.leave()
    ctx.say("work.registered", reference=work.reference, unit=scope.unit.name)


async def _existing(ctx: Context, scope: Scope) -> None:
    work = await ctx.session.get(CongressWork, int(ctx.conversation.data["work_id"]))
    if work is None or work.unit_id != scope.unit.id:
        ctx.leave()
        ctx.say("choice.invalid")
        return
    if ctx.pressed == "edit":
        ctx.goto("title")
        ctx.say("work.ask_title", unit=scope.unit.name, minimum=TITLE_MIN, maximum=TITLE_MAX)
        return
    if ctx.pressed == "update":
        ctx.goto("status")
        ctx.say(
            "work.ask_status",
            choices=[
                ctx.choice(ctx.t("work.status_in_progress"), WorkStatus.IN_PROGRESS.value),
                ctx.choice(ctx.t("work.status_completed"), WorkStatus.COMPLETED.value),
            ],
        )
        return
    ctx.leave()
    ctx.say("hint.free_text")


async def _status(ctx: Context, scope: Scope) -> None:
    if ctx.pressed not in (WorkStatus.IN_PROGRESS.value, WorkStatus.COMPLETED.value):
        ctx.say(
            "work.ask_status",
            choices=[
                ctx.choice(ctx.t("work.status_in_progress"), WorkStatus.IN_PROGRESS.value),
                ctx.choice(ctx.t("work.status_completed"), WorkStatus.COMPLETED.value),
            ],
        )
        return
    ctx.goto("note", status=ctx.pressed)
    ctx.say("work.ask_note", maximum=NOTE_MAX)


async def _note(ctx: Context, scope: Scope) -> None:
    note = clean(ctx.text)
    photos = [a for a in ctx.incoming.attachments if a.kind == "photo"]
    if not note and not photos:
        ctx.say("work.ask_note", maximum=NOTE_MAX)
        return
    if len(note) > NOTE_MAX:
        ctx.say("work.note_too_long", maximum=NOTE_MAX, length=len(note))
        return
    refused = attachments.refusal(ctx, photos[-1], photos_only=True) if photos else None
    if refused is not None:
        ctx.reply(refused)
        return
    work = await ctx.session.get(CongressWork, int(ctx.conversation.data["work_id"]))
    if work is None or work.unit_id != scope.unit.id:
        ctx.leave()
        ctx.say("choice.invalid")
        return
    status = WorkStatus(ctx.conversation.data["status"])
    percent = 100 if status == WorkStatus.COMPLETED else max(work.progress_percent, 50)
    photo: Attachment | None = photos[-1] if photos else None
    ctx.session.add(
        CongressWorkUpdate(
            work_id=work.id,
            author_id=scope.member.id,
            status=status,
            progress_percent=percent,
            note=note,
            photo=photo.to_dict() if photo else None,
            created_at=ctx.now,
        )
    )
    work.status, work.progress_percent, work.updated_at = status, percent, ctx.now
    ctx.leave()
    ctx.say(
        "work.updated_with_photo" if photo else "work.updated",
        reference=work.reference,
        status=ctx.t(f"work.status_{status.value}"),
    )
