"""End to end, every part real but GitHub and the LLM: autodev's PR fails CI, and the failure — its check
suite and check run delivered through the webhook — becomes one fix job that adds a commit to the same PR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from autodev.runtime import Runtime
from engine.settings import Settings
from engine.store.models import JobState
from tests.e2e.test_github_flow import FIX_TEST, git, job_of, labeled_issue, work_off_the_queue
from tests.e2e.test_github_flow import remote as remote
from tests.e2e.test_github_flow import services as services
from tests.github_app.conftest import REPO, deliver
from tests.github_app.conftest import private_key as private_key
from tests.github_app.test_ci_failures import LEAKED, check_run, check_suite, failing_actions_job
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import FakeLLM

Services = tuple[Settings, Runtime, httpx.AsyncClient, FakeGitHub, FakeLLM]


def one_step(llm: FakeLLM, title: str, *tool_call: tuple[str, dict[str, Any]]) -> None:
    llm.reply_json(
        {"summary": title, "steps": [{"title": title, "rationale": "r", "acceptance": "a", "files": []}]}
    )
    llm.reply_tool_calls(*tool_call)
    llm.reply_text("Done.")


async def test_a_failing_check_on_autodevs_pr_becomes_one_fix_job_and_a_new_commit_on_the_same_pr(
    services: Services, remote: Path
) -> None:
    settings, runtime, http, github, llm = services
    repo = github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})
    one_step(
        llm,
        "Fix the README typo",
        ("edit_file", {"path": "README.md", "old_text": "Helo", "new_text": "Hello"}),
    )
    await deliver(http, "issues", labeled_issue(settings), delivery="label")
    await work_off_the_queue(runtime)
    first = await runtime.store.view(await job_of(runtime, "label"))
    assert first.state is JobState.SUCCEEDED, first.failure_reason
    (pull,) = repo.pulls.values()
    head = git(remote, "rev-parse", first.branch or "").strip()
    assert head == first.head_sha

    failing_actions_job(repo, head)
    one_step(
        llm,
        "Test the README spelling",
        ("create_file", {"path": "tests/test_readme.py", "content": FIX_TEST}),
    )
    suite = await deliver(http, "check_suite", check_suite(head, pull["number"], branch=first.branch or ""))
    run = await deliver(http, "check_run", check_run(head, pull["number"], branch=first.branch or ""))
    await work_off_the_queue(runtime)
    redelivered = await deliver(
        http, "check_suite", check_suite(head, pull["number"], branch=first.branch or "")
    )

    assert suite.json()["stored"] and run.json()["stored"]
    assert redelivered.json()["duplicate"] is True, "the same body again (a replay) starts nothing"
    fixes = await runtime.store.list_jobs(repo=REPO, trigger="github_ci")
    assert len(fixes) == 1, "a suite and its check run for one head commit: one fix job"
    fix = await runtime.store.view(fixes[0].id)
    assert fix.state is JobState.SUCCEEDED, fix.failure_reason
    assert (
        fix.origin["round"] == "CI fix 1 of 2"
        and fix.branch == first.branch
        and fix.pr_number == pull["number"]
    )
    assert "FAILED tests/test_ok.py::test_ok - AssertionError: assert False" in fix.task
    assert LEAKED not in fix.task and LEAKED not in str(llm.requests)
    assert git(remote, "log", "--format=%s", f"main..{first.branch}").splitlines() == [
        "Test the README spelling",
        "Fix the README typo",
    ]
    assert len(repo.pulls) == 1, "the fix went to the same pull request"
    assert await runtime.store.pushed_by_autodev(REPO, git(remote, "rev-parse", first.branch or "").strip())
    assert llm.remaining == 0
