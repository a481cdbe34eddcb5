"""No sandbox can start on this worker (no bubblewrap): the repository's tests are not run, and the check
run, the sticky comment, the job page and /readyz say so, with what to do about it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from autodev.app import create_app
from autodev.runtime import Runtime
from engine.store.models import JobState
from tests.e2e.test_github_flow import SLUG, job_of, labeled_issue, stack_settings, work_off_the_queue
from tests.e2e.test_github_flow import remote as remote
from tests.github_app.conftest import REPO, deliver
from tests.github_app.conftest import private_key as private_key
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import FakeLLM

NOTICE = "tests not run: no sandbox — bwrap not found"


@pytest.fixture
async def services_without_bwrap(
    tmp_path: Path, database_url: str, clean_redis: str, private_key: str
) -> AsyncIterator[Any]:
    async with FakeGitHub(app_slug=SLUG) as github, FakeLLM() as llm:
        settings = stack_settings(
            tmp_path, database_url, clean_redis, private_key, github, llm,
            sandbox="bwrap", bwrap_path=str(tmp_path / "no-bwrap-here"),
        )  # fmt: skip
        runtime = await Runtime.start(settings)
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield settings, runtime, http, github, llm
        await runtime.close()


async def test_a_job_without_a_sandbox_says_its_tests_did_not_run_everywhere(
    services_without_bwrap: Any, remote: Path
) -> None:
    settings, runtime, http, github, llm = services_without_bwrap
    repo = github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})
    llm.reply_json({"summary": "Fix", "steps": [
        {"title": "Fix the README typo", "rationale": "r", "acceptance": "Hello", "files": ["README.md"]},
    ]})  # fmt: skip
    llm.reply_tool_calls(("edit_file", {"path": "README.md", "old_text": "Helo", "new_text": "Hello"}))
    llm.reply_text("Fixed.")

    delivery = (await deliver(http, "issues", labeled_issue(settings))).json()["delivery"]
    await work_off_the_queue(runtime)
    job_id = await job_of(runtime, delivery)

    view = await runtime.store.view(job_id)
    assert view.state is JobState.SUCCEEDED, view.failure_reason
    assert view.steps[0].test_passed is None
    summary = list(repo.check_runs.values())[-1]["output"]["summary"]
    assert NOTICE in summary and "install bubblewrap" in summary
    sticky = next(c for c in repo.comments.values() if c["issue_number"] == 1)
    assert NOTICE in sticky["body"]
    page = await http.get(f"/jobs/{job_id}", params={"t": view.access_token})
    assert NOTICE in page.text and 'data-sandbox="not run"' in page.text
    ready = (await http.get("/readyz")).json()
    assert ready["sandbox"]["runner"] is None and "bwrap not found" in ready["sandbox"]["problem"]
    home = await http.get("/")
    assert "Sandbox for the repositories&#39; commands" in home.text and "bwrap not found" in home.text
