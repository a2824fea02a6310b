"""/thongbao: an officer announces something to members of their subtree."""

from __future__ import annotations

from typing import Any

from handlers import attachments
from handlers.audit_log import note
from handlers.context import Context
from handlers.parsing import parse_local_time
from handlers.permissions import Action, refusal
from handlers.scope import Scope, member_scope
from handlers.types import Attachment, Choice, Reply
from storage import broadcasts as broadcast_store
from storage import units
from storage.broadcasts import Audience
from storage.models import Broadcast, BroadcastStatus, OutboxStatus, Sector, Unit
from storage.text import clean

FLOW = "broadcast"
TEXT_MAX = 4000
LISTED = 8
SHOWN_UNREACHABLE = 20
# Kinds of audience, as offered to the officer.
KINDS = ("everyone", "units", "sector", "officers", "no_commitment", "no_initiative")


async def start(ctx: Context) -> None:
    """Offer to write a new broadcast or look at earlier ones."""
    scope = await _officer_scope(ctx)
    if scope is None:
        return
    ctx.enter(FLOW, "menu")
    ctx.say(
        "broadcast.menu",
        choices=[
            ctx.choice(ctx.t("broadcast.new"), "new"),
            ctx.choice(ctx.t("broadcast.mine"), "list"),
        ],
    )


async def _officer_scope(ctx: Context) -> Scope | None:
    scope = await member_scope(ctx)
    if scope is None:
        return None
    key = refusal(scope.member, Action.BROADCAST, scope.unit, scope.unit)
    if key is not None:
        ctx.say(key)
        return None
    return scope


async def resume(ctx: Context) -> None:
    """Continue at the current step."""
    scope = await _officer_scope(ctx)
    if scope is None:
        ctx.leave()
        return
    steps = {
        "menu": _menu,
        "text": _text,
        "preview": _preview_choice,
        "attach": _attach,
        "audience": _audience,
        "units": _units,
        "sector": _sector,
        "confirm": _confirm,
        "schedule": _schedule,
        "report": _report_choice,
    }
    step = steps.get(ctx.conversation.step or "")
    if step is None:
        ctx.leave()
        return
    await step(ctx, scope)


async def _menu(ctx: Context, scope: Scope) -> None:
    if ctx.pressed == "new":
        ctx.goto("text")
        ctx.say("broadcast.ask_text", maximum=TEXT_MAX)
    elif ctx.pressed == "list":
        await _list(ctx, scope)
    else:
        await start(ctx)


async def _text(ctx: Context, scope: Scope) -> None:
    text = clean(ctx.text)
    if not text:
        ctx.say("broadcast.ask_text", maximum=TEXT_MAX)
        return
    if len(text) > TEXT_MAX:
        ctx.say("broadcast.text_too_long", maximum=TEXT_MAX, length=len(text))
        return
    ctx.goto("preview", text=text)
    _show_preview(ctx)


def _payload(ctx: Context) -> Reply:
    data = ctx.conversation.data
    attachments = tuple(Attachment.from_dict(a) for a in data.get("attachments", []))
    return Reply(text=str(data["text"]), attachments=attachments)


def _show_preview(ctx: Context) -> None:
    ctx.say("broadcast.preview_title")
    ctx.outcome.replies.append(_payload(ctx))  # exactly what members will receive
    choices = [ctx.choice(ctx.t("broadcast.choose_audience"), "audience")]
    if not ctx.conversation.data.get("attachments"):
        choices.append(ctx.choice(ctx.t("broadcast.add_attachment"), "attach"))
    choices.append(ctx.choice(ctx.t("broadcast.rewrite"), "rewrite"))
    ctx.say("broadcast.preview_next", choices=choices)


async def _preview_choice(ctx: Context, scope: Scope) -> None:
    if ctx.pressed == "attach":
        ctx.goto("attach")
        ctx.say("broadcast.ask_attachment")
    elif ctx.pressed == "rewrite":
        ctx.goto("text")
        ctx.say("broadcast.ask_text", maximum=TEXT_MAX)
    elif ctx.pressed == "audience":
        _ask_audience(ctx)
    else:
        _show_preview(ctx)


