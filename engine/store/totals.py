"""Running totals kept beside the rows they sum, in the same transaction, for /metrics to read cheaply."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.store.models import CostEntry, LlmTotal


async def add_llm_call(conn: AsyncConnection, entry: CostEntry) -> None:
    """Add one LLM call to its model's and role's totals. Run it last in the transaction: the totals row
    is shared by every job, and its lock is held until the commit."""
    insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(LlmTotal).values(
        model=entry.model,
        role=entry.role,
        calls=1,
        tokens_in=entry.tokens_in,
        tokens_out=entry.tokens_out,
        usd=entry.usd,
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[LlmTotal.model, LlmTotal.role],
            set_={
                "calls": LlmTotal.calls + 1,
                "tokens_in": LlmTotal.tokens_in + statement.excluded.tokens_in,
                "tokens_out": LlmTotal.tokens_out + statement.excluded.tokens_out,
                "usd": LlmTotal.usd + statement.excluded.usd,
            },
        )
    )
