"""clusters, publishing chats, commendations, stories, upward reports

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.base

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TIME = storage.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("channel_accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("preferred", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # ix_initiatives_campaign_status_unit (0005) starts with the same columns.
    with op.batch_alter_table("initiatives", schema=None) as batch_op:
        batch_op.drop_index("ix_initiatives_campaign_status")
    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cluster", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("publish_chat", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_units_cluster"), ["cluster"], unique=False)

    op.create_table(
        "commendations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("phase_id", sa.Integer(), nullable=True),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("awarded_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["awarded_by_id"],
            ["members.id"],
            name=op.f("fk_commendations_awarded_by_id_members"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_commendations_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_commendations_member_id_members"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["phase_id"],
            ["phases.id"],
            name=op.f("fk_commendations_phase_id_phases"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"],
            ["units.id"],
            name=op.f("fk_commendations_unit_id_units"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commendations")),
    )
    with op.batch_alter_table("commendations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_commendations_campaign_id"), ["campaign_id"])
        batch_op.create_index(batch_op.f("ix_commendations_member_id"), ["member_id"])
        batch_op.create_index(batch_op.f("ix_commendations_unit_id"), ["unit_id"])

    op.create_table(
        "stories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("collective", sa.Boolean(), nullable=False),
        sa.Column("subject_member_id", sa.Integer(), nullable=True),
        sa.Column("subject_name", sa.String(length=200), nullable=False),
        sa.Column("story", sa.Text(), nullable=False),
        sa.Column("photos", JSON_TYPE, nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "submitted",
                "approved",
                "rejected",
                name="story_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("reviewer_id", sa.Integer(), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=True),
        sa.Column("reviewed_at", TIME, nullable=True),
        sa.Column("published_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["members.id"],
            name=op.f("fk_stories_author_id_members"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_stories_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"], ["members.id"], name=op.f("fk_stories_reviewer_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["subject_member_id"],
            ["members.id"],
            name=op.f("fk_stories_subject_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_stories_unit_id_units"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stories")),
    )
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stories_campaign_id"), ["campaign_id"])
        batch_op.create_index(batch_op.f("ix_stories_unit_id"), ["unit_id"])
        batch_op.create_index("ix_stories_campaign_status", ["campaign_id", "status"])

    op.create_table(
        "report_submissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deadline_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("submitted_by_id", sa.Integer(), nullable=False),
        sa.Column("figures", JSON_TYPE, nullable=False),
        sa.Column("highlights", sa.Text(), nullable=False),
        sa.Column("submitted_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["deadline_id"],
            ["deadlines.id"],
            name=op.f("fk_report_submissions_deadline_id_deadlines"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["submitted_by_id"],
            ["members.id"],
            name=op.f("fk_report_submissions_submitted_by_id_members"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"],
            ["units.id"],
            name=op.f("fk_report_submissions_unit_id_units"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_submissions")),
        sa.UniqueConstraint(
            "deadline_id", "unit_id", name=op.f("uq_report_submissions_deadline_id_unit_id")
        ),
    )
    with op.batch_alter_table("report_submissions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_submissions_unit_id"), ["unit_id"])


def downgrade() -> None:
    with op.batch_alter_table("channel_accounts", schema=None) as batch_op:
        batch_op.drop_column("preferred")
    op.drop_table("report_submissions")
    op.drop_table("stories")
    op.drop_table("commendations")
    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_units_cluster"))
        batch_op.drop_column("publish_chat")
        batch_op.drop_column("cluster")
    with op.batch_alter_table("initiatives", schema=None) as batch_op:
        batch_op.create_index("ix_initiatives_campaign_status", ["campaign_id", "status"])
