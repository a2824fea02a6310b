"""/guongsang: exemplars and good deeds (điển hình tiên tiến, gương người tốt việc tốt).

Any member nominates a person or a collective with a story and a few photos; the officers of
the nominee's branch approve it (published to the unit's channel through the outbox) or
reject it with a reason; members read the approved stories of their branch.
"""

from __future__ import annotations

import math

from handlers.audit_log import note
from handlers.context import ACTION_PREFIX, Context
from handlers.permissions import Action, can, refusal
from handlers.scope import Scope, member_scope
from handlers.types import Attachment, Choice, Reply
from storage import commitments as commitment_store
from storage import members, outbox, recognition, units
from storage.models import MemberStatus, Story, StoryStatus, Unit
from storage.text import clean, clean_line, fold

FLOW = "story"
ACTION = "story"  # a:story:ID on the officers' notice opens the story for review
NAME_MIN, NAME_MAX = 2, 200
STORY_MIN, STORY_MAX = 20, 2000
REASON_MIN, REASON_MAX = 5, 1000
PHOTOS_MAX = 3
PHOTO_MB = 10
PAGE = 5
EXCERPT = 200
LISTED = 8


async def start(ctx: Context) -> None:
    """Offer to nominate, to read the approved stories, and to officers to review."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    ctx.enter(FLOW, "menu")
    choices = [
        ctx.choice(ctx.t("story.menu_new"), "new"),
        ctx.choice(ctx.t("story.menu_list"), "list"),
    ]
    if can(scope.member, Action.REVIEW_STORY, scope.unit, scope.unit):
        waiting = await recognition.review_queue(
            ctx.session, scope.unit, scope.campaign.id, reviewer_id=scope.member.id
        )
        if waiting:
            choices.append(ctx.choice(ctx.t("story.menu_review", count=len(waiting)), "review"))
    ctx.say("story.menu", choices=choices)


async def resume(ctx: Context) -> None:
    """Continue at the current step."""
    scope = await member_scope(ctx)
    if scope is None:
        ctx.leave()
        return
    step = ctx.conversation.step or ""
    if step in ("card", "reason"):
        await _review_step(ctx, scope, step)
        return
    steps = {
        "menu": _menu,
        "kind": _kind,
        "person": _person,
        "collective": _collective,
        "story": _story,
        "photos": _photos,
        "confirm": _confirm,
        "list": _list,
    }
    handler = steps.get(step)
    if handler is None:
        ctx.leave()
        return
    await handler(ctx, scope)


async def _menu(ctx: Context, scope: Scope) -> None:
    if ctx.pressed == "new":
        ctx.goto("kind")
        _ask_kind(ctx)
    elif ctx.pressed == "list":
        await _show_page(ctx, scope, 0)
    elif ctx.pressed == "review" and can(scope.member, Action.REVIEW_STORY, scope.unit, scope.unit):
        ctx.goto("card", skipped=[], id=None)
        await _show_next(ctx, scope)
    else:
        ctx.leave()
        ctx.say("hint.free_text")


# Nominating ------------------------------------------------------------------------------


def _ask_kind(ctx: Context) -> None:
    ctx.say(
        "story.ask_kind",
        choices=[
            ctx.choice(ctx.t("story.kind_person"), "person"),
            ctx.choice(ctx.t("story.kind_collective"), "collective"),
        ],
    )


async def _kind(ctx: Context, scope: Scope) -> None:
    if ctx.pressed == "person":
        ctx.goto("person", collective=False)
        ctx.say("story.ask_person", unit=scope.unit.name)
    elif ctx.pressed == "collective":
        ctx.goto("collective", collective=True)
        ctx.say("story.ask_collective")
    else:
        _ask_kind(ctx)


async def _person(ctx: Context, scope: Scope) -> None:
    pressed = ctx.pressed or ""
    if pressed == "typed":
        name = str(ctx.conversation.data.get("typed") or "")
        if not name:
            ctx.say("story.ask_person", unit=scope.unit.name)
            return
        _ask_story(ctx, name=name, member_id=None, unit_id=scope.unit.id)
        return
    if pressed.startswith("m") and pressed[1:].isdigit():
        member = await members.get(ctx.session, int(pressed[1:]))
        unit = await units.get(ctx.session, member.unit_id) if member is not None else None
        # The pressed id is checked again: an active member of the nominator's unit or below.
        if (
            member is None
            or unit is None
            or member.status != MemberStatus.ACTIVE
            or not can(scope.member, Action.NOMINATE_STORY, unit, scope.unit)
        ):
            ctx.say("choice.invalid")
            return
        _ask_story(ctx, name=member.full_name, member_id=member.id, unit_id=unit.id)
        return
    name = clean_line(ctx.text)
    if ctx.pressed is not None or not NAME_MIN <= len(name) <= NAME_MAX:
        ctx.say("story.name_length", minimum=NAME_MIN, maximum=NAME_MAX, length=len(name))
        return
    found = await commitment_store.find_members(
        ctx.session, scope.unit, fold(name), exclude_id=scope.member.id, limit=LISTED
    )
    if not found:
        _ask_story(ctx, name=name, member_id=None, unit_id=scope.unit.id)
        return
    ctx.goto("person", typed=name)
    choices = [ctx.choice(f"{m.full_name} – {u.name}", f"m{m.id}") for m, u in found]
    choices.append(ctx.choice(ctx.t("story.use_typed", name=name[:40]), "typed"))
    ctx.say("story.person_results", choices=choices)


async def _collective(ctx: Context, scope: Scope) -> None:
    name = clean_line(ctx.text)
    if ctx.pressed is not None or not NAME_MIN <= len(name) <= NAME_MAX:
        ctx.say("story.name_length", minimum=NAME_MIN, maximum=NAME_MAX, length=len(name))
        return
    _ask_story(ctx, name=name, member_id=None, unit_id=scope.unit.id)


def _ask_story(ctx: Context, *, name: str, member_id: int | None, unit_id: int) -> None:
    ctx.goto("story", name=name, member_id=member_id, unit_id=unit_id, typed=None)
    ctx.say("story.ask_story", name=name, minimum=STORY_MIN, maximum=STORY_MAX)


async def _story(ctx: Context, scope: Scope) -> None:
    text = clean(ctx.text)
    if ctx.pressed is not None or not STORY_MIN <= len(text) <= STORY_MAX:
        ctx.say("story.story_length", minimum=STORY_MIN, maximum=STORY_MAX, length=len(text))
        return
    if ctx.conversation.data.get("editing"):
        ctx.goto("confirm", story=text)
        await _show_summary(ctx, scope)
        return
    ctx.goto("photos", story=text, photos=[])
    _ask_photos(ctx)


def _done(ctx: Context) -> list[Choice]:
    return [ctx.choice(ctx.t("initiative.done"), "done")]


def _ask_photos(ctx: Context) -> None:
    ctx.say("story.ask_photos", count=PHOTOS_MAX, size=PHOTO_MB, choices=_done(ctx))


def _acceptable(ctx: Context, attachment: Attachment) -> str | None:
    """Return why a photo is refused, or None if it is fine."""
    name = attachment.name or ctx.t("attachment.photo")
    is_image = attachment.kind == "photo" or (attachment.mime_type or "").startswith("image/")
    if not is_image:
        return ctx.t("story.photo_bad_type", name=name)
    if attachment.size is not None and attachment.size > PHOTO_MB * 1024 * 1024:
        size = round(attachment.size / 1024 / 1024, 1)
        return ctx.t("initiative.attachment_too_big", name=name, size=size, maximum=PHOTO_MB)
    return None


async def _photos(ctx: Context, scope: Scope) -> None:
    if ctx.pressed == "done":
        ctx.goto("confirm")
        await _show_summary(ctx, scope)
        return
    if not ctx.incoming.attachments:
        ctx.say("initiative.attachment_expected", choices=_done(ctx))
        return
    kept = list(ctx.conversation.data.get("photos") or [])
    for attachment in ctx.incoming.attachments:
        problem = _acceptable(ctx, attachment)
        if problem is not None:
            ctx.reply(problem, _done(ctx))
            continue
        if len(kept) >= PHOTOS_MAX:
            ctx.say("story.photos_full", maximum=PHOTOS_MAX, choices=_done(ctx))
            break
        kept.append(attachment.to_dict())
        ctx.say("story.photo_added", count=len(kept), maximum=PHOTOS_MAX, choices=_done(ctx))
    ctx.goto("photos", photos=kept)


async def _show_summary(ctx: Context, scope: Scope) -> None:
    data = ctx.conversation.data
    unit = await units.get(ctx.session, int(data["unit_id"]))
    ctx.goto("confirm", editing=True)
    ctx.say(
        "story.summary",
        name=data["name"],
        kind=ctx.t("story.kind_collective" if data.get("collective") else "story.kind_person"),
        unit=unit.name if unit else "",
        story=data["story"],
        photos=len(data.get("photos") or []),
        choices=[
            ctx.choice(ctx.t("story.send"), "send"),
            ctx.choice(ctx.t("story.rewrite"), "rewrite"),
            ctx.choice(ctx.t("register.cancel"), "cancel"),
        ],
    )


async def _confirm(ctx: Context, scope: Scope) -> None:
    if ctx.pressed == "cancel":
        ctx.leave()
        ctx.say("cancel.done")
        return
    if ctx.pressed == "rewrite":
        ctx.goto("story")
        ctx.say(
            "story.ask_story",
            name=ctx.conversation.data["name"],
            minimum=STORY_MIN,
            maximum=STORY_MAX,
        )
        return
    if ctx.pressed != "send":
        await _show_summary(ctx, scope)
        return
    data = ctx.conversation.data
    member_id = data.get("member_id")
    subject = await members.get(ctx.session, int(member_id)) if member_id is not None else None
    # A member nominee counts where they are now; they must still be in the nominator's branch.
    unit_id = subject.unit_id if subject is not None else int(data["unit_id"])
    unit = await units.get(ctx.session, unit_id)
    if (member_id is not None and subject is None) or unit is None:
        ctx.leave()
        ctx.say("choice.invalid")
        return
    key = refusal(scope.member, Action.NOMINATE_STORY, unit, scope.unit)
    if key is not None:
        ctx.leave()
        ctx.say(key)
        return
    story = Story(
        campaign_id=scope.campaign.id,
        author_id=scope.member.id,
        unit_id=unit.id,
        collective=bool(data.get("collective")),
        subject_member_id=subject.id if subject is not None else None,
        subject_name=str(data["name"]),
        story=str(data["story"]),
        photos=list(data.get("photos") or []),
        status=StoryStatus.SUBMITTED,
        created_at=ctx.now,
    )
    ctx.session.add(story)
    await ctx.session.flush()
    ctx.leave()
    ctx.say("story.submitted", name=story.subject_name)
    for officer in await members.nearest_reachable_officers(ctx.session, unit, ctx.now):
        if officer.id == scope.member.id:
            continue
        text = ctx.t(
            "story.officer_new",
            name=story.subject_name,
            unit=unit.name,
            author=scope.member.full_name,
        )
        open_it = Choice(ctx.t("story.open"), f"{ACTION_PREFIX}:{ACTION}:{story.id}")
        await ctx.notify(officer.id, Reply(text=text, choices=(open_it,)))


# Reviewing -------------------------------------------------------------------------------


async def open_for_review(ctx: Context, args: list[str]) -> None:
    """The officers' notice button: open that story's card, if this officer may review it."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    if len(args) != 1 or not args[0].isdigit():
        ctx.outcome.choice_notice = ctx.t("choice.invalid")
        ctx.say("choice.invalid")
        return
    story = await ctx.session.get(Story, int(args[0]))
    unit = await units.get(ctx.session, story.unit_id) if story is not None else None
    if (
        story is None
        or unit is None
        or story.campaign_id != scope.campaign.id
        or story.author_id == scope.member.id
        or not can(scope.member, Action.REVIEW_STORY, unit, scope.unit)
    ):
        ctx.outcome.choice_notice = ctx.t("permission.denied")
        ctx.say("permission.denied")
        return
    if story.status != StoryStatus.SUBMITTED:
        ctx.outcome.choice_notice = ctx.t("story.already_decided")
        ctx.say("story.already_decided")
        return
    ctx.enter(FLOW, "card", skipped=[], id=story.id)
    await _show_card(ctx, scope, story)