async def _attach(ctx: Context, scope: Scope) -> None:
    if not ctx.incoming.attachments:
        ctx.say("broadcast.ask_attachment")
        return
    attachment = ctx.incoming.attachments[-1]
    refused = attachments.refusal(ctx, attachment)
    if refused is not None:
        ctx.reply(refused)
        ctx.say("broadcast.ask_attachment")
        return
    ctx.goto("preview", attachments=[attachment.to_dict()])
    _show_preview(ctx)


def _ask_audience(ctx: Context) -> None:
    ctx.goto("audience", unit_ids=[])
    ctx.say(
        "broadcast.ask_audience",
        choices=[ctx.choice(ctx.t(f"broadcast.audience_{kind}"), kind) for kind in KINDS],
    )


async def _audience(ctx: Context, scope: Scope) -> None:
    kind = ctx.pressed
    if kind not in KINDS:
        _ask_audience(ctx)
        return
    if kind == "units":
        ctx.goto("units", unit_ids=[])
        await _offer_units(ctx, scope, await units.subtree(ctx.session, scope.unit, limit=LISTED))
        return
    if kind == "sector":
        ctx.goto("sector")
        ctx.say(
            "broadcast.ask_sector",
            choices=[ctx.choice(ctx.t(f"sector.{s.value}"), s.value) for s in Sector],
        )
        return
    await _confirm_audience(ctx, scope, Audience(kind=kind, campaign_id=scope.campaign.id))


async def _offer_units(ctx: Context, scope: Scope, offered: Any) -> None:
    chosen = [int(i) for i in ctx.conversation.data.get("unit_ids", [])]
    names = [u.name for u in [await units.get(ctx.session, i) for i in chosen] if u]
    choices = [ctx.choice(_label(u), f"u{u.id}") for u in offered if u.id not in chosen]
    if chosen:
        choices.insert(0, ctx.choice(ctx.t("broadcast.units_done"), "done"))
    ctx.say(
        "broadcast.ask_units",
        chosen=", ".join(names) if names else ctx.t("broadcast.none_chosen"),
        choices=choices,
    )


async def _units(ctx: Context, scope: Scope) -> None:
    chosen = [int(i) for i in ctx.conversation.data.get("unit_ids", [])]
    if ctx.pressed == "done" and chosen:
        picked = [u for u in [await units.get(ctx.session, i) for i in chosen] if u]
        audience = Audience(kind="units", unit_paths=tuple(u.path for u in picked))
        await _confirm_audience(ctx, scope, audience)
        return
    if ctx.pressed is None:
        found = await units.search(
            ctx.session, clean(ctx.text)[:100], within=scope.unit, limit=LISTED
        )
        if not found:
            ctx.say("invite.none_found", query=clean(ctx.text)[:100])
            return
        await _offer_units(ctx, scope, found)
        return
    value = ctx.pressed
    unit = await units.get(ctx.session, int(value[1:])) if value[1:].isdigit() else None
    key = refusal(scope.member, Action.BROADCAST, unit, scope.unit)
    if key is not None or unit is None:
        ctx.say(key or "permission.outside_subtree")
        return
    ctx.goto("units", unit_ids=[*chosen, unit.id])
    await _offer_units(ctx, scope, await units.subtree(ctx.session, scope.unit, limit=LISTED))


async def _sector(ctx: Context, scope: Scope) -> None:
    if ctx.pressed not in {s.value for s in Sector}:
        ctx.say(
            "broadcast.ask_sector",
            choices=[ctx.choice(ctx.t(f"sector.{s.value}"), s.value) for s in Sector],
        )
        return
    await _confirm_audience(ctx, scope, Audience(kind="sector", sector=ctx.pressed))


