"""End to end from Slack: a job's question answered by a reply in its thread, and a plan approved (or not)
with the thread's Approve button — every part real but Slack, GitHub and the LLM."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from autodev.app import create_app
from autodev.runtime import Runtime
from bot.render import APPROVE_ACTION, CANCEL_ACTION
from engine import events
from engine.store.models import JobState
from tests.bot.conftest import CHANNEL, REPO, USER, SlackClient, slack_side
from tests.conftest import install
from tests.e2e.test_github_flow import make_remote, stack_settings, work_off_the_queue
from tests.e2e.test_waiting import EDIT, PLAN, QUESTION, branches
from tests.github_app.conftest import private_key as private_key
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import FakeLLM
from tests.support.fake_slack import FakeSlack

INSTALLATION = 4242
STRANGER = "USTRANGER"  # in the channel, but not granted the repository


@pytest.fixture
async def services(
    tmp_path: Path, database_url: str, clean_redis: str, private_key: str
) -> AsyncIterator[Any]:
    """The whole service; USER (not the channel) is granted REPO, so someone else in the thread is not."""
    async with FakeGitHub() as github, FakeLLM() as llm, FakeSlack() as slack:
        settings = stack_settings(
            tmp_path,
            database_url,
            clean_redis,
            private_key,
            github,
            llm,
            **slack_side(slack.api_url, {USER: [REPO]}),
        )
        runtime = await Runtime.start(settings)
        await install(runtime.store.sessions, REPO, INSTALLATION)
        github.add_repo(REPO, clone_url=f"file://{make_remote(tmp_path)}", writers={"alice"})
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield runtime, SlackClient(http), llm, slack
        await runtime.close()


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    """Wait for an event listener's work: Bolt acknowledges an event first and runs its listener after."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "the listener never did it"
        await asyncio.sleep(0.02)


async def orchestrate(runtime: Runtime, client: SlackClient, text: str) -> str:
    assert (await client.command(text)).status_code == 200
    await runtime.slack.wait_idle()
    await work_off_the_queue(runtime)
    [job] = await runtime.store.list_jobs()
    return job.id


async def test_a_reply_in_the_thread_from_an_allowed_user_answers_the_question(
    services: Any, tmp_path: Path
) -> None:
    runtime, client, llm, slack = services
    llm.reply_json({"question": QUESTION})
    job_id = await orchestrate(runtime, client, f"{REPO} fix the README")

    view = await runtime.store.view(job_id)
    assert view.state is JobState.WAITING
    thread_ts = view.reporter_state["slack"][f"thread:{CHANNEL}"]["ts"]
    thread = slack.messages(CHANNEL, thread_ts=thread_ts)
    assert QUESTION in thread[-1]["text"] and f"<@{USER}>" in thread[-1]["text"]

    # Someone not allowed the repository replies: told so, and the job still waits.
    def told() -> list[str]:
        return [c.args["text"] for c in slack.calls["chat.postEphemeral"] if c.args.get("user") == STRANGER]

    async def stranger_told() -> bool:
        return bool(told())

    assert (await client.thread_reply("Hi!", thread_ts=thread_ts, user=STRANGER)).status_code == 200
    await until(stranger_told)
    assert "can answer" in told()[-1]
    assert (await runtime.store.get(job_id)).state == JobState.WAITING

    # A reply in another thread is just a message.
    await client.thread_reply("Hello", thread_ts="1600000000.000100")
    await asyncio.sleep(0.3)
    await runtime.slack.wait_idle()
    assert (await runtime.store.get(job_id)).state == JobState.WAITING

    llm.reply_json(PLAN)
    llm.reply_tool_calls(EDIT)
    llm.reply_text("Fixed.")
    await client.thread_reply("Hello, as in the title.", thread_ts=thread_ts)

    async def queued() -> bool:
        return (await runtime.store.get(job_id)).state == JobState.QUEUED

    await until(queued)
    await runtime.slack.wait_idle()
    await work_off_the_queue(runtime)

    view = await runtime.store.view(job_id)
    assert view.state is JobState.SUCCEEDED, view.failure_reason
    assert "Hello, as in the title." in str(llm.requests[1]["messages"])
    assert [e.data for e in view.events if e.type == events.ANSWERED] == [
        {"text": "Hello, as in the title.", "by": f"slack:{USER}", "via": "slack"}
    ]


async def test_approve_parses_and_the_plan_waits_for_the_approve_button(
    services: Any, tmp_path: Path
) -> None:
    runtime, client, llm, slack = services
    llm.reply_json(PLAN)
    job_id = await orchestrate(runtime, client, f"{REPO} fix the README --approve")

    view = await runtime.store.view(job_id)
    assert view.state is JobState.WAITING and view.task == "fix the README"
    thread = slack.messages(CHANNEL, thread_ts=view.reporter_state["slack"][f"thread:{CHANNEL}"]["ts"])
    buttons = [e["action_id"] for b in thread[-1].get("blocks") or [] for e in b.get("elements", [])]
    assert buttons == [APPROVE_ACTION, CANCEL_ACTION]
    assert len(llm.requests) == 1 and branches(tmp_path / "hello.git") == ["main"], "no coding yet"

    await client.click(APPROVE_ACTION, job_id, user=STRANGER)
    await runtime.slack.wait_idle()
    assert (await runtime.store.get(job_id)).state == JobState.WAITING

    llm.reply_tool_calls(EDIT)
    llm.reply_text("Fixed.")
    await client.click(APPROVE_ACTION, job_id)
    await runtime.slack.wait_idle()
    await work_off_the_queue(runtime)

    view = await runtime.store.view(job_id)
    assert view.state is JobState.SUCCEEDED, view.failure_reason
    assert [e.data for e in view.events if e.type == events.APPROVED] == [
        {"by": f"slack:{USER}", "via": "slack"}
    ]
    told = [c.args["text"] for c in slack.calls["chat.postEphemeral"]]
    assert any("not allowed" in t for t in told) and any("Plan approved" in t for t in told)


async def test_the_cancel_button_under_a_plan_ends_the_job_before_any_coding(
    services: Any, tmp_path: Path
) -> None:
    runtime, client, llm, slack = services
    llm.reply_json(PLAN)
    job_id = await orchestrate(runtime, client, f"{REPO} fix the README --approve")

    await client.click(CANCEL_ACTION, job_id)
    await runtime.slack.wait_idle()
    await client.click(APPROVE_ACTION, job_id)
    await runtime.slack.wait_idle()
    await work_off_the_queue(runtime)

    view = await runtime.store.view(job_id)
    assert view.state is JobState.CANCELLED
    assert len(llm.requests) == 1 and branches(tmp_path / "hello.git") == ["main"]
    thread = slack.messages(CHANNEL, thread_ts=view.reporter_state["slack"][f"thread:{CHANNEL}"]["ts"])
    assert "Cancelled" in thread[-1]["text"]
    assert "Nothing to approve" in slack.calls["chat.postEphemeral"][-1].args["text"]
