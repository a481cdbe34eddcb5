"""github_deliveries: signed deliveries stored before the worker decides (dedupe by id and body hash)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 10:00:00.000000

Numbered 0004 because 0002 (job_events index) and 0003 (cost ledger) are on other branches; down_revision
is to be chained to the last of them when they are merged.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "github_deliveries",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("body_sha256"),
    )
    with op.batch_alter_table("github_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_github_deliveries_received_at"), ["received_at"], unique=False)
        batch_op.create_index("ix_github_deliveries_state_received", ["state", "received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("github_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_github_deliveries_state_received")
        batch_op.drop_index(batch_op.f("ix_github_deliveries_received_at"))
    op.drop_table("github_deliveries")
