"""`autodev worker` as a user starts it: in a directory of its own, on the default relative DATA_DIR."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from engine.store.models import JobState
from tests.e2e.test_github_flow import FIX_TEST, git, job_of, labeled_issue
from tests.e2e.test_github_flow import remote as remote
from tests.e2e.test_github_flow import services as services
from tests.faults.test_killed_worker import worker_env
from tests.github_app.conftest import REPO, deliver
from tests.github_app.conftest import private_key as private_key

ONE_STEP = {"summary": "Fix", "steps": [
    {"title": "Fix the README typo", "rationale": "r", "acceptance": "Hello", "files": ["README.md"]},
]}  # fmt: skip


async def ended(runtime: Any, delivery: str) -> bool:
    job = await runtime.store.find_by_dedupe_key(f"github:{delivery}")
    return job is not None and job.state in ("succeeded", "failed")


async def test_a_worker_on_the_default_relative_data_dir_turns_a_labeled_issue_into_a_pr(
    services: Any, remote: Path, tmp_path: Path
) -> None:
    """Regression: on DATA_DIR=./data every job failed in `git worktree add` (a relative path run inside
    the mirror): `serve`'s worker and `autodev run` share that code."""
    settings, runtime, http, github, llm = services
    repo = github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})
    llm.reply_json(ONE_STEP)
    llm.reply_tool_calls(
        ("edit_file", {"path": "README.md", "old_text": "Helo", "new_text": "Hello"}),
        ("create_file", {"path": "tests/test_readme.py", "content": FIX_TEST}),
    )
    llm.reply_text("Fixed.")
    delivery = (await deliver(http, "issues", labeled_issue(settings))).json()["delivery"]
    env = worker_env(settings)
    env["DATA_DIR"] = "data"  # as .env.example has it, relative to where the worker starts
    del env["WORKSPACE_DIR"]
    home = tmp_path / "service"
    home.mkdir()

    with (tmp_path / "worker.log").open("w") as log:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "autodev", "worker", env=env, cwd=home, stdout=log, stderr=log
        )
        try:
            async with asyncio.timeout(90):  # the worker decides the delivery, then runs its job
                while not await ended(runtime, delivery):  # noqa: ASYNC110 - another process writes the DB
                    await asyncio.sleep(0.1)
        finally:
            worker.terminate()
            await worker.wait()

    view = await runtime.store.view(await job_of(runtime, delivery))
    assert view.state is JobState.SUCCEEDED, view.failure_reason
    assert (home / "data" / "work").is_dir()
    assert git(remote, "log", "--format=%s", f"main..{view.branch}").splitlines() == ["Fix the README typo"]
    assert len(repo.pulls) == 1
