"""The database schema as SQLAlchemy 2 mapped classes."""

from __future__ import annotations

import enum
from datetime import datetime
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
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.base import Base, PathString

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    """Store an enum as its value in a VARCHAR with a CHECK, portable across databases."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
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


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    UNREACHABLE = "unreachable"


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
    """A message waiting to be pushed to an account, or the record that it was."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("channel_accounts.id", ondelete="CASCADE"), index=True
    )
    payload: Mapped[dict[str, Any]]
    status: Mapped[OutboxStatus] = mapped_column(
        _enum(OutboxStatus, "outbox_status"), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "status", "id"),)


class AppState(Base):
    """Small facts the bot learns at run time, such as its own username."""

    __tablename__ = "app_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
