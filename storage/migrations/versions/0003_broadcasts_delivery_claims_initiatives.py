"""broadcasts, delivery claims, initiatives

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 05:51:40.458737
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.base

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "broadcasts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("scope_unit_id", sa.Integer(), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "audience",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "scheduled",
                "queued",
                "cancelled",
                name="broadcast_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("scheduled_for", storage.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("queued_at", storage.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", storage.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("created_at", storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["members.id"],
            name=op.f("fk_broadcasts_author_id_members"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["scope_unit_id"],
            ["units.id"],
            name=op.f("fk_broadcasts_scope_unit_id_units"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcasts")),
    )
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_broadcasts_author_id"), ["author_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_broadcasts_scheduled_for"), ["scheduled_for"], unique=False
        )

    op.create_table(
        "initiatives",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=32), nullable=True),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("title_folded", sa.String(length=200), nullable=False),
        sa.Column("problem", sa.Text(), nullable=False),
        sa.Column("solution", sa.Text(), nullable=False),
        sa.Column("benefit", sa.Text(), nullable=False),
        sa.Column("estimated_value", sa.BigInteger(), nullable=True),
        sa.Column("field", sa.String(length=100), nullable=True),
        sa.Column(
            "co_author_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "attachments",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "submitted",
                "changes_requested",
                "accepted",
                "rejected",
                name="initiative_status",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("reviewer_id", sa.Integer(), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=True),
        sa.Column("recognised_value", sa.BigInteger(), nullable=True),
        sa.Column("recognised_level", sa.String(length=16), nullable=True),
        sa.Column("submitted_at", storage.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reviewed_at", storage.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["members.id"],
            name=op.f("fk_initiatives_author_id_members"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_initiatives_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"], ["members.id"], name=op.f("fk_initiatives_reviewer_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"],
            ["units.id"],
            name=op.f("fk_initiatives_unit_id_units"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_initiatives")),
        sa.UniqueConstraint("reference", name=op.f("uq_initiatives_reference")),
    )
    with op.batch_alter_table("initiatives", schema=None) as batch_op:
        batch_op.create_index(
            "ix_initiatives_campaign_author", ["campaign_id", "author_id"], unique=False
        )
        batch_op.create_index(
            "ix_initiatives_campaign_status", ["campaign_id", "status"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_initiatives_unit_id"), ["unit_id"], unique=False)

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("channel", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("broadcast_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("not_before", storage.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=40), nullable=True))
        batch_op.add_column(
            sa.Column("parts_done", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("claimed_until", storage.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.alter_column("payload", existing_type=JSON_TYPE, nullable=True)
        batch_op.drop_index(batch_op.f("ix_outbox_status"))
        batch_op.create_index(batch_op.f("ix_outbox_broadcast_id"), ["broadcast_id"], unique=False)
        batch_op.create_index(
            "ix_outbox_pending",
            ["channel", "id"],
            unique=False,
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_broadcast_id_broadcasts"),
            "broadcasts",
            ["broadcast_id"],
            ["id"],
            ondelete="CASCADE",
        )
    # Messages queued before this migration take their account's channel.
    op.execute(
        "UPDATE outbox SET channel = "
        "(SELECT channel FROM channel_accounts WHERE channel_accounts.id = outbox.account_id)"
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("channel", existing_type=sa.String(length=16), nullable=False)
        # A cancelled broadcast leaves its unsent messages cancelled: the CHECK must allow it.
        batch_op.drop_constraint(batch_op.f("ck_outbox_outbox_status"), type_="check")
        batch_op.create_check_constraint(
            "outbox_status", "status IN ('pending', 'sent', 'failed', 'unreachable', 'cancelled')"
        )


def downgrade() -> None:

    op.execute("DELETE FROM outbox WHERE status = 'cancelled' OR broadcast_id IS NOT NULL")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_outbox_outbox_status"), type_="check")
        batch_op.create_check_constraint(
            "outbox_status", "status IN ('pending', 'sent', 'failed', 'unreachable')"
        )
        batch_op.drop_column("parts_done")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_outbox_broadcast_id_broadcasts"), type_="foreignkey"
        )
        batch_op.drop_index(
            "ix_outbox_pending",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        )
        batch_op.drop_index(batch_op.f("ix_outbox_broadcast_id"))
        batch_op.create_index(batch_op.f("ix_outbox_status"), ["status", "id"], unique=False)
        batch_op.alter_column("payload", existing_type=JSON_TYPE, nullable=False)
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("claimed_by")
        batch_op.drop_column("not_before")
        batch_op.drop_column("broadcast_id")
        batch_op.drop_column("channel")

    with op.batch_alter_table("initiatives", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_initiatives_unit_id"))
        batch_op.drop_index("ix_initiatives_campaign_status")
        batch_op.drop_index("ix_initiatives_campaign_author")

    op.drop_table("initiatives")
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_broadcasts_scheduled_for"))
        batch_op.drop_index(batch_op.f("ix_broadcasts_author_id"))

    op.drop_table("broadcasts")
