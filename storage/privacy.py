"""Members' data rights (Decree 13/2023/NĐ-CP): what is stored about a member, and erasing it.

Erasure anonymises rather than deletes the rows that feed the unit's figures (commitments,
initiatives, commendations, progress), so the unit's counts stay what they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.models import (
    AppState,
    AuditEntry,
    ChannelAccount,
    Commendation,
    Commitment,
    CongressWork,
    CongressWorkUpdate,
    Conversation,
    InboundUpdate,
    Initiative,
    Member,
    MemberStatus,
    Movement,
    OutboxMessage,
    OutboxStatus,
    Pact,
    ReportSubmission,
    Story,
    Unit,
)
from storage.text import fold

ERASE_ACTION = "member.erase"
LEAVE_ACTION = "member.leave"
# The keys under which /lienket keeps a member's pending code and an account's wrong tries
# (storage.links): they name the member and the account.
_LINK_MEMBER_KEY = "link-member:{}"
_LINK_CODE_KEY = "link:{}"
_LINK_TRIES_KEY = "link-tries:{}"
# Where a messenger's raw update names its sender (Telegram, Zalo bot, Zalo OA).
_SENDER_KEYS = frozenset({"from", "sender", "user", "chat"})
AUDIT_SHOWN = 50


@dataclass(frozen=True, slots=True)
class Placeholders:
    """What erased personal data is replaced by: texts of the caller's catalogue."""

    name: str
    text: str


@dataclass(slots=True)
class MemberData:
    """Everything stored about one member, for /dulieu."""

    member: Member
    units: Sequence[Unit]  # the member's unit and those above it, the top first
    accounts: Sequence[ChannelAccount]
    commitments: Sequence[tuple[Commitment, str]]  # with the movement's name
    initiatives: Sequence[Initiative]  # as author
    co_authored: Sequence[Initiative]
    stories: Sequence[Story]  # nominated by them
    stories_about: Sequence[Story]  # nominating them
    commendations: Sequence[Commendation]
    pacts: Sequence[Pact]  # proposed by them or to them
    works: Sequence[CongressWork]  # registered by them for their unit
    work_updates: Sequence[CongressWorkUpdate]
    reports: Sequence[ReportSubmission]  # upward reports they sent
    queued: Sequence[OutboxMessage]  # messages to them not yet delivered
    audit: Sequence[AuditEntry] = field(default_factory=list)  # their own actions, newest first
    audit_total: int = 0


@dataclass(frozen=True, slots=True)
class Erasure:
    """What one erasure changed, in numbers (no personal data: it goes in the audit log)."""

    accounts: int = 0
    messages: int = 0
    inbound: int = 0
    texts: int = 0
    files: int = 0

    def detail(self) -> dict[str, Any]:
        return {
            "accounts": self.accounts,
            "messages": self.messages,
            "inbound": self.inbound,
            "texts": self.texts,
            "files": self.files,
        }


