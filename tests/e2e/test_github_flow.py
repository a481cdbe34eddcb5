"""End to end, every part real but GitHub and the LLM: a labeled issue becomes a PR with a green check run,
and a revise comment adds commits to it — through the web app, ARQ on Redis, git and the pipeline."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from autodev.app import create_app
from autodev.runtime import Runtime
from autodev.serve import build_worker
from engine.settings import Settings
from engine.store.models import JobState
from tests.conftest import make_settings
from tests.github_app.conftest import REPO, as_app_delivery, deliver, labeled, payload
from tests.github_app.conftest import private_key as private_key
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import FakeLLM

SLUG = "autodev-test"
TEST_COMMAND = f"{sys.executable} -m pytest -q -p no:cacheprovider"
FIX_TEST = 'def test_readme_spelling():\n    assert "Hello" in open("README.md").read()\n'


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_remote(tmp_path: Path, config: str = "") -> Path:
    """A bare remote with a README typo and a passing test, reached by file:// as GitHub's clone_url;
    `config` is added to .github/autodev.yml."""
    work = tmp_path / "seed"
    files = {
        "README.md": "Helo World\n",
        "tests/test_ok.py": "def test_ok():\n    assert True\n",
        ".github/autodev.yml": f"test_command: {TEST_COMMAND!r}\n{config}",
    }
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "initial")
    bare = tmp_path / "hello.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    return bare


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path)


def stack_settings(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    private_key: str,
    github: FakeGitHub,
    llm: FakeLLM,
    **overrides: Any,
) -> Settings:
    """Settings for the whole service against the fakes: GitHub App and LLM configured, real DB and Redis."""
    return make_settings(
        tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        github_app_id=github.app_id,
        github_private_key=private_key,
        github_webhook_secret="webhook-secret-for-tests",
        github_api_url=github.api_url,
        github_app_slug=SLUG,
        openai_base_url=llm.base_url,
        openai_api_key="sk-test",
        **overrides,
    )


@pytest.fixture
async def services(
    tmp_path: Path, database_url: str, clean_redis: str, private_key: str
) -> AsyncIterator[Any]:
    async with FakeGitHub(app_slug=SLUG) as github, FakeLLM() as llm:
        settings = stack_settings(tmp_path, database_url, clean_redis, private_key, github, llm)
        runtime = await Runtime.start(settings)
        app = create_app(runtime)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as http:
            yield settings, runtime, http, github, llm
        await runtime.close()


def labeled_issue(settings: Settings) -> dict[str, Any]:
    """The corpus's `issues.labeled` delivery, by a writer, with the trigger label."""
    return labeled(settings, "alice")


async def work_off_the_queue(runtime: Runtime) -> None:
    """A burst worker: the stored deliveries first (which queue their jobs), then the jobs."""
    worker = build_worker(runtime, burst=True)
    await worker.main()
    assert worker.jobs_failed == 0


async def job_of(runtime: Runtime, delivery: str) -> str:
    """The id of the job the worker made of a delivery."""
    job = await runtime.store.find_by_dedupe_key(f"github:{delivery}")
    assert job is not None, f"no job for delivery {delivery}"
    return job.id


async def test_the_worker_gives_the_model_the_issues_comments_but_not_bots(
    services: tuple[Settings, Runtime, httpx.AsyncClient, FakeGitHub, FakeLLM], remote: Path
) -> None:
    settings, runtime, http, github, llm = services
    repo = github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})
    repo.issues[1] = {"number": 1, "title": "Spelling error in the README file", "body": "It says Helo."}
    repo.comments[7] = {"id": 7, "issue_number": 1, "body": "Keep the newline.", "user": {"login": "bob"}}
    bot = {"login": "ci[bot]", "type": "Bot"}
    repo.comments[8] = {"id": 8, "issue_number": 1, "body": "Coverage 91%", "user": bot}
    llm.reply_json({"summary": "Fix", "steps": [
        {"title": "Fix the README typo", "rationale": "r", "acceptance": "Hello", "files": ["README.md"]},
    ]})  # fmt: skip
    llm.reply_tool_calls(("edit_file", {"path": "README.md", "old_text": "Helo", "new_text": "Hello"}))
    llm.reply_text("Fixed.")

    delivery = (await deliver(http, "issues", labeled_issue(settings))).json()["delivery"]
    assert github.calls == [], "the webhook stores the delivery; the worker asks GitHub"
    await work_off_the_queue(runtime)
    job_id = await job_of(runtime, delivery)

    job = await runtime.store.get(job_id)
    assert job.state == JobState.SUCCEEDED, job.failure_reason
    planner_prompt = str(llm.requests[0]["messages"])
    assert "Comment by @bob" in planner_prompt and "Keep the newline." in planner_prompt
    assert "Coverage 91%" not in planner_prompt
    assert "autodev ·" not in planner_prompt, "autodev's own sticky comment is not part of the task"


