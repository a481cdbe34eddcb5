"""LLM calls: retries on 429/5xx, clear failures for bad keys and dead endpoints, and the budget guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.pipeline.run import EngineDeps, run_job
from engine.settings import Settings
from engine.store.jobs import JobStore
from engine.store.models import JobState
from tests.engine.conftest import RecordingHost, branch_log, llm_settings, plan, run, submit
from tests.support.fake_llm import FakeLLM


async def test_a_429_then_a_503_are_retried_each_recorded_and_only_the_answers_billed(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_status(429, retry_after=0)
    llm.reply_status(503)
    llm.reply_json(plan("Touch"))
    llm.reply_tool_calls(("create_file", {"path": "t.txt", "content": "t\n"}))
    llm.reply_text("ok")
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.SUCCEEDED

    view = await store.view(job_id)
    # Every request that left is in the ledger and counts against JOB_MAX_REQUESTS; refusals cost nothing.
    assert len(llm.requests) == 5 and view.requests == 5 and len(view.costs) == 5
    assert [(c.outcome, c.attempt, c.billed_on) for c in view.costs[:3]] == [
        ("HTTP 429", 1, "not billed"),
        ("HTTP 503", 2, "not billed"),
        ("ok", 3, "usage"),
    ]
    assert view.costs[0].usd == 0 and all(c.checked_usd and c.checked_usd > 0 for c in view.costs)
    assert view.cost_usd == pytest.approx(sum(c.usd for c in view.costs))


async def test_a_persistent_rate_limit_ends_with_a_reason_saying_rate_limited(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    from engine.errors import TransientFailure

    settings = llm_settings(tmp_path, database_url, llm, llm_max_retries=1)
    llm.reply_status(429, retry_after=0).reply_status(429, retry_after=0)
    job_id = await submit(store)
    host = RecordingHost(remote)

    async def code_host_for(view: object) -> RecordingHost:
        return host

    try:
        await run_job(job_id, EngineDeps(settings, store, code_host_for=code_host_for))
    except TransientFailure as exc:  # the worker retries the job later, or fails it with this reason
        assert "rate limited" in exc.reason
    else:
        raise AssertionError("expected a TransientFailure")
    assert llm.remaining == 0


async def test_a_wrong_key_fails_the_job_with_a_clear_reason(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_status(401, error="Incorrect API key provided")
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.FAILED
    assert "refused the API key (401)" in ((await store.view(job_id)).failure_reason or "")


async def test_an_unreachable_endpoint_fails_the_job_with_a_clear_reason(
    tmp_path: Path, database_url: str, store: JobStore, remote: Path
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database_url,
        workspace_dir=tmp_path / "work",
        openai_base_url="http://127.0.0.1:9/v1",
        openai_api_key="sk-x-unreachable",
        llm_max_retries=0,
    )
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.FAILED
    reason = (await store.view(job_id)).failure_reason or ""
    assert "unreachable" in reason and "OPENAI_BASE_URL" in reason


async def test_an_unpriced_model_fails_clearly_before_any_call(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    settings = llm_settings(tmp_path, database_url, llm, model_planner="llama3.1:8b")
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.FAILED
    assert "no price for model 'llama3.1:8b'" in ((await store.view(job_id)).failure_reason or "")
    assert llm.requests == []


async def test_a_pricing_file_prices_a_local_model(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text('{"llama3.1:8b": {"input": 0, "output": 0}}')
    settings = llm_settings(
        tmp_path,
        database_url,
        llm,
        model_planner="llama3.1:8b",
        model_coder="llama3.1:8b",
        pricing_file=prices,
    )
    llm.reply_json(plan("Touch")).reply_text("nothing to change")
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.SUCCEEDED
    assert (await store.view(job_id)).cost_usd == 0


async def test_the_budget_running_out_mid_step_stops_before_the_next_call_keeping_done_steps(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_json(plan("First", "Second"), tokens=(100, 100))
    llm.reply_tool_calls(("create_file", {"path": "first.txt", "content": "1\n"}), tokens=(100, 100))
    llm.reply_text("done", tokens=(100, 100))
    llm.reply_tool_calls(("create_file", {"path": "big.txt", "content": "x\n"}), tokens=(10_000, 1_000))
    llm.reply_text("never sent")
    host = RecordingHost(remote)
    # gpt-4.1 at $2/$8 per million: each coder call may cost up to ~$0.068 (8192 output tokens).
    job_id = await submit(store, budget_usd=0.09)

    assert await run(job_id, settings, store, host) is JobState.FAILED

    view = await store.view(job_id)
    assert (view.failure_reason or "").startswith("budget limit reached")
    assert llm.remaining == 1 and view.requests == 4 and view.cost_usd <= 0.09
    assert view.events[-1].data["limit"] == "budget"
    assert view.branch and branch_log(remote, view.branch) == ["First"]
    assert host.prs and host.prs[0].draft is True
    assert "Stopped early by the budget limit" in host.bodies[1]


async def test_the_request_limit_names_requests(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_json(plan("One")).reply_tool_calls(("list_files", {})).reply_text("never")
    job_id = await submit(store, max_requests=2)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.FAILED
    view = await store.view(job_id)
    assert (view.failure_reason or "").startswith("request limit reached") and view.requests == 2


async def test_the_time_limit_names_time(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_json(plan("One"))
    job_id = await submit(store, max_minutes=0.00001)  # under a millisecond: spent before the first call

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.FAILED
    view = await store.view(job_id)
    assert (view.failure_reason or "").startswith("time limit reached") and view.requests == 0
    assert view.events[-1].data["limit"] == "time" and llm.requests == []


async def test_the_daily_cap_stops_a_call_that_could_cross_it(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    # The planner's worst case (4096 output tokens of gpt-4.1-mini) is about $0.0066.
    settings = llm_settings(tmp_path, database_url, llm, daily_budget_usd=0.005)
    llm.reply_json(plan("One"))
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.FAILED
    reason = (await store.view(job_id)).failure_reason or ""
    assert reason.startswith("budget limit reached") and "daily cap of $0.005" in reason
    assert llm.requests == []


async def test_a_jobs_embeddings_are_billed_in_its_ledger_and_count_against_its_limits(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    """Regression: with EMBEDDING_MODEL set, embedding calls bypassed the guard and the ledger."""
    settings = llm_settings(tmp_path, database_url, llm, embedding_model="text-embedding-3-small")
    llm.reply_json(plan("Touch")).reply_text("nothing to change")
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.SUCCEEDED

    view = await store.view(job_id)
    roles = [c.role for c in view.costs]
    assert roles.count("embeddings") == len(llm.embedding_requests) >= 2 and roles.count("planner") == 1
    assert view.requests == len(view.costs) and view.cost_usd == pytest.approx(sum(c.usd for c in view.costs))
    step_embeddings = [c for c in view.costs if c.role == "embeddings" and c.step_index == 0]
    assert step_embeddings and all(c.model == "text-embedding-3-small" for c in step_embeddings)