async def everything_about(session: AsyncSession, member: Member) -> MemberData:
    """Collect what is stored about a member, across every table that refers to them."""
    unit = await session.get(Unit, member.unit_id)
    units: list[Unit] = []
    if unit is not None:
        ids = [int(part) for part in unit.path.strip("/").split("/")]
        found = await session.scalars(select(Unit).where(Unit.id.in_(ids)).order_by(Unit.depth))
        units = list(found.all())
    accounts = (
        await session.scalars(
            select(ChannelAccount)
            .where(ChannelAccount.member_id == member.id)
            .order_by(ChannelAccount.id)
        )
    ).all()
    commitments = (
        await session.execute(
            select(Commitment, Movement.name)
            .join(Movement, Movement.id == Commitment.movement_id)
            .where(Commitment.author_id == member.id)
            .order_by(Commitment.created_at, Commitment.id)
        )
    ).all()
    initiatives = (
        await session.scalars(
            select(Initiative)
            .where(Initiative.author_id == member.id)
            .order_by(Initiative.created_at, Initiative.id)
        )
    ).all()
    stories = await _all(session, select(Story).where(Story.author_id == member.id), Story)
    stories_about = await _all(
        session,
        select(Story).where(Story.subject_member_id == member.id, Story.author_id != member.id),
        Story,
    )
    commendations = await _all(
        session, select(Commendation).where(Commendation.member_id == member.id), Commendation
    )
    pacts = await _all(
        session,
        select(Pact).where(
            or_(Pact.proposer_id == member.id, Pact.counterpart_member_id == member.id)
        ),
        Pact,
    )
    works = await _all(
        session,
        select(CongressWork).where(CongressWork.registered_by_id == member.id),
        CongressWork,
    )
    work_updates = await _all(
        session,
        select(CongressWorkUpdate).where(CongressWorkUpdate.author_id == member.id),
        CongressWorkUpdate,
    )
    reports = (
        await session.scalars(
            select(ReportSubmission)
            .where(ReportSubmission.submitted_by_id == member.id)
            .order_by(ReportSubmission.submitted_at)
        )
    ).all()
    queued: Sequence[OutboxMessage] = []
    if accounts:
        queued = (
            await session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.account_id.in_([a.id for a in accounts]),
                    OutboxMessage.status == OutboxStatus.PENDING,
                )
                .order_by(OutboxMessage.id)
            )
        ).all()
    actions = (
        await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.actor_id == member.id)
            .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
            .limit(AUDIT_SHOWN)
        )
    ).all()
    total = len(actions)
    if total == AUDIT_SHOWN:
        total = len(
            (
                await session.scalars(select(AuditEntry.id).where(AuditEntry.actor_id == member.id))
            ).all()
        )
    return MemberData(
        member=member,
        units=units,
        accounts=accounts,
        commitments=[(c, name) for c, name in commitments],
        initiatives=initiatives,
        co_authored=await _co_authored(session, member.id),
        stories=stories,
        stories_about=stories_about,
        commendations=commendations,
        pacts=pacts,
        works=works,
        work_updates=work_updates,
        reports=reports,
        queued=queued,
        audit=actions,
        audit_total=total,
    )


async def _all(session: AsyncSession, statement: Any, model: Any) -> Sequence[Any]:
    return (await session.scalars(statement.order_by(model.created_at, model.id))).all()


async def _co_authored(session: AsyncSession, member_id: int) -> list[Initiative]:
    # A JSON list of ids: the text match narrows, the exact test decides (portable).
    candidates = await session.scalars(
        select(Initiative)
        .where(cast(Initiative.co_author_ids, Text).contains(str(member_id)))
        .order_by(Initiative.created_at, Initiative.id)
    )
    return [i for i in candidates.all() if member_id in (i.co_author_ids or [])]


async def mark_left(
    session: AsyncSession, member: Member, *, now: datetime, by: Member | None, via: str
) -> None:
    """Record that a member left the union: they stop counting and the retention period starts."""
    member.status = MemberStatus.LEFT
    member.left_at = now
    audit.record(
        session,
        now=now,
        actor=by,
        via=via,
        action=LEAVE_ACTION,
        unit_id=member.unit_id,
        subject=f"member:{member.id}",
    )


async def erase(
    session: AsyncSession,
    member: Member,
    now: datetime,
    *,
    placeholders: Placeholders,
    by: Member | None,
    via: str,
) -> Erasure:
    """Anonymise a member: name, messenger accounts and their traces, texts they wrote, files.

    Rows that feed counts stay, anonymous; the erasure is audited without personal data.
    `by` is who asked (the member themselves), None when the retention period ran out.
    """
    accounts, messages, inbound = await _forget_accounts(session, member.id)
    texts, files = await _blank_texts(session, member.id, placeholders)
    member.full_name = placeholders.name
    member.name_folded = fold(placeholders.name)
    member.erased_at = now
    erasure = Erasure(accounts, messages, inbound, texts, files)
    audit.record(
        session,
        now=now,
        actor=by,
        via=via,
        action=ERASE_ACTION,
        unit_id=member.unit_id,
        subject=f"member:{member.id}",
        detail={"reason": "request" if by is not None else "retention", **erasure.detail()},
    )
    return erasure