async def test_a_labeled_issue_becomes_a_pr_with_a_green_check_run_then_a_revise_comment_updates_it(
    services: tuple[Settings, Runtime, httpx.AsyncClient, FakeGitHub, FakeLLM], remote: Path
) -> None:
    settings, runtime, http, github, llm = services
    repo = github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})
    label = labeled_issue(settings)
    llm.reply_json({"summary": "Fix the typo", "steps": [
        {"title": "Fix the README typo", "rationale": "r", "acceptance": "Hello", "files": ["README.md"]},
    ]})  # fmt: skip
    llm.reply_tool_calls(("edit_file", {"path": "README.md", "old_text": "Helo", "new_text": "Hello"}))
    llm.reply_text("Fixed the typo.")

    accepted = await deliver(http, "issues", label, delivery="e2e-label")
    assert accepted.status_code == 202
    await work_off_the_queue(runtime)
    job_id = await job_of(runtime, "e2e-label")

    view = await runtime.store.view(job_id)
    assert view.state is JobState.SUCCEEDED, view.failure_reason
    assert git(remote, "show", f"{view.branch}:README.md") == "Hello World\n"
    assert [p["head"]["ref"] for p in repo.pulls.values()] == [view.branch]
    pull = next(iter(repo.pulls.values()))
    assert "Closes #1" in pull["body"] and f"/jobs/{job_id}?t={view.access_token}" in pull["body"]
    assert pull["draft"] is False, "made ready when the job succeeded"
    final = list(repo.check_runs.values())[-1]
    assert (final["name"], final["status"], final["conclusion"]) == ("autodev", "completed", "success")
    assert final["details_url"] == f"{settings.public_url}/jobs/{job_id}?t={view.access_token}"
    assert [r["content"] for r in repo.reactions] == ["eyes"]
    sticky = [c for c in repo.comments.values() if c["issue_number"] == 1]
    assert len(sticky) == 1 and str(pull["number"]) in sticky[0]["body"]

    # The job page behind Details answers with the job.
    page = await http.get(f"/jobs/{job_id}", params={"t": view.access_token})
    assert page.status_code == 200 and "Fix the README typo" in page.text

    # A redelivery of the label makes no second job.
    again = await deliver(http, "issues", label, delivery="e2e-label")
    assert again.json() == {"delivery": "e2e-label", "duplicate": True}

    # A revise comment on the PR adds a commit to the same branch and the same PR.
    comment = as_app_delivery(payload("issue_comment", "created.payload.json"), "alice")
    comment["issue"]["number"] = pull["number"]
    comment["issue"]["pull_request"] = {"url": "x", "html_url": "x", "diff_url": "x", "patch_url": "x"}
    comment["comment"]["body"] = f"@{SLUG} revise add a test that checks the spelling"
    llm.reply_json({"summary": "Add a test", "steps": [
        {"title": "Test the README spelling", "rationale": "r", "acceptance": "a test", "files": []},
    ]})  # fmt: skip
    llm.reply_tool_calls(("create_file", {"path": "tests/test_readme.py", "content": FIX_TEST}))
    llm.reply_text("Added the test.")

    revised = await deliver(http, "issue_comment", comment, delivery="e2e-revise")
    assert revised.status_code == 202
    await work_off_the_queue(runtime)
    revise_id = await job_of(runtime, "e2e-revise")

    revise = await runtime.store.view(revise_id)
    assert revise.state is JobState.SUCCEEDED, revise.failure_reason
    assert revise.branch == view.branch
    assert git(remote, "log", "--format=%s", f"main..{view.branch}").splitlines() == [
        "Test the README spelling",
        "Fix the README typo",
    ]
    assert len(repo.pulls) == 1, "the revise job found the PR instead of opening another"
    assert list(repo.check_runs.values())[-1]["conclusion"] == "success"
    assert llm.remaining == 0


async def test_metrics_count_webhooks_jobs_and_llm_spend(
    services: tuple[Settings, Runtime, httpx.AsyncClient, FakeGitHub, FakeLLM], remote: Path
) -> None:
    settings, runtime, http, github, llm = services
    github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})
    label = labeled_issue(settings)
    llm.reply_json(
        {"summary": "s", "steps": [{"title": "Fix", "rationale": "r", "acceptance": "a", "files": []}]}
    )
    llm.reply_tool_calls(("edit_file", {"path": "README.md", "old_text": "Helo", "new_text": "Hello"}))
    llm.reply_text("Fixed.")
    await deliver(http, "issues", label)
    await deliver(http, "issues", label, secret="wrong")
    await work_off_the_queue(runtime)

    text = (await http.get("/metrics")).text

    assert 'autodev_webhook_requests_total{event="issues",status="202"}' in text
    assert 'autodev_webhook_requests_total{event="issues",status="401"}' in text
    assert 'autodev_jobs{state="succeeded",trigger="github_issue"} 1.0' in text
    assert 'autodev_jobs_finished_total{state="succeeded",trigger="github_issue"} 1.0' in text
    assert f'autodev_llm_calls_total{{model="{settings.model_coder}",role="coder"}} 2.0' in text
    assert 'autodev_llm_dollars_total{model="' in text
    assert 'autodev_job_duration_seconds_count{state="succeeded"} 1.0' in text
    assert "autodev_queue_depth 0.0" in text
