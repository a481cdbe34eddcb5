"""An LLMClient of a real job as the pipeline builds it: the budget guard and the cost ledger on the store."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from engine import events
from engine.llm.budget import BudgetGuard
from engine.llm.client import LLMClient
from engine.settings import Settings
from engine.store.jobs import JobRequest, JobStore
from engine.store.models import CostEntry
from tests.engine.conftest import llm_settings
from tests.support.fake_llm import FakeLLM


async def new_job(store: JobStore, **fields: Any) -> str:
    job, _ = await store.submit(
        JobRequest(
            dedupe_key=f"llm-test:{uuid.uuid4().hex}",
            trigger="cli",
            repo="acme/calc",
            title="t",
            task="t",
            requester="mona",
            **fields,
        )
    )
    return job.id


def client_for(store: JobStore, settings: Settings, job_id: str) -> LLMClient:
    async def record(entry: CostEntry, data: dict[str, Any]) -> None:
        await store.add_cost(entry, (events.LLM_CALL, data))

    return LLMClient(
        settings=settings,
        job_id=job_id,
        repo="acme/calc",
        guard=BudgetGuard(store, settings, job_id),
        record_cost=record,
    )


def settings_for(tmp_path: Path, database_url: str, llm: FakeLLM, **overrides: object) -> Settings:
    return llm_settings(tmp_path, database_url, llm, **overrides)


SYSTEM = [{"role": "system", "content": "You write code."}, {"role": "user", "content": "Add subtract."}]
