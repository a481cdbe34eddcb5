"""What stored deliveries become in the worker: the sender's permission, jobs, actions, replies, and what the
user is told when GitHub fails. Deliveries go in through the real webhook; `settle` runs the worker's tries
in process (the same through ARQ, with its backoff, is in tests/e2e/test_trigger_retries.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.settings import Settings
from engine.store.jobs import JobRequest, JobStore
from engine.store.models import GitHubDelivery, JobState
from github_app import GitHubApp
from github_app.client import MAX_RETRIES
from tests.github_app.conftest import (
    INSTALLATION,
    REPO,
    RecordingQueue,
    as_app_delivery,
    deliver,
    http_client,
    labeled,
    payload,
    settle,
)
from tests.support.fake_github import FakeGitHub

SLUG = "autodev-test"
PERMISSION = rf"/repos/{REPO}/collaborators/(alice|mallory)/permission"


def comment(body: str, *, on_pr: bool = False, sender: str = "alice") -> dict:
    data = as_app_delivery(payload("issue_comment", "created.payload.json"), sender)
    data["comment"]["body"] = body
    if on_pr:
        data["issue"]["pull_request"] = {"url": "x", "html_url": "x", "diff_url": "x", "patch_url": "x"}
    return data


def autodev_pull(github: FakeGitHub, number: int, branch: str = "autodev/1-spelling") -> None:
    github.repos[REPO].pulls[number] = {
        "number": number,
        "node_id": f"PR_{number}",
        "title": "Fix spelling",
        "body": "Closes #1",
        "draft": True,
        "state": "open",
        "head": {"ref": branch, "sha": "a" * 40},
        "base": {"ref": "main", "sha": "b" * 40},
    }


async def seed_job(store: JobStore, repo: str = REPO, branch: str | None = "autodev/1-spelling") -> str:
    job, _ = await store.submit(
        JobRequest(
            dedupe_key=f"seed-{repo}",
            trigger="github_issue",
            repo=repo,
            title="t",
            task="t",
            requester="alice",
            installation_id=INSTALLATION,
            branch=branch,
            issue_number=1,
        )
    )
    return job.id


async def delivery_rows(sessions: async_sessionmaker[AsyncSession]) -> list[GitHubDelivery]:
    async with sessions() as session:
        return list(await session.scalars(select(GitHubDelivery)))


async def test_a_labeled_issue_from_a_writer_becomes_one_queued_job(
    client: httpx.AsyncClient,
    github: FakeGitHub,
    gh_app: GitHubApp,
    store: JobStore,
    queue: RecordingQueue,
    gh_settings: Settings,
) -> None:
    repo = github.add_repo(REPO, writers={"alice"})
    repo.comments[5] = {"id": 5, "issue_number": 1, "body": "Also the README", "user": {"login": "bob"}}
    await deliver(client, "issues", labeled(gh_settings), delivery="d-1")
    await settle(gh_app, queue)
    [job] = await store.list_jobs()
    assert queue.enqueued == [job.id]
    assert (job.repo, job.installation_id, job.issue_number, job.kind) == (REPO, INSTALLATION, 1, "implement")
    assert job.dedupe_key == "github:d-1" and job.requester == "alice"
    assert "Spelling error in the README file" in job.task
    assert "Also the README" not in job.task, "comments are read by the job, not the trigger"
    assert job.origin["issue_number"] == 1
    [call] = github.calls_to("GET", rf"/repos/{REPO}/collaborators/alice/permission")
    assert call.auth == f"token {github.token_for(INSTALLATION)}"


async def test_a_permission_lookup_that_fails_three_tries_then_answers_makes_exactly_one_job(
    client: httpx.AsyncClient,
    github: FakeGitHub,
    gh_app: GitHubApp,
    store: JobStore,
    queue: RecordingQueue,
    gh_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Regression: the webhook answered 503 "please redeliver" and GitHub never redelivers by itself."""
    repo = github.add_repo(REPO, writers={"alice"})
    # Each try's client retries too; three whole tries fail, the fourth is answered.
    github.fail("GET", PERMISSION, times=3 * (MAX_RETRIES + 1), status=502)
    assert (await deliver(client, "issues", labeled(gh_settings))).status_code == 202
    assert await settle(gh_app, queue) == ["job submitted"]
    assert len(github.calls_to("GET", PERMISSION)) == 3 * (MAX_RETRIES + 1) + 1
    assert len(await store.list_jobs()) == 1 and len(queue.enqueued) == 1
    assert repo.comments == {}
    [row] = await delivery_rows(sessions)
    assert row.state == "done"