async def _forget_accounts(session: AsyncSession, member_id: int) -> tuple[int, int, int]:
    """Delete the member's accounts and what is kept per account; return the counts."""
    owned = (
        await session.scalars(select(ChannelAccount).where(ChannelAccount.member_id == member_id))
    ).all()
    code = (
        await session.scalars(
            select(AppState.value).where(AppState.key == _LINK_MEMBER_KEY.format(member_id))
        )
    ).first()
    keys = [_LINK_MEMBER_KEY.format(member_id)] + ([_LINK_CODE_KEY.format(code)] if code else [])
    keys += [_LINK_TRIES_KEY.format(account.id) for account in owned]
    await session.execute(delete(AppState).where(AppState.key.in_(keys)))
    if not owned:
        return 0, 0, 0
    ids = [account.id for account in owned]
    # Messages of their own (payload) go; broadcast rows hold only the account id, and their
    # broadcast's figures count them, so they stay, pointing at an account that is gone.
    removed = await session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.account_id.in_(ids), OutboxMessage.payload.is_not(None)
        )
    )
    inbound = 0
    for account in owned:
        inbound += await _forget_inbound(session, account)
    # The ORM's delete, not a bulk one: the incoming message's own account and conversation
    # are loaded in this session and the dispatcher still touches them. Conversations first:
    # the database would cascade them away from under the ORM's own delete.
    for account in owned:
        conversation = await session.get(Conversation, account.id)
        if conversation is not None:
            await session.delete(conversation)
    await session.flush()
    for account in owned:
        await session.delete(account)
    await session.flush()
    return len(owned), int(getattr(removed, "rowcount", 0) or 0), inbound


async def _forget_inbound(session: AsyncSession, account: ChannelAccount) -> int:
    """Drop the stored raw payloads of updates the account sent; the dedup keys stay."""
    candidates = await session.execute(
        select(InboundUpdate.id, InboundUpdate.payload).where(
            InboundUpdate.channel == account.channel,
            InboundUpdate.payload.is_not(None),
            cast(InboundUpdate.payload, Text).contains(account.external_id),
        )
    )
    ids = [row.id for row in candidates if _sent_by(row.payload, account.external_id)]
    if ids:
        await session.execute(
            update(InboundUpdate).where(InboundUpdate.id.in_(ids)).values(payload=None)
        )
    return len(ids)


def _sent_by(payload: Any, external_id: str) -> bool:
    """Tell whether a raw update names `external_id` as its sender or chat, at any depth."""
    if isinstance(payload, dict):
        for key, value in payload.items():
            if (
                key in _SENDER_KEYS
                and isinstance(value, dict)
                and str(value.get("id")) == external_id
            ):
                return True
            if _sent_by(value, external_id):
                return True
    elif isinstance(payload, list):
        return any(_sent_by(item, external_id) for item in payload)
    return False


async def _blank_texts(
    session: AsyncSession, member_id: int, placeholders: Placeholders
) -> tuple[int, int]:
    """Replace the free texts they wrote (or that are about them) and drop their files."""
    blank = placeholders.text
    texts = files = 0
    for initiative in (
        await session.scalars(select(Initiative).where(Initiative.author_id == member_id))
    ).all():
        initiative.title = blank
        initiative.title_folded = fold(blank)
        initiative.problem = initiative.solution = initiative.benefit = blank
        files += len(initiative.attachments or [])
        initiative.attachments = []
        texts += 1
    for commitment in (
        await session.scalars(select(Commitment).where(Commitment.author_id == member_id))
    ).all():
        commitment.content = blank
        if commitment.progress_note:
            commitment.progress_note = blank
        texts += 1
    for story in (
        await session.scalars(
            select(Story).where(
                or_(Story.author_id == member_id, Story.subject_member_id == member_id)
            )
        )
    ).all():
        story.story = blank
        if story.subject_member_id == member_id:
            story.subject_name = placeholders.name
        files += len(story.photos or [])
        story.photos = []
        texts += 1
    for commendation in (
        await session.scalars(select(Commendation).where(Commendation.member_id == member_id))
    ).all():
        commendation.reason = blank  # written about them
        texts += 1
    for note in (
        await session.scalars(
            select(CongressWorkUpdate).where(CongressWorkUpdate.author_id == member_id)
        )
    ).all():
        note.note = blank
        files += note.photo is not None
        note.photo = None
        texts += 1
    return texts, files


async def left_before(
    session: AsyncSession, cutoff: datetime, *, limit: int = 100
) -> Sequence[Member]:
    """Return members who left before `cutoff` and are not erased yet, oldest first."""
    statement = (
        select(Member)
        .where(
            Member.status == MemberStatus.LEFT,
            Member.left_at < cutoff,
            Member.erased_at.is_(None),
        )
        .order_by(Member.left_at, Member.id)
        # A few at a time: each tick takes the next ones, in a transaction of modest size.
        .limit(limit)
    )
    return (await session.scalars(statement)).all()
