"""pushed_commits and pull_request_follow_ups: CI fix rounds only on autodev's commits, bounded per PR

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 11:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pushed_commits",
        sa.Column("repo", sa.String(length=200), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("branch", sa.String(length=200), nullable=False),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("repo", "sha"),
    )
    op.create_table(
        "pull_request_follow_ups",
        sa.Column("repo", sa.String(length=200), nullable=False),
        sa.Column("pr_number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ci_stopped_by", sa.String(length=200), nullable=True),
        sa.Column("ci_exhausted_noted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("repo", "pr_number"),
    )


def downgrade() -> None:
    op.drop_table("pull_request_follow_ups")
    op.drop_table("pushed_commits")
