"""Stop a real worker process mid-job — SIGKILL, or SIGTERM as a deploy does — and another worker
finishes it with exactly one PR and a green check run, resuming after the step the first one completed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from arq.jobs import JobStatus

from autodev.serve import worker_context
from engine.store.models import JobState
from tests.e2e.test_github_flow import git, labeled_issue, work_off_the_queue
from tests.e2e.test_github_flow import remote as remote
from tests.e2e.test_github_flow import services as services
from tests.github_app.conftest import REPO, deliver
from tests.github_app.conftest import private_key as private_key
from workers.jobs import LEASE_TTL_S, reconcile

TWO_STEPS = {"summary": "Fix and test", "steps": [
    {"title": "Fix the README typo", "rationale": "r", "acceptance": "Hello", "files": ["README.md"]},
    {"title": "Test the spelling", "rationale": "r", "acceptance": "a test", "files": []},
]}  # fmt: skip
SPELLING_TEST = 'def test_spelling():\n    assert "Hello" in open("README.md").read()\n'


def worker_env(settings: Any) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(settings.data_dir),
        "DATA_DIR": str(settings.data_dir),
        "WORKSPACE_DIR": str(settings.workspace_dir),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "PUBLIC_URL": settings.public_url,
        "GITHUB_APP_ID": str(settings.github_app_id),
        "GITHUB_PRIVATE_KEY": settings.github_private_key.get_secret_value(),
        "GITHUB_WEBHOOK_SECRET": settings.github_webhook_secret.get_secret_value(),
        "GITHUB_API_URL": settings.github_api_url,
        "GITHUB_APP_SLUG": settings.github_app_slug,
        "OPENAI_BASE_URL": settings.openai_base_url,
        "OPENAI_API_KEY": settings.openai_api_key.get_secret_value(),
        "SANDBOX": settings.sandbox,
        "SANDBOX_READONLY_PATHS": ":".join(str(p) for p in settings.sandbox_readonly_paths),
    }
    return env


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "terminated"])
async def test_a_worker_stopped_mid_job_is_replaced_and_the_job_ends_with_one_pr(
    services: Any, remote: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    settings, runtime, http, github, llm = services
    repo = github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})
    label = labeled_issue(settings)
    llm.reply_json(TWO_STEPS)
    llm.reply_tool_calls(("edit_file", {"path": "README.md", "old_text": "Helo", "new_text": "Hello"}))
    llm.reply_text("Fixed.")
    # Step 2's first call meets a long rate limit: the first worker is waiting on it when it is killed.
    llm.reply_status(429, retry_after=120)
    delivery = (await deliver(http, "issues", label)).json()["delivery"]

    with (tmp_path / "worker.log").open("w") as log:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "autodev", "worker", env=worker_env(settings), stdout=log, stderr=log
        )
        try:
            async with asyncio.timeout(30):  # the worker decides the delivery, then runs its job
                while (job := await runtime.store.find_by_dedupe_key(f"github:{delivery}")) is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            job_id = job.id

            async def step_one_done() -> bool:
                view = await runtime.store.view(job_id, with_events=False)
                return bool(view.steps) and view.steps[0].state == "done" and llm.remaining == 0

            async with asyncio.timeout(60):
                while not await step_one_done():  # noqa: ASYNC110 - another process writes the DB
                    await asyncio.sleep(0.1)
            worker.send_signal(stop)
            exit_code = await worker.wait()
        finally:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()

    assert (await runtime.store.get(job_id)).state == JobState.RUNNING
    llm.reply_tool_calls(("create_file", {"path": "tests/test_spelling.py", "content": SPELLING_TEST}))
    llm.reply_text("Tested.")
    if stop is signal.SIGKILL:
        await asyncio.sleep(LEASE_TTL_S + 2)  # the dead worker's lease lapses
        ctx = worker_context(runtime)
        assert (await reconcile(ctx))["revived"] == 1
    else:
        # A clean stop: the running job got its grace period, was cancelled, and ARQ put it back at once.
        assert exit_code == 0
        assert await runtime.queue.status(job_id) is JobStatus.queued

    await work_off_the_queue(runtime)

    view = await runtime.store.view(job_id)
    assert view.state is JobState.SUCCEEDED, view.failure_reason
    assert git(remote, "log", "--format=%s", f"main..{view.branch}").splitlines() == [
        "Test the spelling",
        "Fix the README typo",
    ]
    assert len(repo.pulls) == 1
    assert list(repo.check_runs.values())[-1]["conclusion"] == "success"
    assert "resumed" in [e.type for e in view.events]
