"""The guard before every request to the LLM: its worst case must fit the job's budget, requests and time.

It reads what the ledger says the job has spent (the job row's totals, written with each cost entry), so a
request that cost more than was checked before it is seen by the next check, and every retry is checked
on its own.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from engine.errors import JobCancelled, LimitReached
from engine.llm.caps import cap_headroom
from engine.llm.money import usd
from engine.llm.pricing import Price
from engine.settings import Settings
from engine.store.jobs import JobStore

log = logging.getLogger(__name__)


class BudgetGuard:
    """Checks one job's cancel flag and limits (read fresh from its row) plus today's spending caps."""

    def __init__(
        self, store: JobStore, settings: Settings, job_id: str, *, budget_cap_usd: float | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.job_id = job_id
        # A repository's .github/autodev.yml may lower the job's budget, never raise it.
        self.budget_cap_usd = budget_cap_usd

    async def check(self, *, model: str, price: Price, prompt_tokens: int, max_tokens: int) -> float:
        """Raise LimitReached when the next call could cross a limit; return its worst-case dollars.

        The same read of the job row carries its cancel flag, so a cancel stops the job before the call
        (JobCancelled) without a read of its own."""
        job = await self.store.budget_state(self.job_id)
        if job.cancel_requested:
            raise JobCancelled("cancelled on request")
        worst = price.worst_case(prompt_tokens, max_tokens)
        if job.requests + 1 > job.max_requests:
            raise LimitReached(
                "requests", f"request limit reached: {job.requests} of {job.max_requests} LLM calls made"
            )
        if job.started_at is not None:
            started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=UTC)
            minutes = (datetime.now(UTC) - started).total_seconds() / 60
            if minutes >= job.max_minutes:
                raise LimitReached(
                    "time", f"time limit reached: {minutes:.1f} of {job.max_minutes:g} minutes used"
                )
        budget = job.budget_usd if self.budget_cap_usd is None else min(job.budget_usd, self.budget_cap_usd)
        if job.cost_usd + worst > budget:
            raise LimitReached(
                "budget",
                f"budget limit reached: {usd(job.cost_usd)} of {usd(budget)} spent and the next {model} "
                f"call could cost up to {usd(worst)}",
            )
        headroom, cap_name = await cap_headroom(self.store, self.settings, job.repo)
        if headroom is not None and worst > headroom:
            raise LimitReached(
                "budget",
                f"budget limit reached: {cap_name} has {usd(headroom)} left and the next {model} call "
                f"could cost up to {usd(worst)}",
            )
        return worst
