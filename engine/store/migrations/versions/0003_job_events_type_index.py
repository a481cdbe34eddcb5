"""index job_events by type

/metrics counts the events of a type (reporter_error) at every scrape; without an index that read the
whole table (~71 ms at 200k events).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_job_events_type", "job_events", ["type"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_job_events_type", table_name="job_events")
