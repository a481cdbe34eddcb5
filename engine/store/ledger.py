"""The cost ledger: an entry per LLM request with the job's running totals, which the budget guard reads."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from engine.errors import JobNotFound
from engine.store.calibration import Calibration, token_calibration
from engine.store.db import session_scope
from engine.store.eventlog import JOBS, EventLog
from engine.store.models import Base, CostEntry, utcnow
from engine.store.totals import add_llm_call
from engine.views import JobEventView

COST_ENTRIES = Base.metadata.tables[CostEntry.__tablename__]


@dataclass(frozen=True, slots=True)
class BudgetState:
    """The columns of a job's row that its limits are checked against."""

    repo: str
    requests: int
    max_requests: int
    cost_usd: float
    budget_usd: float
    max_minutes: float
    started_at: datetime | None
    cancel_requested: bool


class CostLedger(EventLog):
    """Cost entries and totals, written with their `llm_call` event; reads for budgets and spending caps."""

    async def add_cost(
        self, entry: CostEntry, event: tuple[str, dict[str, Any]] | None = None
    ) -> JobEventView | None:
        """Record one request to the LLM endpoint, add it to the job's running totals and append `event`
        (its `llm_call`), all in one transaction: one UPDATE of the job row takes the totals and the event's
        number together. The budget guard reads these totals, so a cost that is not a finite, non-negative
        number of dollars is refused here rather than let it lower what the job has spent."""
        if not (math.isfinite(entry.usd) and entry.usd >= 0) or min(entry.tokens_in, entry.tokens_out) < 0:
            raise ValueError(
                f"a cost entry must not be negative: ${entry.usd}, {entry.tokens_in} in, "
                f"{entry.tokens_out} out"
            )
        totals: dict[str, Any] = {
            "cost_usd": JOBS.c.cost_usd + entry.usd,
            "tokens_in": JOBS.c.tokens_in + entry.tokens_in,
            "tokens_out": JOBS.c.tokens_out + entry.tokens_out,
            "requests": JOBS.c.requests + 1,
        }
        cost = {c.key: getattr(entry, c.key) for c in COST_ENTRIES.c if getattr(entry, c.key) is not None}
        async with session_scope(self.sessions) as session:
            conn = await session.connection()
            if event is None:
                await conn.execute(
                    update(JOBS).where(JOBS.c.id == entry.job_id).values(updated_at=utcnow(), **totals)
                )
                appended = None
            else:
                appended = await self._append(session, entry.job_id, event[0], event[1], fields=totals)
            await conn.execute(insert(COST_ENTRIES).values(**cost))
            await add_llm_call(conn, entry)
        return appended

    async def budget_state(self, job_id: str) -> BudgetState:
        """What the guard before an LLM call needs, in one read of the job row (no ORM object)."""
        columns = [getattr(JOBS.c, name) for name in BudgetState.__annotations__]
        async with self.sessions() as session:
            row = (await session.execute(select(*columns).where(JOBS.c.id == job_id))).one_or_none()
        if row is None:
            raise JobNotFound(job_id)
        self._saw_cancel(job_id, row.cancel_requested)
        return BudgetState(**row._asdict())

    async def spent_since(self, since: datetime, *, repo: str | None = None) -> float:
        query = select(func.coalesce(func.sum(CostEntry.usd), 0.0)).where(CostEntry.created_at >= since)
        if repo:
            query = query.where(CostEntry.repo == repo)
        async with self.sessions() as session:
            return float((await session.execute(query)).scalar_one())

    async def token_calibration(self, model: str, repo: str | None = None) -> Calibration:
        """How `model` counts what engine.llm.tokens estimates, from its latest reported usage (about
        `repo`, when enough of it is)."""
        return await token_calibration(self.sessions, model, repo)
