"""llm_totals: running LLM totals per model and role, the source of autodev_llm_*_total

Filled from cost_entries here; from then on each LLM call adds to its row in its own transaction.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "llm_totals",
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("tokens_in", sa.BigInteger(), nullable=False),
        sa.Column("tokens_out", sa.BigInteger(), nullable=False),
        sa.Column("usd", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("model", "role"),
    )
    op.execute(
        "INSERT INTO llm_totals (model, role, calls, tokens_in, tokens_out, usd) "
        "SELECT model, role, count(*), sum(tokens_in), sum(tokens_out), sum(usd) "
        "FROM cost_entries GROUP BY model, role"
    )


def downgrade() -> None:
    op.drop_table("llm_totals")
