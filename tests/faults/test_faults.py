"""Faults a real deployment meets: redeliveries at once, GitHub 502s, LLM 429 storms, a Redis restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import redis

from autodev.embedded_redis import EmbeddedRedis
from autodev.runtime import Runtime
from engine.settings import Settings
from engine.store.models import JobState
from tests.e2e.test_github_flow import job_of, labeled_issue, work_off_the_queue
from tests.e2e.test_github_flow import remote as remote
from tests.e2e.test_github_flow import services as services
from tests.github_app.conftest import REPO, deliver
from tests.github_app.conftest import private_key as private_key
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import FakeLLM

ONE_STEP = {"summary": "Fix", "steps": [
    {"title": "Fix the README typo", "rationale": "r", "acceptance": "Hello", "files": ["README.md"]},
]}  # fmt: skip


def script_fix(llm: FakeLLM) -> None:
    llm.reply_json(ONE_STEP)
    llm.reply_tool_calls(("edit_file", {"path": "README.md", "old_text": "Helo", "new_text": "Hello"}))
    llm.reply_text("Fixed.")


async def test_the_same_webhook_delivered_three_times_at_once_makes_one_job(
    services: Any, remote: Path
) -> None:
    settings, runtime, http, github, _ = services
    github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})

    answers = await asyncio.gather(
        *(deliver(http, "issues", labeled_issue(settings), delivery="d-3x") for _ in range(3))
    )

    assert [a.status_code for a in answers] == [202, 202, 202]
    assert sorted(a.json().get("stored", False) for a in answers) == [False, False, True]
    assert (await runtime.queue.depth())[0] == 1  # one delivery to decide
    await work_off_the_queue(runtime)
    assert len(await runtime.store.list_jobs()) == 1


async def test_a_502_on_pr_creation_then_success_gives_one_pr(services: Any, remote: Path) -> None:
    settings, runtime, http, github, llm = services
    repo = github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})
    github.fail("POST", rf"/repos/{REPO}/pulls$", times=1, status=502)
    script_fix(llm)

    delivery = (await deliver(http, "issues", labeled_issue(settings))).json()["delivery"]
    await work_off_the_queue(runtime)
    job_id = await job_of(runtime, delivery)

    job = await runtime.store.get(job_id)
    assert job.state == JobState.SUCCEEDED, job.failure_reason
    assert len(repo.pulls) == 1
    assert len(github.calls_to("POST", rf"/repos/{REPO}/pulls$")) == 2


async def test_a_pr_creation_github_refuses_fails_the_job_with_what_to_fix(
    services: Any, remote: Path
) -> None:
    settings, runtime, http, github, llm = services
    repo = github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})
    github.fail("POST", rf"/repos/{REPO}/pulls$", times=5, status=403)
    script_fix(llm)

    delivery = (await deliver(http, "issues", labeled_issue(settings))).json()["delivery"]
    await work_off_the_queue(runtime)
    job_id = await job_of(runtime, delivery)

    job = await runtime.store.get(job_id)
    assert job.state == JobState.FAILED
    assert (job.failure_reason or "").startswith("GitHub refused opening the pull request (403")
    assert "internal error" not in (job.failure_reason or "")
    assert len(github.calls_to("POST", rf"/repos/{REPO}/pulls$")) == 1  # refused once, not retried
    final = list(repo.check_runs.values())[-1]
    assert final["conclusion"] == "failure"
    assert "GitHub refused opening the pull request" in final["output"]["summary"]


async def test_a_storm_of_llm_429s_ends_the_job_as_rate_limited_and_never_hangs(
    services: tuple[Settings, Runtime, Any, FakeGitHub, FakeLLM], remote: Path
) -> None:
    settings, runtime, http, github, llm = services
    github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})
    for _ in range(60):
        llm.reply_status(429, retry_after=0)

    delivery = (await deliver(http, "issues", labeled_issue(settings))).json()["delivery"]
    await asyncio.wait_for(work_off_the_queue(runtime), 120)
    job_id = await job_of(runtime, delivery)

    job = await runtime.store.get(job_id)
    assert job.state == JobState.FAILED
    assert "rate limited" in (job.failure_reason or "")
    assert f"gave up after {settings.job_max_tries} tries" in (job.failure_reason or "")


async def test_jobs_queued_before_a_redis_restart_are_all_still_there(tmp_path: Path) -> None:
    """The embedded Redis (and docker-compose's) keep an append-only file: a restart loses no queued job."""
    from workers.queue import ArqJobQueue, connect

    ids = [f"job-{n}" for n in range(5)]
    with EmbeddedRedis(tmp_path) as server:
        pool = await connect(server.url)
        for job_id in ids:
            await ArqJobQueue(pool).enqueue(job_id)
        await pool.aclose()
    with EmbeddedRedis(tmp_path) as server:
        pool = await connect(server.url)
        statuses = [await ArqJobQueue(pool).status(job_id) for job_id in ids]
        await pool.aclose()
        client = redis.Redis.from_url(server.url)
        assert client.zcard("arq:queue") == 5
        client.close()
    assert {s.value for s in statuses} == {"queued"}