async def _show_next(ctx: Context, scope: Scope) -> None:
    skipped = set(ctx.conversation.data.get("skipped") or [])
    queue = await recognition.review_queue(
        ctx.session, scope.unit, scope.campaign.id, reviewer_id=scope.member.id
    )
    waiting = [entry for entry in queue if entry[0].id not in skipped]
    if not waiting:
        ctx.leave()
        ctx.say("story.review_empty", unit=scope.unit.name)
        return
    await _show_card(
        ctx, scope, waiting[0][0], position=(len(queue) - len(waiting) + 1, len(queue))
    )


async def _show_card(
    ctx: Context, scope: Scope, story: Story, *, position: tuple[int, int] = (1, 1)
) -> None:
    ctx.goto("card", id=story.id)
    author = await members.get(ctx.session, story.author_id)
    unit = await units.get(ctx.session, story.unit_id)
    photos = tuple(Attachment.from_dict(raw) for raw in story.photos)
    if photos:
        ctx.outcome.replies.append(
            Reply(text=ctx.t("story.card_photos", count=len(photos)), attachments=photos)
        )
    ctx.say(
        "story.card",
        position=position[0],
        total=position[1],
        name=story.subject_name,
        kind=ctx.t("story.kind_collective" if story.collective else "story.kind_person"),
        unit=unit.name if unit else "",
        author=author.full_name if author else "",
        submitted=ctx.local_time(story.created_at),
        story=story.story,
        choices=[
            ctx.choice(ctx.t("story.approve"), "approve"),
            ctx.choice(ctx.t("story.reject"), "reject"),
            ctx.choice(ctx.t("story.later"), "later"),
        ],
    )


