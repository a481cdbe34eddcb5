"""cost entries: the prompt's estimated tokens beside the reported ones, to calibrate the estimate per model

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cost_entries") as batch:
        batch.add_column(sa.Column("tokens_in_estimate", sa.Integer(), nullable=True))
    op.create_index("ix_cost_entries_model_id", "cost_entries", ["model", "id"])


def downgrade() -> None:
    op.drop_index("ix_cost_entries_model_id", table_name="cost_entries")
    with op.batch_alter_table("cost_entries") as batch:
        batch.drop_column("tokens_in_estimate")