async def test_a_permission_lookup_that_fails_for_good_ends_in_one_comment_saying_why_and_no_job(
    client: httpx.AsyncClient,
    github: FakeGitHub,
    gh_app: GitHubApp,
    store: JobStore,
    queue: RecordingQueue,
    gh_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    repo = github.add_repo(REPO, writers={"alice"})
    github.fail("GET", PERMISSION, times=1000, status=502)
    await deliver(client, "issues", labeled(gh_settings))
    [outcome] = await settle(gh_app, queue)
    assert outcome.startswith("failed: GitHub failed while checking @alice's permission")
    assert await store.list_jobs() == [] and queue.enqueued == []
    tries = gh_settings.trigger_max_tries
    assert len(github.calls_to("GET", PERMISSION)) == tries * (MAX_RETRIES + 1)
    [notice] = repo.comments.values()
    assert notice["issue_number"] == 1
    assert notice["body"].startswith(
        "@alice I could not act on this: GitHub kept failing while I was checking"
    )
    assert "502" in notice["body"] and "remove the `auto-dev` label and add it again" in notice["body"]
    [row] = await delivery_rows(sessions)
    assert row.state == "failed" and "permission" in (row.outcome or "")


async def test_a_refusal_from_github_is_not_retried_and_is_told(
    client: httpx.AsyncClient,
    github: FakeGitHub,
    gh_app: GitHubApp,
    store: JobStore,
    queue: RecordingQueue,
    gh_settings: Settings,
) -> None:
    repo = github.add_repo(REPO, writers={"alice"})
    github.fail("GET", PERMISSION, times=1000, status=403)  # e.g. "Resource not accessible by integration"
    await deliver(client, "issues", labeled(gh_settings))
    await settle(gh_app, queue)
    assert len(github.calls_to("GET", PERMISSION)) == 1
    [notice] = repo.comments.values()
    assert "GitHub refused while I was checking @alice's permission" in notice["body"]
    assert "HTTP 403" in notice["body"] and await store.list_jobs() == []


async def test_a_label_from_someone_without_write_access_gets_one_reply_an_hour_and_no_job(
    client: httpx.AsyncClient,
    github: FakeGitHub,
    gh_app: GitHubApp,
    store: JobStore,
    queue: RecordingQueue,
    gh_settings: Settings,
) -> None:
    repo = github.add_repo(REPO, writers={"alice"})
    for _ in range(2):
        data = labeled(gh_settings, sender="mallory")
        data["issue"]["updated_at"] = f"2026-01-0{_ + 1}T00:00:00Z"  # a new label event: a new body
        assert (await deliver(client, "issues", data)).status_code == 202
    await settle(gh_app, queue)
    assert await store.list_jobs() == [] and queue.enqueued == []
    [reply] = repo.comments.values()
    assert "@mallory" in reply["body"] and "write, maintain or admin" in reply["body"]


async def test_help_from_a_non_writer_is_answered_once_per_issue_per_hour(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    """Regression: a non-writer's `@app help` made the App post a comment every time."""
    repo = github.add_repo(REPO)
    for text in (f"@{SLUG} help", f"@{SLUG} help please", f"@{SLUG} implement"):
        assert (await deliver(client, "issue_comment", comment(text, sender="anyone"))).status_code == 202
    await settle(gh_app, queue)
    [reply] = repo.comments.values()
    assert f"@{SLUG} revise" in reply["body"] and f"@{SLUG} cancel" in reply["body"]
    assert await store.list_jobs() == []


async def test_help_from_a_writer_is_answered_every_time(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, queue: RecordingQueue
) -> None:
    repo = github.add_repo(REPO, writers={"alice"})
    for text in (f"@{SLUG} help", f"@{SLUG} help again"):
        await deliver(client, "issue_comment", comment(text))
    await settle(gh_app, queue)
    assert len(repo.comments) == 2


async def test_the_permission_answer_is_cached_in_redis(
    github: FakeGitHub, store: JobStore, gh_settings: Settings, clean_redis: str
) -> None:
    github.add_repo(REPO, writers={"alice"})
    redis = aioredis.Redis.from_url(clean_redis)
    queue = RecordingQueue()
    apps = [GitHubApp(gh_settings, store, queue, redis) for _ in range(2)]  # two worker processes
    for n, app in enumerate(apps):
        async with http_client(app) as client:
            data = labeled(gh_settings)
            data["issue"]["updated_at"] = f"2026-01-0{n + 1}T00:00:00Z"
            await deliver(client, "issues", data)
            await settle(app, queue)
    assert len(github.calls_to("GET", rf"/repos/{REPO}/collaborators/alice/permission")) == 1
    assert len(await store.list_jobs()) == 2
    await redis.aclose()


async def test_a_burst_from_one_sender_asks_github_for_the_permission_once(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    github.add_repo(REPO, writers={"alice"})
    for n in range(8):
        await deliver(client, "issue_comment", comment(f"@{SLUG} implement number {n}"))
    assert gh_app.deliveries is not None
    ids, queue.deliveries = list(queue.deliveries), []
    outcomes = await asyncio.gather(*(gh_app.deliveries.handle(d, last_try=False) for d in ids))
    assert outcomes == ["job submitted"] * 8
    assert len(github.calls_to("GET", rf"/repos/{REPO}/collaborators/alice/permission")) == 1


async def test_implement_comment_on_an_issue_starts_a_job_reacting_to_that_comment(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    github.add_repo(REPO, writers={"alice"})
    await deliver(client, "issue_comment", comment(f"Please @{SLUG} implement this"))
    await settle(gh_app, queue)
    [job] = await store.list_jobs()
    assert job.trigger == "github_comment" and job.origin["reaction"][0] == "comment"
    assert github.calls_to("GET", "/app")  # the slug came from GET /app


async def test_revise_on_an_autodev_pull_request_makes_a_revise_job_on_its_branch(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    github.add_repo(REPO, writers={"alice"})
    autodev_pull(github, 1)
    data = comment(f"@{SLUG} revise rename the helper to `fix_spelling`\n\n- keep the old name", on_pr=True)
    await deliver(client, "issue_comment", data)
    await settle(gh_app, queue)
    [job] = await store.list_jobs()
    assert (job.kind, job.branch, job.pr_number, job.base_branch) == (
        "revise",
        "autodev/1-spelling",
        1,
        "main",
    )
    assert "rename the helper to `fix_spelling`\n\n- keep the old name" in job.task
    assert queue.enqueued == [job.id]


async def test_revise_on_a_pull_request_autodev_did_not_open_is_ignored(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    github.add_repo(REPO, writers={"alice"})
    autodev_pull(github, 1, branch="feature/x")
    await deliver(client, "issue_comment", comment(f"@{SLUG} revise more", on_pr=True))
    assert await settle(gh_app, queue) == ["not a pull request autodev opened"]
    assert await store.list_jobs() == []


async def test_cancel_and_retry_comments_act_on_the_branchs_latest_job(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    github.add_repo(REPO, writers={"alice"})
    autodev_pull(github, 1)
    job_id = await seed_job(store)
    await deliver(client, "issue_comment", comment(f"@{SLUG} cancel", on_pr=True))
    assert await settle(gh_app, queue) == ["cancel requested"]
    assert (await store.get(job_id)).state == JobState.CANCELLED
    await deliver(client, "issue_comment", comment(f"@{SLUG} retry", on_pr=True))
    assert await settle(gh_app, queue) == ["retried"]
    [new] = [j for j in await store.list_jobs() if j.id != job_id]
    assert new.retry_of == job_id and queue.enqueued == [new.id]


async def test_cancel_on_an_issue_stops_that_issues_job_and_a_second_cancel_says_it_ended(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    github.add_repo(REPO, writers={"alice"})
    job_id = await seed_job(store, branch=None)
    await deliver(client, "issue_comment", comment(f"@{SLUG} cancel"))
    await deliver(client, "issue_comment", comment(f"@{SLUG} cancel now"))
    [first, second] = await settle(gh_app, queue)
    assert first == "cancel requested" and "already ended" in second
    assert (await store.get(job_id)).state == JobState.CANCELLED
    assert "already ended" in list(github.repos[REPO].comments.values())[-1]["body"]


async def test_cancel_on_an_issue_without_a_job_says_so_about_the_issue(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, queue: RecordingQueue
) -> None:
    """Regression: the reply said "no autodev job for this pull request" on a plain issue."""
    github.add_repo(REPO, writers={"alice"})
    await deliver(client, "issue_comment", comment(f"@{SLUG} cancel"))
    assert await settle(gh_app, queue) == ["no job"]
    assert list(github.repos[REPO].comments.values())[-1]["body"] == "I found no autodev job for this issue."


async def test_check_run_buttons_cancel_and_retry_the_job_named_in_external_id(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    github.add_repo("electron/electron", writers={"alice"})
    github.add_repo("github/hello-world", writers={"alice"})
    job_id = await seed_job(store, repo="electron/electron")
    action = as_app_delivery(payload("check_run", "requested_action.payload.json"))
    action["check_run"].update(name="autodev", external_id=job_id)
    action["requested_action"]["identifier"] = "cancel"
    await deliver(client, "check_run", action)
    assert await settle(gh_app, queue) == ["cancel requested"]
    assert (await store.get(job_id)).state == JobState.CANCELLED
    rerun = as_app_delivery(payload("check_run", "rerequested.payload.json"))
    rerun["check_run"].update(name="autodev", external_id=job_id)
    rerun["repository"]["full_name"] = "electron/electron"
    await deliver(client, "check_run", rerun)
    assert await settle(gh_app, queue) == ["retried"]
    assert any(j.retry_of == job_id for j in await store.list_jobs())


async def test_a_delivery_handled_twice_makes_one_job(
    client: httpx.AsyncClient,
    github: FakeGitHub,
    gh_app: GitHubApp,
    store: JobStore,
    queue: RecordingQueue,
    gh_settings: Settings,
    tmp_path: Path,
) -> None:
    github.add_repo(REPO, writers={"alice"})
    await deliver(client, "issues", labeled(gh_settings), delivery="twice")
    assert gh_app.deliveries is not None
    first = await gh_app.deliveries.handle("twice", last_try=False)
    again = await gh_app.deliveries.handle("twice", last_try=False)  # ARQ may run a job more than once
    assert (first, again) == ("job submitted", "already done")
    assert len(await store.list_jobs()) == 1