async def _reviewable(ctx: Context, scope: Scope) -> tuple[Story, Unit] | None:
    """Load the story under review, locked, if this officer may still decide on it."""
    raw = ctx.conversation.data.get("id")
    if raw is None:
        return None
    # The officer's own row first: a demotion or a move committed meanwhile is seen here.
    await ctx.session.refresh(scope.member, with_for_update=True)
    story = await ctx.session.get(Story, int(raw), with_for_update=True)
    if story is None or story.status != StoryStatus.SUBMITTED:
        return None
    unit = await units.get(ctx.session, story.unit_id)
    # Whatever the conversation or the callback data say, the branch decides.
    if unit is None or not can(scope.member, Action.REVIEW_STORY, unit, scope.unit):
        return None
    if story.author_id == scope.member.id:
        return None
    return story, unit


async def _review_step(ctx: Context, scope: Scope, step: str) -> None:
    key = refusal(scope.member, Action.REVIEW_STORY, scope.unit, scope.unit)
    if key is not None:
        ctx.leave()
        ctx.say(key)
        return
    found = await _reviewable(ctx, scope)
    if found is None:
        ctx.say("story.gone")
        ctx.goto("card", id=None)
        await _show_next(ctx, scope)
        return
    story, unit = found
    if step == "reason":
        await _reject(ctx, scope, story)
        return
    if ctx.pressed == "approve":
        await _approve(ctx, scope, story, unit)
    elif ctx.pressed == "reject":
        ctx.goto("reason")
        ctx.say("story.ask_reason", minimum=REASON_MIN, maximum=REASON_MAX)
    elif ctx.pressed == "later":
        skipped = [*(ctx.conversation.data.get("skipped") or []), story.id]
        ctx.goto("card", skipped=skipped, id=None)
        await _show_next(ctx, scope)
    else:
        ctx.leave()
        ctx.say("hint.free_text")


