"""Members' data rights: /dulieu, /xoadulieu, and /roidoan for officers.

/dulieu shows what is stored, /xoadulieu erases it, /roidoan records that a member left.

Under Nghị định 13/2023/NĐ-CP a member may see and have erased their personal data; erasure
anonymises, so the unit's figures do not change.
"""

from __future__ import annotations

from collections.abc import Sequence

from handlers.context import Context
from handlers.permissions import Action, can
from handlers.types import Reply
from storage import privacy, units
from storage.commitments import find_members
from storage.models import (
    Commitment,
    CommitmentStatus,
    Initiative,
    Member,
    MemberStatus,
)
from storage.text import clean_line, fold

FLOW = "privacy"
SEARCH_MIN, SEARCH_MAX = 2, 100
SEARCH_RESULTS = 8
# Below the smallest messenger limit (Zalo's 2,000 characters): each part goes out whole.
PART_LIMIT = 1900


def placeholders(ctx: Context) -> privacy.Placeholders:
    """The catalogue's neutral words that erased names and texts become."""
    return privacy.Placeholders(
        name=ctx.t("privacy.erased_name"), text=ctx.t("privacy.erased_text")
    )


async def show_data(ctx: Context) -> None:
    """Handle /dulieu: everything stored about the member, in as many messages as it takes."""
    member = ctx.member
    if member is None or member.erased_at is not None:
        ctx.say("privacy.not_member")
        return
    data = await privacy.everything_about(ctx.session, member)
    sections = [ctx.t("privacy.data.intro"), _profile(ctx, data)]
    sections.append(
        _listing(
            ctx,
            "privacy.data.accounts",
            [
                ctx.t(
                    "privacy.data.account",
                    channel=ctx.t(f"channel.{a.channel}"),
                    external_id=a.external_id,
                    display_name=a.display_name or ctx.t("privacy.none"),
                    seen=ctx.local_time(a.last_seen_at),
                    preferred=ctx.t("privacy.data.preferred") if a.preferred else "",
                )
                for a in data.accounts
            ],
        )
    )
    sections.append(
        _listing(
            ctx,
            "privacy.data.commitments",
            [_commitment(ctx, c, movement) for c, movement in data.commitments],
        )
    )
    sections.append(
        _listing(ctx, "privacy.data.initiatives", [_initiative(ctx, i) for i in data.initiatives])
    )
    if data.co_authored:
        sections.append(
            _listing(
                ctx,
                "privacy.data.co_authored",
                [
                    ctx.t(
                        "privacy.data.co_author_line",
                        reference=_reference(ctx, i),
                        title=i.title,
                        status=ctx.t(f"initiative.status.{i.status.value}"),
                    )
                    for i in data.co_authored
                ],
            )
        )
    for key, stories in (
        ("privacy.data.stories", data.stories),
        ("privacy.data.stories_about", data.stories_about),
    ):
        if stories or key == "privacy.data.stories":
            sections.append(
                _listing(
                    ctx,
                    key,
                    [
                        ctx.t(
                            "privacy.data.story",
                            subject=s.subject_name,
                            status=ctx.t(f"privacy.data.story_status.{s.status.value}"),
                            time=ctx.local_date(s.created_at),
                            story=s.story,
                        )
                        for s in stories
                    ],
                )
            )
    sections.append(
        _listing(
            ctx,
            "privacy.data.commendations",
            [
                ctx.t(
                    "privacy.data.commendation",
                    title=c.title,
                    time=ctx.local_date(c.created_at),
                    reason=c.reason,
                )
                for c in data.commendations
            ],
        )
    )
    proposed = sum(p.proposer_id == member.id for p in data.pacts)
    sections.append(
        ctx.t("privacy.data.pacts", proposed=proposed, received=len(data.pacts) - proposed)
    )
    if data.works:
        sections.append(
            _listing(
                ctx,
                "privacy.data.works",
                [
                    ctx.t(
                        "privacy.data.work",
                        reference=w.reference,
                        title=w.title,
                        percent=w.progress_percent,
                    )
                    for w in data.works
                ],
            )
        )
    if data.work_updates:
        photos = sum(u.photo is not None for u in data.work_updates)
        sections.append(
            ctx.t("privacy.data.work_updates", count=len(data.work_updates), photos=photos)
        )
    if data.reports:
        sections.append(ctx.t("privacy.data.reports", count=len(data.reports)))
    sections.append(ctx.t("privacy.data.queued", count=len(data.queued)))
    if data.audit:
        lines = [
            ctx.t(
                "privacy.data.audit_line",
                time=ctx.local_time(entry.at),
                action=ctx.t(f"audit.action.{entry.action}")
                if ctx.t.has(f"audit.action.{entry.action}")
                else entry.action,
                subject=f" ({entry.subject})" if entry.subject else "",
            )
            for entry in data.audit
        ]
        heading = ctx.t("privacy.data.audit", total=data.audit_total, shown=len(data.audit))
        sections.append("\n".join([heading, *lines]))
    sections.append(ctx.t("privacy.data.footer"))
    for part in _pack(sections, PART_LIMIT):
        ctx.reply(part)


