"""Store first, decide later, through the whole service (web app, ARQ on Redis, the worker's retries):
GitHub or Slack failing at the moment of a trigger loses nothing and fakes nothing."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from autodev.app import create_app
from autodev.runtime import Runtime
from autodev.serve import build_worker
from engine.store.models import GitHubDelivery
from github_app.client import MAX_RETRIES
from tests.bot.conftest import CHANNEL, SlackClient, slack_side
from tests.bot.conftest import REPO as SLACK_REPO
from tests.conftest import install
from tests.e2e.test_github_flow import SLUG, labeled_issue, stack_settings
from tests.e2e.test_github_flow import remote as remote
from tests.github_app.conftest import REPO, deliver
from tests.github_app.conftest import private_key as private_key
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import FakeLLM

PERMISSION = rf"/repos/{REPO}/collaborators/alice/permission"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once the socket is closed


@pytest.fixture
async def service(
    tmp_path: Path, database_url: str, clean_redis: str, private_key: str
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient, FakeGitHub]]:
    async with FakeGitHub(app_slug=SLUG) as github, FakeLLM() as llm:
        settings = stack_settings(
            tmp_path, database_url, clean_redis, private_key, github, llm, trigger_retry_base_s=0.01
        )
        runtime = await Runtime.start(settings)
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield runtime, http, github
        await runtime.close()


async def decide(runtime: Runtime) -> Any:
    """A burst worker: the stored deliveries (with their retries), then whatever jobs they made."""
    worker = build_worker(runtime, burst=True)
    await worker.main()
    return worker


async def rows(runtime: Runtime) -> list[GitHubDelivery]:
    async with runtime.store.sessions() as session:
        return list(await session.scalars(select(GitHubDelivery)))


async def test_a_permission_lookup_failing_three_tries_then_answering_ends_in_exactly_one_job(
    service: tuple[Runtime, httpx.AsyncClient, FakeGitHub], remote: Path
) -> None:
    runtime, http, github = service
    # A real repository, and a model with nothing to say: the job the delivery makes ends fast.
    repo = github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})
    github.fail("GET", PERMISSION, times=3 * (MAX_RETRIES + 1), status=503)

    accepted = await deliver(http, "issues", labeled_issue(runtime.settings), delivery="flaky")
    assert (accepted.status_code, accepted.json()) == (202, {"delivery": "flaky", "stored": True})
    worker = await decide(runtime)

    assert worker.jobs_retried == 3  # the delivery's three failed tries, each deferred with backoff
    [job] = await runtime.store.list_jobs()
    assert job.dedupe_key == "github:flaky"
    assert [(r.id, r.state, r.job_id) for r in await rows(runtime)] == [("flaky", "done", job.id)]
    assert not [c for c in repo.comments.values() if "could not act" in c["body"]]


async def test_a_permission_lookup_failing_for_good_ends_in_one_comment_and_no_job(
    service: tuple[Runtime, httpx.AsyncClient, FakeGitHub],
) -> None:
    runtime, http, github = service
    repo = github.add_repo(REPO, writers={"alice"})
    github.fail("GET", PERMISSION, times=10_000, status=502)

    assert (await deliver(http, "issues", labeled_issue(runtime.settings))).status_code == 202
    worker = await decide(runtime)

    assert worker.jobs_retried == runtime.settings.trigger_max_tries - 1
    assert await runtime.store.list_jobs() == []
    [notice] = repo.comments.values()
    assert "@alice I could not act on this: GitHub kept failing while I was checking" in notice["body"]
    assert [r.state for r in await rows(runtime)] == ["failed"]


async def test_a_slash_command_is_acked_and_stored_while_slacks_api_cannot_be_reached(
    tmp_path: Path, database_url: str, clean_redis: str, private_key: str
) -> None:
    """Regression: Bolt called auth.test inline on the first request; with Slack unreachable the command
    got a 500 and no job."""
    async with FakeGitHub(app_slug=SLUG) as github, FakeLLM() as llm:
        settings = stack_settings(
            tmp_path,
            database_url,
            clean_redis,
            private_key,
            github,
            llm,
            **slack_side(f"http://127.0.0.1:{closed_port()}/api/", {CHANNEL: [SLACK_REPO]}),
        )
        runtime = await Runtime.start(settings)
        try:
            await install(runtime.store.sessions, SLACK_REPO)
            runtime.slack.start()  # the background check, as `autodev web` starts it
            transport = httpx.ASGITransport(app=create_app(runtime))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                ack = await SlackClient(http).command(f"{SLACK_REPO} fix the typo")
                assert ack.status_code == 200 and "is saved and starting" in ack.text
                await runtime.slack.wait_idle()
                [job] = await runtime.store.list_jobs()
                assert (job.trigger, job.repo) == ("slack", SLACK_REPO)
                assert (await runtime.queue.depth())[0] == 1, "queued even though the parent message failed"
                ready = (await http.get("/readyz")).json()
                assert ready["ready"] is True
                assert ready["checks"]["slack"]["ok"] is False
                assert "Slack unreachable" in ready["checks"]["slack"]["error"]
                home = (await http.get("/")).text
                assert "configured, but not verified yet: Slack unreachable" in home
        finally:
            await runtime.close()
