"""outbox rows without foreign keys, so a million can be queued in seconds

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 12:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Checking both keys for every queued row cost half the time of queueing a large
    # broadcast; the claim now fails rows whose account or broadcast is gone instead.
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint("fk_outbox_account_id_channel_accounts", type_="foreignkey")
        batch_op.drop_constraint("fk_outbox_broadcast_id_broadcasts", type_="foreignkey")


def downgrade() -> None:
    # Rows left behind by a deleted account or broadcast would break the keys.
    op.execute(
        "DELETE FROM outbox WHERE account_id NOT IN (SELECT id FROM channel_accounts)"
        " OR (broadcast_id IS NOT NULL AND broadcast_id NOT IN (SELECT id FROM broadcasts))"
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_outbox_account_id_channel_accounts",
            "channel_accounts",
            ["account_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_foreign_key(
            "fk_outbox_broadcast_id_broadcasts",
            "broadcasts",
            ["broadcast_id"],
            ["id"],
            ondelete="CASCADE",
        )