async def _approve(ctx: Context, scope: Scope, story: Story, unit: Unit) -> None:
    story.status = StoryStatus.APPROVED
    story.reviewer_id = scope.member.id
    story.reviewed_at = ctx.now
    note(ctx, "story.approve", unit_id=unit.id, subject=f"story:{story.id}")
    chat = await recognition.publish_chat_for(ctx.session, unit)
    if chat is not None:
        # Published through the delivery engine, like every message the bot pushes.
        account = await recognition.publish_account(ctx.session, chat, ctx.now)
        text = ctx.t(
            "story.publication", name=story.subject_name, unit=unit.name, story=story.story
        )
        photos = tuple(Attachment.from_dict(raw) for raw in story.photos)
        outbox.enqueue(
            ctx.session,
            account_id=account.id,
            channel=account.channel,
            payload=Reply(text=text, attachments=photos).to_dict(),
            now=ctx.now,
        )
        story.published_at = ctx.now
        ctx.outcome.queued_notifications = True
        ctx.say("story.approved_published", name=story.subject_name)
    else:
        ctx.say("story.approved_listed", name=story.subject_name, unit=unit.name)
    key = "story.author_approved_published" if chat else "story.author_approved"
    await ctx.notify(story.author_id, Reply(text=ctx.t(key, name=story.subject_name)))
    await _offer_next(ctx, scope)


