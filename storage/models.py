"""The database schema as SQLAlchemy 2 mapped classes."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.base import Base, JSONType, PathString

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    """Store an enum as its value in a VARCHAR with a CHECK, portable across databases."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=max(16, *(len(m.value) for m in cls)),
        values_callable=lambda members: [m.value for m in members],
    )


class UnitKind(enum.StrEnum):
    PROVINCE = "province"
    UPPER = "upper"
    GRASSROOTS = "grassroots"


class Sector(enum.StrEnum):
    ENTERPRISE = "enterprise"
    ADMINISTRATIVE = "administrative"


class Role(enum.StrEnum):
    MEMBER = "member"
    OFFICER = "officer"
    ADMIN = "admin"


class MemberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    REJECTED = "rejected"
    LEFT = "left"  # left the union; erased after the retention period


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    CANCELLED = "cancelled"


class Unit(Base):
    """A union unit; `path` ("/1/4/17/") makes subtree questions one index range scan."""

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    name_folded: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[UnitKind] = mapped_column(_enum(UnitKind, "unit_kind"))
    sector: Mapped[Sector | None] = mapped_column(_enum(Sector, "sector"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"))
    path: Mapped[str] = mapped_column(PathString, unique=True)
    depth: Mapped[int] = mapped_column(Integer, default=0)
    # The emulation cluster (khối / cụm thi đua) the unit competes in, from the units file.
    cluster: Mapped[str | None] = mapped_column(String(64), index=True)
    # The Telegram channel or group where the unit's approved stories are published.
    publish_chat: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    parent: Mapped[Unit | None] = relationship(remote_side=[id], lazy="raise")

    __table_args__ = (Index(None, "parent_id"),)


class Member(Base):
    """A union member (or officer) belonging to one unit."""

    __tablename__ = "members"

    id: Mapped[int] = mapped_column(primary_key=True)
    full_name: Mapped[str] = mapped_column(String(100))
    name_folded: Mapped[str] = mapped_column(String(100), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"), default=Role.MEMBER)
    status: Mapped[MemberStatus] = mapped_column(
        _enum(MemberStatus, "member_status"), default=MemberStatus.ACTIVE
    )
    consent_at: Mapped[datetime | None]
    consent_version: Mapped[str | None] = mapped_column(String(16))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    created_at: Mapped[datetime]
    # When an officer recorded that the member left the union: the retention period starts.
    left_at: Mapped[datetime | None] = mapped_column(index=True)
    # When their personal data was erased (on request, or at the end of the retention period).
    erased_at: Mapped[datetime | None]

    unit: Mapped[Unit] = relationship(lazy="raise")


class ChannelAccount(Base):
    """One messenger identity; a member may have several, a newcomer none yet."""

    __tablename__ = "channel_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("members.id", ondelete="SET NULL"), index=True
    )
    display_name: Mapped[str | None] = mapped_column(String(128))
    reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    # The member's choice of the channel that gets reminders and announcements (/lienket).
    preferred: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[datetime]
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("channel", "external_id"),)


class Invitation(Base):
    """A code that lets whoever holds it join a unit with a role."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    expires_at: Mapped[datetime]
    uses_left: Mapped[int] = mapped_column(Integer)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    created_at: Mapped[datetime]


class Conversation(Base):
    """Where an account stands in a multi-step flow, and the choices it was last shown."""

    __tablename__ = "conversations"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("channel_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    flow: Mapped[str | None] = mapped_column(String(32))
    step: Mapped[str | None] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Changes at every step, and choice buttons carry it: a stale or forged press is recognised.
    nonce: Mapped[str] = mapped_column(String(8), default="")
    # The last numbered menu shown on a channel without buttons: [[label, data], ...].
    menu: Mapped[dict[str, Any] | None]
    updated_at: Mapped[datetime]


class InboundUpdate(Base):
    """An update received from a messenger; the unique key makes handling at-most-once."""

    __tablename__ = "inbound_updates"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    update_key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any] | None]
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None] = mapped_column(index=True)
    error_ref: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (UniqueConstraint("channel", "update_key"),)


class OutboxMessage(Base):
    """A message waiting to be pushed to an account, or the record of what became of it.

    Broadcast rows carry no payload of their own: they share their broadcast's.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign keys on purpose: checking them per row doubled the time to queue a large
    # broadcast. A row whose account or broadcast is gone is failed when claimed.
    account_id: Mapped[int] = mapped_column(Integer, index=True)
    channel: Mapped[str] = mapped_column(String(16))
    broadcast_id: Mapped[int | None] = mapped_column(Integer, index=True)
    payload: Mapped[dict[str, Any] | None]
    status: Mapped[OutboxStatus] = mapped_column(
        _enum(OutboxStatus, "outbox_status"), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Parts (text pieces, then attachments) already delivered: a retry resumes after them.
    parts_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    # Not to be sent before this moment: a retry's backoff.
    not_before: Mapped[datetime | None]
    # Which process is sending it, and until when that claim holds if the process dies.
    claimed_by: Mapped[str | None] = mapped_column(String(40))
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        # Only pending rows are ever claimed; a partial index keeps the claim scan small.
        Index(
            "ix_outbox_pending",
            "channel",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )


class BroadcastStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    CANCELLED = "cancelled"


class Broadcast(Base):
    """An announcement to an audience within a subtree: an officer's, or the scheduler's."""

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(primary_key=True)
    # None for the bot's own announcements (milestones, reminders), which `origin` names.
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("members.id", ondelete="RESTRICT"), index=True
    )
    origin: Mapped[str | None] = mapped_column(String(200))
    # The author's unit when composing: the audience never reaches beyond it.
    scope_unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"))
    payload: Mapped[dict[str, Any]]
    audience: Mapped[dict[str, Any]]
    status: Mapped[BroadcastStatus] = mapped_column(_enum(BroadcastStatus, "broadcast_status"))
    scheduled_for: Mapped[datetime | None] = mapped_column(index=True)
    queued_at: Mapped[datetime | None]
    # When nothing was left to send and the author was given the report.
    finished_at: Mapped[datetime | None]
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]