def _profile(ctx: Context, data: privacy.MemberData) -> str:
    member = data.member
    consent = (
        ctx.t(
            "privacy.data.consent",
            time=ctx.local_time(member.consent_at),
            version=member.consent_version or "?",
        )
        if member.consent_at is not None
        else ctx.t("profile.no_consent")
    )
    text = ctx.t(
        "privacy.data.profile",
        name=member.full_name,
        unit=" › ".join(u.name for u in data.units) or "?",
        role=ctx.t(f"role.{member.role.value}"),
        status=ctx.t(f"status.{member.status.value}"),
        joined=ctx.local_time(member.created_at),
        consent=consent,
    )
    if member.left_at is not None:
        text += "\n" + ctx.t("privacy.data.left", time=ctx.local_time(member.left_at))
    return text


def _commitment(ctx: Context, commitment: Commitment, movement: str) -> str:
    target = (
        ctx.t(
            "privacy.data.commitment_target",
            value=f"{commitment.target_value:g}",
            unit=commitment.target_unit or "",
        )
        if commitment.target_value is not None
        else ""
    )
    note = (
        ctx.t("privacy.data.commitment_note", note=commitment.progress_note)
        if commitment.progress_note
        else ""
    )
    withdrawn = commitment.status == CommitmentStatus.WITHDRAWN
    return ctx.t(
        "privacy.data.commitment",
        reference=commitment.reference,
        movement=movement,
        content=commitment.content,
        target=target,
        percent=commitment.progress_percent,
        note=note,
        status=ctx.t(
            "privacy.data.commitment_withdrawn"
            if withdrawn
            else "privacy.data.commitment_registered"
        ),
        time=ctx.local_date(commitment.created_at),
    )


def _reference(ctx: Context, initiative: Initiative) -> str:
    return initiative.reference or ctx.t("privacy.data.initiative_draft")


def _initiative(ctx: Context, initiative: Initiative) -> str:
    value = (
        ctx.t(
            "privacy.data.initiative_value",
            value=f"{initiative.estimated_value:,}".replace(",", "."),
        )
        if initiative.estimated_value is not None
        else ""
    )
    files = (
        ctx.t("privacy.data.initiative_files", count=len(initiative.attachments))
        if initiative.attachments
        else ""
    )
    none = ctx.t("privacy.none")
    return ctx.t(
        "privacy.data.initiative",
        reference=_reference(ctx, initiative),
        title=initiative.title or none,
        status=ctx.t(f"initiative.status.{initiative.status.value}"),
        value=value,
        files=files,
        problem=initiative.problem or none,
        solution=initiative.solution or none,
        benefit=initiative.benefit or none,
    )


def _listing(ctx: Context, title_key: str, lines: Sequence[str]) -> str:
    title = ctx.t(title_key)
    if not lines:
        return ctx.t("privacy.data.empty", title=title)
    return "\n".join([title, *lines])


def _pack(sections: Sequence[str], limit: int) -> list[str]:
    """Group sections into messages of at most `limit` characters, cutting long ones at lines."""
    pieces: list[str] = []
    for section in sections:
        if len(section) <= limit:
            pieces.append(section)
            continue
        for line in section.split("\n"):
            while len(line) > limit:
                pieces.append(line[:limit])
                line = line[limit:]
            pieces.append(line)
    parts: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current}\n\n{piece}" if current else piece
        if len(candidate) <= limit:
            current = candidate
        else:
            parts.append(current)
            current = piece
    if current:
        parts.append(current)
    return parts


async def start_erase(ctx: Context) -> None:
    """Handle /xoadulieu: say what goes and what stays, and ask to confirm."""
    member = ctx.member
    if member is None or member.erased_at is not None:
        ctx.say("privacy.not_member")
        return
    ctx.enter(FLOW, "erase")
    _ask_erase(ctx, "privacy.erase.explain")


def _ask_erase(ctx: Context, key: str) -> None:
    ctx.say(
        key,
        placeholder=ctx.t("privacy.erased_name"),
        choices=[
            ctx.choice(ctx.t("privacy.erase.confirm"), "yes"),
            ctx.choice(ctx.t("privacy.erase.keep"), "no"),
        ],
    )


