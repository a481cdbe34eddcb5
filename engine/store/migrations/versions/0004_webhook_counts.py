"""webhook_counts: deliveries by event and status, the source of autodev_webhook_requests_total

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 09:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_counts",
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("status", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event", "status"),
    )


def downgrade() -> None:
    op.drop_table("webhook_counts")