class InitiativeStatus(enum.StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    CHANGES_REQUESTED = "changes_requested"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class Initiative(Base):
    """An initiative or technical improvement (sáng kiến, cải tiến kỹ thuật) of a member."""

    __tablename__ = "initiatives"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str | None] = mapped_column(String(32), unique=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    title_folded: Mapped[str] = mapped_column(String(200), default="")
    problem: Mapped[str] = mapped_column(Text, default="")
    solution: Mapped[str] = mapped_column(Text, default="")
    benefit: Mapped[str] = mapped_column(Text, default="")
    estimated_value: Mapped[int | None] = mapped_column(BigInteger)
    field: Mapped[str | None] = mapped_column(String(100))
    co_author_ids: Mapped[list[int]] = mapped_column(JSONType, default=list)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    status: Mapped[InitiativeStatus] = mapped_column(
        _enum(InitiativeStatus, "initiative_status"), default=InitiativeStatus.DRAFT
    )
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    review_note: Mapped[str | None] = mapped_column(Text)
    recognised_value: Mapped[int | None] = mapped_column(BigInteger)
    recognised_level: Mapped[str | None] = mapped_column(String(16))
    submitted_at: Mapped[datetime | None]
    reviewed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_initiatives_campaign_author", "campaign_id", "author_id"),
        # The progress roll-up and the weekly trend count from this index alone, not the table.
        Index(
            "ix_initiatives_campaign_status_unit",
            "campaign_id",
            "status",
            "unit_id",
            "reviewed_at",
        ),
    )


class AppState(Base):
    """Small facts the bot learns at run time, such as its own username."""

    __tablename__ = "app_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class MovementKind(enum.StrEnum):
    MOVEMENT = "movement"  # phong trào thi đua
    PROGRAMME = "programme"  # chương trình, e.g. "01 triệu sáng kiến"
    DRIVE = "drive"  # cuộc vận động
    CONTEST = "contest"  # hội thi


class MilestoneKind(enum.StrEnum):
    COMMEMORATION = "commemoration"
    DEADLINE = "deadline"
    PHASE_START = "phase_start"
    PHASE_END = "phase_end"
    CONGRESS = "congress"


class DeadlineKind(enum.StrEnum):
    COMMITMENT_REGISTRATION = "commitment_registration"
    CONGRESS_WORK_REGISTRATION = "congress_work_registration"
    REPORT = "report"


class Audience(enum.StrEnum):
    MEMBERS = "members"
    GRASSROOTS_OFFICERS = "grassroots_officers"
    OFFICERS = "officers"


class CommitmentKind(enum.StrEnum):
    INDIVIDUAL = "individual"
    COLLECTIVE = "collective"


class CommitmentStatus(enum.StrEnum):
    REGISTERED = "registered"
    WITHDRAWN = "withdrawn"


class PactStatus(enum.StrEnum):
    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


