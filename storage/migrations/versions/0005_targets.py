"""targets per unit, campaign and metric; an index for the initiative roll-up

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("set_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_targets_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["set_by_id"],
            ["members.id"],
            name=op.f("fk_targets_set_by_id_members"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_targets_unit_id_units"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_targets")),
        sa.UniqueConstraint(
            "unit_id", "campaign_id", "metric", name=op.f("uq_targets_unit_id_campaign_id_metric")
        ),
    )
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_targets_campaign_id"), ["campaign_id"], unique=False)
    with op.batch_alter_table("initiatives", schema=None) as batch_op:
        batch_op.create_index(
            "ix_initiatives_campaign_status_unit",
            ["campaign_id", "status", "unit_id", "reviewed_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("initiatives", schema=None) as batch_op:
        batch_op.drop_index("ix_initiatives_campaign_status_unit")
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_targets_campaign_id"))
    op.drop_table("targets")