async def _reject(ctx: Context, scope: Scope, story: Story) -> None:
    reason = clean(ctx.text)
    if ctx.pressed is not None or not REASON_MIN <= len(reason) <= REASON_MAX:
        ctx.say("story.reason_length", minimum=REASON_MIN, maximum=REASON_MAX, length=len(reason))
        return
    story.status = StoryStatus.REJECTED
    story.reviewer_id = scope.member.id
    story.reviewed_at = ctx.now
    story.review_note = reason
    note(ctx, "story.reject", unit_id=story.unit_id, subject=f"story:{story.id}")
    ctx.say("story.rejected", name=story.subject_name)
    text = ctx.t("story.author_rejected", name=story.subject_name, reason=reason)
    await ctx.notify(story.author_id, Reply(text=text))
    await _offer_next(ctx, scope)


async def _offer_next(ctx: Context, scope: Scope) -> None:
    skipped = ctx.conversation.data.get("skipped") or []
    ctx.goto("card", skipped=skipped, id=None)
    await _show_next(ctx, scope)


# Reading ---------------------------------------------------------------------------------


async def _show_page(ctx: Context, scope: Scope, page: int) -> None:
    found, total = await recognition.approved_in_branch(
        ctx.session, scope.unit, scope.campaign.id, offset=page * PAGE, limit=PAGE
    )
    if total == 0:
        ctx.leave()
        ctx.say("story.list_empty", unit=scope.unit.name)
        return
    pages = math.ceil(total / PAGE)
    if not found:  # a page beyond the end, after stories were withdrawn
        await _show_page(ctx, scope, pages - 1)
        return
    ctx.goto("list", page=page)
    lines = [ctx.t("story.list_title", unit=scope.unit.name, page=page + 1, pages=pages)]
    choices: list[Choice] = []
    for number, (story, unit) in enumerate(found, page * PAGE + 1):
        lines.append(
            ctx.t(
                "story.list_line",
                number=number,
                name=story.subject_name,
                unit=unit.name,
                date=ctx.local_date(story.reviewed_at or story.created_at),
                excerpt=_short(story.story, EXCERPT),
            )
        )
        label = ctx.t("story.read", number=number, name=_short(story.subject_name, 30))
        choices.append(ctx.choice(label, f"r{story.id}"))
    if page > 0:
        choices.append(ctx.choice(ctx.t("story.previous"), f"p{page - 1}"))
    if page + 1 < pages:
        choices.append(ctx.choice(ctx.t("story.next"), f"p{page + 1}"))
    ctx.reply("\n\n".join(lines), choices)


async def _list(ctx: Context, scope: Scope) -> None:
    pressed = ctx.pressed or ""
    page = int(ctx.conversation.data.get("page") or 0)
    if pressed.startswith("p") and pressed[1:].isdigit():
        await _show_page(ctx, scope, int(pressed[1:]))
        return
    if pressed == "back":
        await _show_page(ctx, scope, page)
        return
    if pressed.startswith("r") and pressed[1:].isdigit():
        story = await ctx.session.get(Story, int(pressed[1:]))
        unit = await units.get(ctx.session, story.unit_id) if story is not None else None
        # The pressed id is checked again: approved, and of the reader's branch.
        if (
            story is None
            or unit is None
            or story.status != StoryStatus.APPROVED
            or story.campaign_id != scope.campaign.id
            or not recognition.in_branch(unit, scope.unit)
        ):
            ctx.say("choice.invalid")
            return
        photos = tuple(Attachment.from_dict(raw) for raw in story.photos)
        ctx.outcome.replies.append(
            Reply(
                text=ctx.t(
                    "story.full",
                    name=story.subject_name,
                    unit=unit.name,
                    date=ctx.local_date(story.reviewed_at or story.created_at),
                    story=story.story,
                ),
                attachments=photos,
            )
        )
        ctx.say("story.back_hint", choices=[ctx.choice(ctx.t("story.back"), "back")])
        return
    ctx.leave()
    ctx.say("hint.free_text")


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
