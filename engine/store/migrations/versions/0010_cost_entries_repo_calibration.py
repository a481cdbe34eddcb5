"""cost entries: an index for a repository's latest requests to a model, which calibrate its packs

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 15:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_cost_entries_model_repo_id", "cost_entries", ["model", "repo", "id"])


def downgrade() -> None:
    op.drop_index("ix_cost_entries_model_repo_id", table_name="cost_entries")
