"""members' data rights: leaving, erasure, retention

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 12:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.base

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = storage.base.UTCDateTime(timezone=True)


def _status(*values: str) -> sa.Enum:
    return sa.Enum(
        *values, name="member_status", native_enum=False, create_constraint=True, length=16
    )


OLD_STATUS = _status("pending", "active", "rejected")
NEW_STATUS = _status("pending", "active", "rejected", "left")


def upgrade() -> None:
    # Batch mode: SQLite rebuilds the table to change the status CHECK constraint.
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("left_at", TIME, nullable=True))
        batch_op.add_column(sa.Column("erased_at", TIME, nullable=True))
        batch_op.alter_column(
            "status", existing_type=OLD_STATUS, type_=NEW_STATUS, existing_nullable=False
        )
        batch_op.create_index(batch_op.f("ix_members_left_at"), ["left_at"], unique=False)


def downgrade() -> None:
    # Members who left become rejected: the old constraint knows no other inactive status.
    op.execute("UPDATE members SET status = 'rejected' WHERE status = 'left'")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_members_left_at"))
        batch_op.alter_column(
            "status", existing_type=NEW_STATUS, type_=OLD_STATUS, existing_nullable=False
        )
        batch_op.drop_column("erased_at")
        batch_op.drop_column("left_at")
