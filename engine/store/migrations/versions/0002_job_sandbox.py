"""jobs.sandbox: how the repository's commands ran (sandbox, network, why they did not)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 08:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        # Jobs from before this revision ran their commands unsandboxed: say nothing rather than guess.
        batch_op.add_column(sa.Column("sandbox", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("sandbox")