async def resume(ctx: Context) -> None:
    """Continue an erasure or a leaving at its current step."""
    step = ctx.conversation.step
    if step == "erase":
        await _confirm_erase(ctx)
    elif step == "leave_search":
        await _leave_search(ctx)
    elif step == "leave_confirm":
        await _leave_confirm(ctx)
    else:
        ctx.leave()
        ctx.say("hint.free_text")


async def _confirm_erase(ctx: Context) -> None:
    member = ctx.member
    if ctx.pressed not in ("yes", "no"):
        _ask_erase(ctx, "privacy.erase.please_choose")
        return
    ctx.leave()
    if ctx.pressed == "no" or member is None:
        ctx.say("privacy.erase.kept")
        return
    await privacy.erase(
        ctx.session,
        member,
        ctx.now,
        placeholders=placeholders(ctx),
        by=member,
        via=ctx.incoming.channel,
    )
    # This account is gone: the next message from it starts as a newcomer's.
    ctx.member = None
    ctx.say("privacy.erase.done")


async def start_leave(ctx: Context) -> None:
    """Handle /roidoan: an officer records that a member of their branch left the union."""
    if not await _may_record_leaving(ctx):
        ctx.say("privacy.leave.officers_only")
        return
    ctx.enter(FLOW, "leave_search")
    ctx.say("privacy.leave.ask_name")


async def _may_record_leaving(ctx: Context) -> bool:
    """Tell whether the sender may record members of their own unit as having left."""
    officer = ctx.active_member
    own = await units.get(ctx.session, officer.unit_id) if officer else None
    return can(officer, Action.RECORD_LEAVE, own, own)


async def _leave_search(ctx: Context) -> None:
    officer = ctx.active_member
    own = await units.get(ctx.session, officer.unit_id) if officer else None
    if officer is None or own is None or not can(officer, Action.RECORD_LEAVE, own, own):
        ctx.leave()
        ctx.say("privacy.leave.officers_only")
        return
    if ctx.pressed is not None:
        await _leave_pick(ctx, ctx.pressed)
        return
    query = clean_line(ctx.text)
    if len(query) < SEARCH_MIN:
        ctx.say("privacy.leave.too_short")
        return
    if len(query) > SEARCH_MAX:
        ctx.say("input.too_long", maximum=SEARCH_MAX, length=len(query))
        return
    found = await find_members(
        ctx.session, own, fold(query[:100]), exclude_id=officer.id, limit=SEARCH_RESULTS
    )
    if not found:
        ctx.say("privacy.leave.none_found", query=query[:100])
        return
    ctx.say(
        "privacy.leave.results",
        choices=[
            ctx.choice(ctx.t("privacy.leave.member", name=m.full_name, unit=u.name), f"m{m.id}")
            for m, u in found
        ],
    )


async def _leave_pick(ctx: Context, value: str) -> None:
    leaver = await _leaver(ctx, value[1:])
    if leaver is None:
        return
    member, unit_name = leaver
    ctx.goto("leave_confirm", member_id=member.id)
    ctx.say(
        "privacy.leave.confirm_prompt",
        name=member.full_name,
        unit=unit_name,
        choices=[
            ctx.choice(ctx.t("privacy.leave.confirm"), "yes"),
            ctx.choice(ctx.t("privacy.leave.cancel"), "no"),
        ],
    )


async def _leaver(ctx: Context, raw_id: str) -> tuple[Member, str] | None:
    """Return the chosen member and their unit's name if the officer may record them leaving."""
    officer = ctx.active_member
    own = await units.get(ctx.session, officer.unit_id) if officer else None
    member = await ctx.session.get(Member, int(raw_id)) if raw_id.isdigit() else None
    unit = await units.get(ctx.session, member.unit_id) if member else None
    if (
        member is None
        or unit is None
        or own is None
        or member.status != MemberStatus.ACTIVE
        or not can(officer, Action.RECORD_LEAVE, unit, own)
    ):
        ctx.leave()
        ctx.say("privacy.leave.gone")
        return None
    return member, unit.name


async def _leave_confirm(ctx: Context) -> None:
    member_id = str(ctx.conversation.data.get("member_id", ""))
    if ctx.pressed not in ("yes", "no"):
        await _leave_pick(ctx, f"m{member_id}")
        return
    if ctx.pressed == "no":
        ctx.leave()
        ctx.say("privacy.leave.cancelled")
        return
    leaver = await _leaver(ctx, member_id)
    if leaver is None:
        return
    member, unit_name = leaver
    ctx.leave()
    await privacy.mark_left(
        ctx.session, member, now=ctx.now, by=ctx.active_member, via=ctx.incoming.channel
    )
    ctx.say("privacy.leave.done", name=member.full_name)
    await ctx.notify(member.id, Reply(ctx.t("privacy.leave.notice", unit=unit_name)))