class WorkStatus(enum.StrEnum):
    REGISTERED = "registered"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class Campaign(Base):
    """A yearly emulation campaign, as its plan describes it; dates are local calendar days."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    year: Mapped[int] = mapped_column(Integer)
    root_unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"))
    starts_on: Mapped[date]
    ends_on: Mapped[date]
    description: Mapped[str] = mapped_column(Text, default="")
    # Options from the campaign file: late registration, pact expiry, initiative fields...
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Movement(Base):
    """A movement, programme, drive or contest members can commit to."""

    __tablename__ = "movements"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(32))
    kind: Mapped[MovementKind] = mapped_column(_enum(MovementKind, "movement_kind"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    # Sectors it is aimed at; empty means everyone.
    sectors: Mapped[list[str]] = mapped_column(JSONType, default=list)
    position: Mapped[int] = mapped_column(Integer, default=0)
    # Dropped from the file on a re-import: kept for the commitments that refer to it.
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (UniqueConstraint("campaign_id", "code"),)


class Phase(Base):
    """A phase (đợt thi đua) of a campaign."""

    __tablename__ = "phases"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(32))
    number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    starts_on: Mapped[date]
    ends_on: Mapped[date]
    focus: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (UniqueConstraint("campaign_id", "code"),)


class Milestone(Base):
    """A day the campaign builds toward, announced on the day and ahead of it."""

    __tablename__ = "milestones"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(32))
    kind: Mapped[MilestoneKind] = mapped_column(_enum(MilestoneKind, "milestone_kind"))
    falls_on: Mapped[date]
    # Local time of day of the announcement, "HH:MM".
    announce_at: Mapped[str] = mapped_column(String(5), default="08:00")
    title: Mapped[str] = mapped_column(String(255))
    announcement: Mapped[str] = mapped_column(Text, default="")
    # Days before `falls_on` when it is announced ahead, e.g. [7, 1].
    notice_days: Mapped[list[int]] = mapped_column(JSONType, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (UniqueConstraint("campaign_id", "code"),)


class Deadline(Base):
    """Something due by a local calendar day; due means by 23:59 of that day, local time."""

    __tablename__ = "deadlines"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(32))
    kind: Mapped[DeadlineKind] = mapped_column(_enum(DeadlineKind, "deadline_kind"))
    title: Mapped[str] = mapped_column(String(255))
    due_on: Mapped[date]
    audience: Mapped[Audience] = mapped_column(_enum(Audience, "audience"))
    # Days before `due_on` when those who have not acted are reminded.
    reminder_days: Mapped[list[int]] = mapped_column(JSONType, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (UniqueConstraint("campaign_id", "code"),)


class Counter(Base):
    """A named sequence, for human references such as DK-2023-000123."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class Commitment(Base):
    """An emulation commitment (đăng ký thi đua) of a member or of a unit."""

    __tablename__ = "commitments"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    movement_id: Mapped[int] = mapped_column(ForeignKey("movements.id", ondelete="RESTRICT"))
    kind: Mapped[CommitmentKind] = mapped_column(_enum(CommitmentKind, "commitment_kind"))
    author_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"))
    # The member's unit for an individual commitment, the committing unit for a collective one.
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    content: Mapped[str] = mapped_column(Text)
    target_value: Mapped[float | None]
    target_unit: Mapped[str | None] = mapped_column(String(32))
    progress_percent: Mapped[int] = mapped_column(Integer, default=0)
    progress_note: Mapped[str | None] = mapped_column(Text)
    status: Mapped[CommitmentStatus] = mapped_column(
        _enum(CommitmentStatus, "commitment_status"), default=CommitmentStatus.REGISTERED
    )
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index(None, "campaign_id", "author_id"),)


