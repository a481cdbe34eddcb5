"""End to end from Slack: `/orchestrate` → ARQ worker on Redis → scripted LLM → a PR linked in the thread."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from autodev.app import create_app
from autodev.runtime import Runtime
from autodev.serve import worker_context
from engine.store.models import JobState, utcnow
from tests.bot.conftest import CHANNEL, REPO, USER, SlackClient, slack_side
from tests.conftest import install
from tests.e2e.test_github_flow import SLUG, git, stack_settings, work_off_the_queue
from tests.e2e.test_github_flow import remote as remote
from tests.github_app.conftest import private_key as private_key
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import FakeLLM
from tests.support.fake_slack import FakeSlack
from workers.jobs import CATCH_UP_PREFIX, reconcile

INSTALLATION = 4242


@pytest.fixture
async def services(
    tmp_path: Path, database_url: str, clean_redis: str, private_key: str
) -> AsyncIterator[Any]:
    async with FakeGitHub(app_slug=SLUG) as github, FakeLLM() as llm, FakeSlack() as slack:
        settings = stack_settings(
            tmp_path,
            database_url,
            clean_redis,
            private_key,
            github,
            llm,
            **slack_side(slack.api_url, {CHANNEL: [REPO]}),
        )
        runtime = await Runtime.start(settings)
        await install(runtime.store.sessions, REPO, INSTALLATION)
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield runtime, SlackClient(http), github, llm, slack
        await runtime.close()


async def test_a_slash_command_ends_with_the_pr_link_in_its_thread(services: Any, remote: Path) -> None:
    runtime, client, github, llm, slack = services
    repo = github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})
    llm.reply_json({"summary": "Fix the typo", "steps": [
        {"title": "Fix the README typo", "rationale": "r", "acceptance": "Hello", "files": ["README.md"]},
    ]})  # fmt: skip
    llm.reply_tool_calls(("edit_file", {"path": "README.md", "old_text": "Helo", "new_text": "Hello"}))
    llm.reply_text("Fixed the typo.")

    ack = await client.command(f"{REPO} fix the typo in the README --budget 2.50")
    assert ack.status_code == 200
    await runtime.slack.wait_idle()
    [job] = await runtime.store.list_jobs()
    assert (job.trigger, job.repo, job.budget_usd, job.installation_id) == ("slack", REPO, 2.5, INSTALLATION)

    await work_off_the_queue(runtime)

    view = await runtime.store.view(job.id)
    assert view.state is JobState.SUCCEEDED, view.failure_reason
    assert git(remote, "show", f"{view.branch}:README.md") == "Hello World\n"
    [pull] = repo.pulls.values()
    assert len([m for m in slack.messages(CHANNEL) if "thread_ts" not in m]) == 1, "one parent message"
    thread = slack.messages(CHANNEL, thread_ts=view.reporter_state["slack"][f"thread:{CHANNEL}"]["ts"])
    final = thread[-1]["text"]
    assert view.pr_url and view.pr_url in final and f"<@{USER}>" in final
    assert view.pr_number == pull["number"]
    assert list(repo.check_runs.values())[-1]["conclusion"] == "success", "a Slack job reports on GitHub too"
    updates = [c.args for c in slack.calls["chat.update"]]
    assert updates and "succeeded" in str(updates[-1]).lower()


async def test_naming_an_issue_gives_the_model_the_issues_text(services: Any, remote: Path) -> None:
    runtime, client, github, llm, _ = services
    repo = github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})
    repo.issues[5] = {"title": "README typo", "body": "The README says Helo; it should say Hello."}
    llm.reply_json({"summary": "Fix", "steps": [
        {"title": "Fix the README typo", "rationale": "r", "acceptance": "Hello", "files": ["README.md"]},
    ]})  # fmt: skip
    llm.reply_tool_calls(("edit_file", {"path": "README.md", "old_text": "Helo", "new_text": "Hello"}))
    llm.reply_text("Fixed.")

    await client.command(f"{REPO}#5 keep the trailing newline")
    await runtime.slack.wait_idle()
    await work_off_the_queue(runtime)

    [job] = await runtime.store.list_jobs()
    assert job.state == JobState.SUCCEEDED, job.failure_reason
    planner_prompt = str(llm.requests[0]["messages"])
    assert "The README says Helo; it should say Hello." in planner_prompt
    assert "keep the trailing newline" in planner_prompt


async def test_an_issue_that_cannot_be_read_fails_the_job_saying_so(services: Any, remote: Path) -> None:
    runtime, client, github, llm, _ = services
    github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})

    await client.command(f"{REPO}#404")
    await runtime.slack.wait_idle()
    await work_off_the_queue(runtime)

    [job] = await runtime.store.list_jobs()
    assert job.state == JobState.FAILED
    assert (job.failure_reason or "").startswith(f"could not read issue #404 of {REPO}")
    assert llm.requests == []


async def test_a_job_that_ends_while_slack_is_down_gets_its_ending_posted_once_slack_is_back(
    services: Any, remote: Path
) -> None:
    runtime, client, github, llm, slack = services
    github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})
    llm.reply_json({"summary": "Fix", "steps": [
        {"title": "Fix the README typo", "rationale": "r", "acceptance": "Hello", "files": ["README.md"]},
    ]})  # fmt: skip
    llm.reply_tool_calls(("edit_file", {"path": "README.md", "old_text": "Helo", "new_text": "Hello"}))
    llm.reply_text("Fixed the typo.")
    await client.command(f"{REPO} fix the typo in the README")
    await runtime.slack.wait_idle()
    [job] = await runtime.store.list_jobs()
    ctx = worker_context(runtime)

    slack.down = True
    before = len(slack.messages(CHANNEL))
    await work_off_the_queue(runtime)
    assert (await runtime.store.get(job.id)).state == JobState.SUCCEEDED
    assert await runtime.store.reporters_behind(utcnow() - timedelta(minutes=5)) == [(job.id, "slack")]
    assert (await reconcile(ctx))["reported"] == 0, "Slack still down"

    slack.down = False
    assert (await reconcile(ctx))["reported"] == 0, "the next try waits (backoff), even with Slack back"
    assert len(slack.messages(CHANNEL)) == before
    await runtime.queue.redis.delete(f"{CATCH_UP_PREFIX}{job.id}:slack:next")  # the wait has passed

    assert (await reconcile(ctx))["reported"] == 1
    view = await runtime.store.view(job.id)
    thread = slack.messages(CHANNEL, thread_ts=view.reporter_state["slack"][f"thread:{CHANNEL}"]["ts"])
    assert view.pr_url and view.pr_url in thread[-1]["text"] and f"<@{USER}>" in thread[-1]["text"]
    posted = len(slack.messages(CHANNEL))
    assert (await reconcile(ctx))["reported"] == 0
    assert await runtime.store.reporters_behind(utcnow() - timedelta(minutes=5)) == []
    assert len(slack.messages(CHANNEL)) == posted, "shown once"
