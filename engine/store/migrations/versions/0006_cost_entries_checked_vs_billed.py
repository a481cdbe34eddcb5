"""cost entries: checked vs billed, cached and reasoning tokens, outcome and attempt of every request

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cost_entries") as batch:
        batch.add_column(sa.Column("tokens_cached", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("tokens_reasoning", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("checked_usd", sa.Float(), nullable=True))
        batch.add_column(sa.Column("billed_on", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(length=60), nullable=True))
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cost_entries") as batch:
        for name in (
            "attempt",
            "note",
            "outcome",
            "billed_on",
            "checked_usd",
            "tokens_reasoning",
            "tokens_cached",
        ):
            batch.drop_column(name)