class Pact(Base):
    """A pact (giao ước thi đua) proposed with a commitment to a counterpart."""

    __tablename__ = "pacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    commitment_id: Mapped[int] = mapped_column(
        ForeignKey("commitments.id", ondelete="CASCADE"), index=True
    )
    proposer_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"))
    counterpart_unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("units.id", ondelete="RESTRICT"), index=True
    )
    counterpart_member_id: Mapped[int | None] = mapped_column(
        ForeignKey("members.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[PactStatus] = mapped_column(
        _enum(PactStatus, "pact_status"), default=PactStatus.PROPOSED
    )
    expires_at: Mapped[datetime] = mapped_column(index=True)
    responded_by_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    responded_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class CongressWork(Base):
    """A work, product or task (công trình, sản phẩm, phần việc) of a CĐCS for the congresses."""

    __tablename__ = "congress_works"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"))
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[WorkStatus] = mapped_column(
        _enum(WorkStatus, "work_status"), default=WorkStatus.REGISTERED
    )
    progress_percent: Mapped[int] = mapped_column(Integer, default=0)
    registered_by_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"))
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    # "Each CĐCS one work or product": the database keeps it to one.
    __table_args__ = (UniqueConstraint("campaign_id", "unit_id"),)


class CongressWorkUpdate(Base):
    """A progress note on a congress work, with an optional photo as evidence."""

    __tablename__ = "congress_work_updates"

    id: Mapped[int] = mapped_column(primary_key=True)
    work_id: Mapped[int] = mapped_column(
        ForeignKey("congress_works.id", ondelete="CASCADE"), index=True
    )
    author_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"))
    status: Mapped[WorkStatus] = mapped_column(_enum(WorkStatus, "work_status"))
    progress_percent: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    photo: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]


class RunStatus(enum.StrEnum):
    DONE = "done"
    SKIPPED = "skipped"


class ScheduleRun(Base):
    """A scheduled run that happened or was skipped; its key makes every run happen once."""

    __tablename__ = "schedule_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    # For example "deadline:12:T-3@2023-03-15": what, and for which date.
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[RunStatus] = mapped_column(_enum(RunStatus, "run_status"))
    due_at: Mapped[datetime]
    ran_at: Mapped[datetime]
    messages: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str] = mapped_column(Text, default="")


class Target(Base):
    """A number a unit is to reach in a campaign (chỉ tiêu), per metric such as "initiatives"."""

    __tablename__ = "targets"

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    # A plain name rather than a CHECKed enum: a new metric needs no migration.
    metric: Mapped[str] = mapped_column(String(32))
    value: Mapped[int] = mapped_column(BigInteger)
    # Who set it in a chat; None when it came from an imported file.
    set_by_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("unit_id", "campaign_id", "metric"),)


class Commendation(Base):
    """A commendation (khen thưởng, biểu dương) of a member or of a unit, recorded by an officer."""

    __tablename__ = "commendations"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    phase_id: Mapped[int | None] = mapped_column(ForeignKey("phases.id", ondelete="SET NULL"))
    # The member commended, or None when the unit itself is.
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("members.id", ondelete="RESTRICT"), index=True
    )
    # The unit commended, or the member's unit: where the commendation counts.
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    title: Mapped[str] = mapped_column(String(100))  # e.g. Lao động giỏi, Giấy khen
    reason: Mapped[str] = mapped_column(Text)
    awarded_by_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime]


class StoryStatus(enum.StrEnum):
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"


class Story(Base):
    """An exemplar (điển hình tiên tiến, người tốt việc tốt) a member nominates with a story."""

    __tablename__ = "stories"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    author_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"))
    # The subtree it belongs to: the nominee's unit; its officers approve it.
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    # A person (optionally a known member) or a collective, named as the nominator wrote it.
    collective: Mapped[bool] = mapped_column(Boolean, default=False)
    subject_member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    subject_name: Mapped[str] = mapped_column(String(200))
    story: Mapped[str] = mapped_column(Text)
    photos: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    status: Mapped[StoryStatus] = mapped_column(
        _enum(StoryStatus, "story_status"), default=StoryStatus.SUBMITTED
    )
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    review_note: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None]
    published_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_stories_campaign_status", "campaign_id", "status"),)


class ReportSubmission(Base):
    """A unit's upward report (báo cáo kết quả) for a report deadline of the campaign."""

    __tablename__ = "report_submissions"

    id: Mapped[int] = mapped_column(primary_key=True)
    deadline_id: Mapped[int] = mapped_column(ForeignKey("deadlines.id", ondelete="CASCADE"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    submitted_by_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"))
    # The figures of the period as the form showed them, frozen at submission.
    figures: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    highlights: Mapped[str] = mapped_column(Text, default="")
    submitted_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("deadline_id", "unit_id"),)


class AuditEntry(Base):
    """One officer's or admin's action: who, what, when, on which unit."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    # None for the command line and the bot's own doings; SET NULL keeps the entry.
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("members.id", ondelete="SET NULL"), index=True
    )
    # The channel the action came from ("telegram", "zalo", "console") or "cli".
    via: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(40))
    unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("units.id", ondelete="SET NULL"), index=True
    )
    # What was acted on, as "kind:id" (e.g. "initiative:12"), when it is one thing.
    subject: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