async def _confirm_audience(ctx: Context, scope: Scope, audience: Audience) -> None:
    # Counted at this moment, as sending now would: a member outside one messenger's window
    # is counted on the other messenger they have.
    counts = await broadcast_store.count(
        ctx.session, scope.unit, audience, exclude_member_id=scope.member.id, now=ctx.now
    )
    reachable = sum(n for channel, n in counts.items() if channel != "unreachable")
    if reachable == 0:
        ctx.say("broadcast.nobody")
        _ask_audience(ctx)
        return
    by_channel = ", ".join(
        f"{ctx.t(f'channel.{channel}')}: {n}"
        for channel, n in sorted(counts.items())
        if channel != "unreachable"
    )
    ctx.goto("confirm", audience=audience.to_dict())
    ctx.say(
        "broadcast.counts",
        total=reachable,
        by_channel=by_channel,
        unreachable=counts.get("unreachable", 0),
        choices=[
            ctx.choice(ctx.t("broadcast.send_now"), "now"),
            ctx.choice(ctx.t("broadcast.send_later"), "later"),
            ctx.choice(ctx.t("register.cancel"), "cancel"),
        ],
    )


async def _confirm(ctx: Context, scope: Scope) -> None:
    if ctx.pressed == "cancel":
        ctx.leave()
        ctx.say("cancel.done")
        return
    if ctx.pressed == "later":
        ctx.goto("schedule")
        ctx.say("broadcast.ask_time")
        return
    if ctx.pressed != "now":
        ctx.say("broadcast.choose_when")
        return
    broadcast = await _create(ctx, scope, scheduled_for=None)
    queued = await broadcast_store.queue(ctx.session, broadcast, scope.unit, ctx.now)
    ctx.outcome.queued_notifications = True
    note(
        ctx,
        "broadcast.send",
        unit_id=scope.unit.id,
        subject=f"broadcast:{broadcast.id}",
        audience=broadcast.audience.get("kind"),
        recipients=queued,
    )
    ctx.leave()
    ctx.say("broadcast.sending", number=broadcast.id, total=queued)


async def _schedule(ctx: Context, scope: Scope) -> None:
    moment = parse_local_time(ctx.text, ctx.services.config.timezone)
    if moment is None:
        ctx.say("broadcast.time_invalid")
        return
    if moment <= ctx.now:
        ctx.say("broadcast.time_past", now=ctx.local_time(ctx.now))
        return
    broadcast = await _create(ctx, scope, scheduled_for=moment)
    note(
        ctx,
        "broadcast.schedule",
        unit_id=scope.unit.id,
        subject=f"broadcast:{broadcast.id}",
        audience=broadcast.audience.get("kind"),
        scheduled_for=moment.isoformat(),
    )
    ctx.leave()
    ctx.say("broadcast.scheduled", number=broadcast.id, when=ctx.local_time(moment))


async def _create(ctx: Context, scope: Scope, *, scheduled_for: Any) -> Broadcast:
    broadcast = Broadcast(
        author_id=scope.member.id,
        scope_unit_id=scope.unit.id,
        payload=_payload(ctx).to_dict(),
        audience=dict(ctx.conversation.data["audience"]),
        status=BroadcastStatus.SCHEDULED,
        scheduled_for=scheduled_for,
        created_at=ctx.now,
    )
    ctx.session.add(broadcast)
    await ctx.session.flush()
    return broadcast


async def _list(ctx: Context, scope: Scope) -> None:
    mine = await broadcast_store.of_author(ctx.session, scope.member.id)
    if not mine:
        ctx.leave()
        ctx.say("broadcast.none_yet")
        return
    lines = [ctx.t("broadcast.list_title")]
    for broadcast in mine:
        lines.append(await _summary_line(ctx, broadcast))
    ctx.goto("report")
    ctx.reply("\n".join(lines), [ctx.choice(f"#{b.id}", f"b{b.id}") for b in mine])


