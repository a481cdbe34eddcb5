"""Spending caps per day and per repository, on top of each job's own budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.llm.caps import cap_headroom
from engine.pipeline.run import EngineDeps, JobRun, run_job
from engine.store.jobs import JobRequest, JobStore
from engine.store.models import CostEntry, JobState
from tests.conftest import make_settings


async def submit(store: JobStore, key: str, repo: str = "octo/widgets") -> str:
    job, _ = await store.submit(
        JobRequest(dedupe_key=key, trigger="cli", repo=repo, title="t", task="t", requester="mona")
    )
    return job.id


async def spend(store: JobStore, job_id: str, repo: str, usd: float) -> None:
    await store.add_cost(
        CostEntry(
            job_id=job_id,
            role="coder",
            model="m",
            tokens_in=1,
            tokens_out=1,
            usd=usd,
            latency_ms=1,
            repo=repo,
        )
    )


async def no_code_host(view: Any) -> Any:
    raise AssertionError("not reached")


async def test_without_caps_there_is_no_headroom_limit(tmp_path: Path, store: JobStore) -> None:
    assert await cap_headroom(store, make_settings(tmp_path), "octo/widgets") == (None, None)


async def test_the_tighter_of_the_two_caps_gives_the_headroom(tmp_path: Path, store: JobStore) -> None:
    settings = make_settings(tmp_path, daily_budget_usd=10.0, repo_daily_budget_usd=3.0)
    earlier = await submit(store, "earlier")
    await spend(store, earlier, "octo/widgets", 2.0)
    await spend(store, earlier, "octo/other", 5.0)

    headroom, name = await cap_headroom(store, settings, "octo/widgets")

    assert headroom == 1.0
    assert name == "octo/widgets's daily cap of $3.00"


async def test_a_new_job_over_the_daily_cap_ends_at_once_saying_which_cap(
    tmp_path: Path, store: JobStore
) -> None:
    settings = make_settings(tmp_path, daily_budget_usd=4.0)
    earlier = await submit(store, "earlier")
    await spend(store, earlier, "octo/other", 4.25)
    ran: list[str] = []

    async def pipeline(run: JobRun) -> None:
        ran.append(run.job_id)

    job_id = await submit(store, "new")
    deps = EngineDeps(settings=settings, store=store, code_host_for=no_code_host, pipeline=pipeline)

    assert await run_job(job_id, deps) is JobState.FAILED

    assert ran == []
    job = await store.get(job_id)
    assert (job.failure_reason or "").startswith("the daily cap of $4.00 is spent; the job did not start.")
    assert (await store.events(job_id))[-1].data["limit"] == "daily_cap"