async def _summary_line(ctx: Context, broadcast: Broadcast) -> str:
    counts = await broadcast_store.counts(ctx.session, broadcast.id)
    return ctx.t(
        "broadcast.list_line",
        number=broadcast.id,
        created=ctx.local_time(broadcast.created_at),
        status=_status_text(ctx, broadcast, counts),
        excerpt=_excerpt(str(broadcast.payload.get("text", ""))),
    )


def _status_text(ctx: Context, broadcast: Broadcast, counts: dict[OutboxStatus, int]) -> str:
    if broadcast.status == BroadcastStatus.SCHEDULED and broadcast.scheduled_for:
        return ctx.t("broadcast.status_scheduled", when=ctx.local_time(broadcast.scheduled_for))
    if broadcast.status == BroadcastStatus.CANCELLED:
        return ctx.t("broadcast.status_cancelled")
    if counts[OutboxStatus.PENDING]:
        return ctx.t("broadcast.status_sending")
    return ctx.t("broadcast.status_done")


async def _report_choice(ctx: Context, scope: Scope) -> None:
    value = ctx.pressed or ""
    action, _, number = value.partition(":")
    if value.startswith("b") and value[1:].isdigit():
        action, number = "show", value[1:]
    broadcast = await ctx.session.get(Broadcast, int(number)) if number.isdigit() else None
    if broadcast is None or broadcast.author_id != scope.member.id:
        ctx.say("choice.invalid")
        return
    if action == "stop":
        if broadcast.status == BroadcastStatus.CANCELLED:
            ctx.say("broadcast.already_cancelled", number=broadcast.id)
            return
        was_scheduled = broadcast.status == BroadcastStatus.SCHEDULED
        cancelled = await broadcast_store.cancel(ctx.session, broadcast, ctx.now)
        note(
            ctx,
            "broadcast.cancel",
            unit_id=broadcast.scope_unit_id,
            subject=f"broadcast:{broadcast.id}",
            scheduled=was_scheduled,
            cancelled=cancelled,
        )
        ctx.leave()
        if was_scheduled:
            ctx.say("broadcast.cancelled_scheduled", number=broadcast.id)
        else:
            ctx.say("broadcast.cancelled", number=broadcast.id, count=cancelled)
        return
    if action == "unreachable":
        rows = await broadcast_store.unreachable(ctx.session, broadcast.id, limit=SHOWN_UNREACHABLE)
        if not rows:
            ctx.say("broadcast.all_reached", number=broadcast.id)
            return
        lines = [ctx.t("broadcast.unreachable_title", number=broadcast.id)]
        lines += [
            ctx.t("broadcast.unreachable_line", name=n, unit=u, why=ctx.t(f"broadcast.why_{s}"))
            for n, u, s in rows
        ]
        ctx.reply("\n".join(lines))
        return
    if action != "show":
        ctx.say("choice.invalid")
        return
    counts = await broadcast_store.counts(ctx.session, broadcast.id)
    choices: list[Choice] = []
    if counts[OutboxStatus.UNREACHABLE] or counts[OutboxStatus.FAILED]:
        choices.append(
            ctx.choice(ctx.t("broadcast.list_unreachable"), f"unreachable:{broadcast.id}")
        )
    if broadcast.status == BroadcastStatus.SCHEDULED or counts[OutboxStatus.PENDING]:
        choices.append(ctx.choice(ctx.t("broadcast.stop"), f"stop:{broadcast.id}"))
    ctx.say(
        "broadcast.report",
        number=broadcast.id,
        status=_status_text(ctx, broadcast, counts),
        sent=counts[OutboxStatus.SENT],
        pending=counts[OutboxStatus.PENDING],
        failed=counts[OutboxStatus.FAILED],
        unreachable=counts[OutboxStatus.UNREACHABLE],
        cancelled=counts[OutboxStatus.CANCELLED],
        choices=choices,
    )


def _excerpt(text: str, limit: int = 60) -> str:
    line = text.split("\n", 1)[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _label(unit: Unit) -> str:
    return f"{unit.name} ({unit.code})"
