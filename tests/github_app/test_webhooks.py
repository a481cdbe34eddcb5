"""POST /github/webhooks, fed real payloads with real signatures, against a fake GitHub on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.settings import Settings
from engine.store.jobs import JobRequest, JobStore
from engine.store.models import Installation, InstallationRepo, JobKind, JobState
from github_app import GitHubApp
from github_app.client import MAX_RETRIES
from tests.conftest import make_settings
from tests.github_app.conftest import (
    INSTALLATION,
    REPO,
    RecordingQueue,
    as_app_delivery,
    deliver,
    http_client,
    payload,
)
from tests.support.fake_github import FakeGitHub

SLUG = "autodev-test"


def labeled(settings: Settings, sender: str = "alice") -> dict[str, object]:
    data = as_app_delivery(payload("issues", "labeled.payload.json"), sender)
    data["label"]["name"] = settings.autodev_trigger_label
    return data


def comment(body: str, *, on_pr: bool = False, sender: str = "alice", sender_type: str = "User") -> dict:
    data = as_app_delivery(payload("issue_comment", "created.payload.json"), sender, sender_type)
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


async def jobs(store: JobStore) -> list:
    return await store.list_jobs()


async def test_a_labeled_issue_from_a_writer_becomes_one_queued_job(
    client: httpx.AsyncClient,
    github: FakeGitHub,
    store: JobStore,
    queue: RecordingQueue,
    gh_settings: Settings,
) -> None:
    repo = github.add_repo(REPO, writers={"alice"})
    repo.comments[5] = {"id": 5, "issue_number": 1, "body": "Also the README", "user": {"login": "bob"}}
    response = await deliver(client, "issues", labeled(gh_settings), delivery="d-1")
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    assert queue.enqueued == [job_id]
    job = await store.get(job_id)
    assert (job.repo, job.installation_id, job.issue_number, job.kind) == (REPO, INSTALLATION, 1, "implement")
    assert job.dedupe_key == "github:d-1" and job.requester == "alice"
    assert "Spelling error in the README file" in job.task
    assert "Also the README" not in job.task, "comments are read by the worker, not the webhook"
    assert github.calls_to("GET", rf"/repos/{REPO}/issues/1/comments") == []
    assert job.origin["issue_number"] == 1
    # The permission was asked of GitHub as the installation (with its token).
    [call] = github.calls_to("GET", rf"/repos/{REPO}/collaborators/alice/permission")
    assert call.auth == f"token {github.token_for(INSTALLATION)}"


async def test_a_redelivery_gives_the_same_job_and_enqueues_nothing(
    client: httpx.AsyncClient,
    github: FakeGitHub,
    store: JobStore,
    queue: RecordingQueue,
    gh_settings: Settings,
) -> None:
    github.add_repo(REPO, writers={"alice"})
    first = await deliver(client, "issues", labeled(gh_settings), delivery="same")
    second = await deliver(client, "issues", labeled(gh_settings), delivery="same")
    assert second.status_code == 202
    assert first.json()["job_id"] == second.json()["job_id"]
    assert len(await jobs(store)) == 1 and len(queue.enqueued) == 1


async def test_a_label_from_someone_without_write_access_gets_a_reply_and_no_job(
    client: httpx.AsyncClient,
    github: FakeGitHub,
    store: JobStore,
    queue: RecordingQueue,
    gh_settings: Settings,
) -> None:
    repo = github.add_repo(REPO, writers={"alice"})
    response = await deliver(client, "issues", labeled(gh_settings, sender="mallory"))
    assert response.status_code == 202 and "job_id" not in response.json()
    assert await jobs(store) == [] and queue.enqueued == []
    [reply] = repo.comments.values()
    assert "@mallory" in reply["body"] and "write, maintain or admin" in reply["body"]


async def test_the_permission_answer_is_cached_in_redis(
    github: FakeGitHub, store: JobStore, tmp_path: Path, gh_settings: Settings, clean_redis: str
) -> None:
    import redis.asyncio as aioredis

    github.add_repo(REPO, writers={"alice"})
    redis = aioredis.Redis.from_url(clean_redis)
    app = GitHubApp(gh_settings, store, RecordingQueue(), redis)
    async with http_client(app) as client:
        for delivery in ("r-1", "r-2"):
            assert (
                await deliver(client, "issues", labeled(gh_settings), delivery=delivery)
            ).status_code == 202
    assert len(github.calls_to("GET", rf"/repos/{REPO}/collaborators/alice/permission")) == 1
    assert len(await jobs(store)) == 2
    await redis.aclose()


async def test_a_burst_from_one_sender_asks_github_for_the_permission_once(
    client: httpx.AsyncClient, github: FakeGitHub, store: JobStore, gh_settings: Settings
) -> None:
    github.add_repo(REPO, writers={"alice"})
    burst = [deliver(client, "issues", labeled(gh_settings), delivery=f"burst-{i}") for i in range(8)]
    answers = await asyncio.gather(*burst)
    assert [a.status_code for a in answers] == [202] * 8
    assert len(github.calls_to("GET", rf"/repos/{REPO}/collaborators/alice/permission")) == 1
    assert len(await jobs(store)) == 8


async def test_a_failed_permission_lookup_fails_its_burst_and_is_not_remembered(
    client: httpx.AsyncClient, github: FakeGitHub, store: JobStore, gh_settings: Settings
) -> None:
    github.add_repo(REPO, writers={"alice"})
    github.fail("GET", rf"/repos/{REPO}/collaborators/alice/permission", times=MAX_RETRIES + 1, status=502)
    burst = [deliver(client, "issues", labeled(gh_settings), delivery=f"down-{i}") for i in range(3)]
    assert [a.status_code for a in await asyncio.gather(*burst)] == [503] * 3
    assert await jobs(store) == []
    redelivered = await deliver(client, "issues", labeled(gh_settings), delivery="down-0")
    assert redelivered.status_code == 202 and len(await jobs(store)) == 1


async def test_other_labels_and_actions_are_acknowledged_and_ignored(
    client: httpx.AsyncClient, github: FakeGitHub, store: JobStore
) -> None:
    github.add_repo(REPO, writers={"alice"})
    other = as_app_delivery(payload("issues", "labeled.payload.json"))  # label "bug"
    opened = as_app_delivery(payload("issues", "opened.payload.json"))
    assert (await deliver(client, "issues", other)).status_code == 202
    assert (await deliver(client, "issues", opened)).status_code == 202
    assert await jobs(store) == []


async def test_bad_or_missing_signatures_are_refused_before_parsing(
    client: httpx.AsyncClient, store: JobStore, gh_settings: Settings
) -> None:
    data = labeled(gh_settings)
    assert (await deliver(client, "issues", data, secret="wrong")).status_code == 401
    assert (await deliver(client, "issues", data, signature="")).status_code == 401
    assert (await deliver(client, "issues", b"not json", signature="sha256=00")).status_code == 401
    assert await jobs(store) == []


async def test_an_oversized_body_is_refused_with_413(client: httpx.AsyncClient, store: JobStore) -> None:
    body = json.dumps({"padding": "x" * 300_000}).encode()
    assert (await deliver(client, "issues", body)).status_code == 413
    assert await jobs(store) == []


async def test_malformed_json_or_payload_is_a_400_not_a_500(
    client: httpx.AsyncClient, store: JobStore
) -> None:
    assert (await deliver(client, "issues", b"{not json")).status_code == 400
    assert (await deliver(client, "issues", b"[1, 2]")).status_code == 400
    assert (
        await deliver(client, "issues", {"action": "labeled", "issue": {"number": "x"}})
    ).status_code == 400
    assert await jobs(store) == []


async def test_unknown_events_are_acknowledged_and_ping_is_answered(client: httpx.AsyncClient) -> None:
    unknown = await deliver(client, "pull_request", payload("pull_request", "opened.payload.json"))
    assert unknown.status_code == 202 and "ignored" in unknown.json()
    assert (await deliver(client, "star", {"action": "created"})).status_code == 202
    assert (await deliver(client, "ping", payload("ping", "payload.json"))).status_code == 200


async def test_without_credentials_the_webhook_answers_503(tmp_path: Path, store: JobStore) -> None:
    app = GitHubApp(make_settings(tmp_path), store, None, None)
    async with http_client(app) as client:
        response = await deliver(client, "ping", {"zen": "hi"})
    assert response.status_code == 503 and response.json()["error"] == "GitHub App not configured"
    assert app.reporter_for is not None


async def test_a_bots_comment_never_makes_a_job(
    client: httpx.AsyncClient, github: FakeGitHub, store: JobStore
) -> None:
    github.add_repo(REPO, writers={"alice", "helper[bot]"})
    for sender, kind in (("helper[bot]", "User"), ("dependabot", "Bot"), (f"{SLUG}[bot]", "Bot")):
        data = comment(f"@{SLUG} implement", sender=sender, sender_type=kind)
        assert (await deliver(client, "issue_comment", data)).status_code == 202
    assert await jobs(store) == []
    assert github.calls == []  # not even a permission lookup


async def test_implement_comment_on_an_issue_starts_a_job_reacting_to_that_comment(
    client: httpx.AsyncClient, github: FakeGitHub, store: JobStore
) -> None:
    github.add_repo(REPO, writers={"alice"})
    response = await deliver(client, "issue_comment", comment(f"Please @{SLUG} implement this"))
    job = await store.get(response.json()["job_id"])
    assert job.trigger == "github_comment" and job.origin["reaction"][0] == "comment"
    assert github.calls_to("GET", "/app")  # the slug came from GET /app


async def test_help_replies_with_the_command_list(
    client: httpx.AsyncClient, github: FakeGitHub, store: JobStore
) -> None:
    repo = github.add_repo(REPO)
    assert (
        await deliver(client, "issue_comment", comment(f"@{SLUG} help", sender="anyone"))
    ).status_code == 202
    [reply] = repo.comments.values()
    assert f"@{SLUG} revise" in reply["body"] and f"@{SLUG} cancel" in reply["body"]
    assert await jobs(store) == []


async def test_revise_on_an_autodev_pull_request_makes_a_revise_job_on_its_branch(
    client: httpx.AsyncClient, github: FakeGitHub, store: JobStore, queue: RecordingQueue
) -> None:
    github.add_repo(REPO, writers={"alice"})
    autodev_pull(github, 1)
    data = comment(f"@{SLUG} revise rename the helper to fix_spelling", on_pr=True)
    job = await store.get((await deliver(client, "issue_comment", data)).json()["job_id"])
    assert (job.kind, job.branch, job.pr_number, job.base_branch) == (
        "revise",
        "autodev/1-spelling",
        1,
        "main",
    )
    assert "rename the helper to fix_spelling" in job.task
    assert queue.enqueued == [job.id]


async def test_revise_on_a_pull_request_autodev_did_not_open_is_ignored(
    client: httpx.AsyncClient, github: FakeGitHub, store: JobStore
) -> None:
    github.add_repo(REPO, writers={"alice"})
    autodev_pull(github, 1, branch="feature/x")
    data = comment(f"@{SLUG} revise more", on_pr=True)
    assert (await deliver(client, "issue_comment", data)).status_code == 202
    assert await jobs(store) == []


async def test_cancel_and_retry_comments_act_on_the_branchs_latest_job(
    client: httpx.AsyncClient, github: FakeGitHub, store: JobStore, queue: RecordingQueue
) -> None:
    github.add_repo(REPO, writers={"alice"})
    autodev_pull(github, 1)
    job, _ = await store.submit(
        JobRequest(
            dedupe_key="seed",
            trigger="github_issue",
            repo=REPO,
            title="t",
            task="t",
            requester="alice",
            installation_id=INSTALLATION,
            branch="autodev/1-spelling",
        )
    )
    cancelled = await deliver(client, "issue_comment", comment(f"@{SLUG} cancel", on_pr=True))
    assert cancelled.json() == {"job_id": job.id, "action": "cancel"}
    assert (await store.get(job.id)).state == JobState.CANCELLED
    retried = await deliver(client, "issue_comment", comment(f"@{SLUG} retry", on_pr=True))
    new = await store.get(retried.json()["job_id"])
    assert new.retry_of == job.id and queue.enqueued == [new.id]


async def test_a_change_request_review_on_an_autodev_pr_makes_a_revise_job_with_its_comments(
    client: httpx.AsyncClient, github: FakeGitHub, store: JobStore
) -> None:
    repo = github.add_repo(REPO, writers={"alice"})
    data = as_app_delivery(payload("pull_request_review", "submitted.payload.json"))
    data["review"].update(state="changes_requested", body="Needs tests")
    data["pull_request"]["head"]["ref"] = "autodev/1-spelling"
    repo.review_comments[data["review"]["id"]] = [{"path": "README.md", "line": 3, "body": "typo here"}]
    job = await store.get((await deliver(client, "pull_request_review", data)).json()["job_id"])
    assert job.kind == JobKind.REVISE and job.trigger == "github_review"
    assert "Needs tests" in job.task and "README.md:3" in job.task and "typo here" in job.task
    approved = as_app_delivery(payload("pull_request_review", "submitted.payload.json"))
    assert (await deliver(client, "pull_request_review", approved)).status_code == 202
    assert len(await jobs(store)) == 1


async def test_check_run_buttons_cancel_and_retry_the_job_named_in_external_id(
    client: httpx.AsyncClient, github: FakeGitHub, store: JobStore, queue: RecordingQueue
) -> None:
    github.add_repo("electron/electron", writers={"alice"})
    github.add_repo("github/hello-world", writers={"alice"})
    job, _ = await store.submit(
        JobRequest(
            dedupe_key="k",
            trigger="github_issue",
            repo="electron/electron",
            title="t",
            task="t",
            requester="alice",
            installation_id=INSTALLATION,
        )
    )
    action = as_app_delivery(payload("check_run", "requested_action.payload.json"))
    action["check_run"].update(name="autodev", external_id=job.id)
    action["requested_action"]["identifier"] = "cancel"
    assert (await deliver(client, "check_run", action)).json()["action"] == "cancel"
    assert (await store.get(job.id)).state == JobState.CANCELLED
    rerun = as_app_delivery(payload("check_run", "rerequested.payload.json"))
    rerun["check_run"].update(name="autodev", external_id=job.id)
    rerun["repository"]["full_name"] = "electron/electron"
    retried = await deliver(client, "check_run", rerun)
    assert (await store.get(retried.json()["job_id"])).retry_of == job.id


async def test_installation_events_keep_the_installation_tables(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    assert (
        await deliver(client, "installation", payload("installation", "created.payload.json"))
    ).status_code == 200
    added = payload("installation_repositories", "added.payload.json")
    assert (await deliver(client, "installation_repositories", added)).status_code == 200
    async with sessions() as session:
        assert (await session.get(Installation, 957387)) is not None
        repos = set(await session.scalars(select(InstallationRepo.repo)))
    assert repos == {"Codertocat/Hello-World", "Codertocat/Space"}
    deleted = payload("installation", "deleted.payload.json")
    deleted["installation"]["id"] = 957387
    assert (await deliver(client, "installation", deleted)).status_code == 200
    async with sessions() as session:
        assert (await session.get(Installation, 957387)) is None
        assert list(await session.scalars(select(InstallationRepo.repo))) == []


async def test_a_failed_enqueue_still_answers_202_with_the_durable_job(
    gh_settings: Settings, github: FakeGitHub, store: JobStore
) -> None:
    github.add_repo(REPO, writers={"alice"})
    app = GitHubApp(gh_settings, store, RecordingQueue(fail_with=ConnectionError("queue down")), None)
    async with http_client(app) as client:
        response = await deliver(client, "issues", labeled(gh_settings))
    assert response.status_code == 202
    assert (await store.get(response.json()["job_id"])).state == JobState.QUEUED


async def test_a_database_outage_answers_503_so_github_redelivers(
    gh_settings: Settings, github: FakeGitHub, tmp_path: Path
) -> None:
    from engine.store.db import make_engine, make_sessionmaker
    from engine.store.jobs import JobLimits

    github.add_repo(REPO, writers={"alice"})
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'none.db'}")
    store = JobStore(make_sessionmaker(engine), JobLimits(1.0, 10, 10))
    app = GitHubApp(gh_settings, store, RecordingQueue(), None)
    async with http_client(app) as client:
        response = await deliver(client, "issues", labeled(gh_settings))
    assert response.status_code == 503
    await engine.dispose()


async def test_github_failing_during_the_permission_check_answers_503(
    client: httpx.AsyncClient, github: FakeGitHub, store: JobStore, gh_settings: Settings
) -> None:
    github.add_repo(REPO, writers={"alice"})
    github.fail("GET", rf"/repos/{REPO}/collaborators/alice/permission", times=10, status=502)
    response = await deliver(client, "issues", labeled(gh_settings))
    assert response.status_code == 503
    assert await jobs(store) == []


async def test_cancel_on_an_issue_stops_that_issues_job(
    client: httpx.AsyncClient, github: FakeGitHub, store: JobStore, gh_settings: Settings
) -> None:
    github.add_repo(REPO, writers={"alice"})
    job_id = (await deliver(client, "issues", labeled(gh_settings))).json()["job_id"]
    response = await deliver(client, "issue_comment", comment(f"@{SLUG} cancel"))
    assert response.json() == {"job_id": job_id, "action": "cancel"}
    assert (await store.get(job_id)).state == JobState.CANCELLED
    again = await deliver(client, "issue_comment", comment(f"@{SLUG} cancel"))
    assert again.status_code == 202 and "already ended" in again.json()["ignored"]
    assert "already ended" in list(github.repos[REPO].comments.values())[-1]["body"]


async def test_an_unusable_private_key_disables_the_app_instead_of_crashing(
    tmp_path: Path, store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        tmp_path, github_app_id=1, github_private_key=str(tmp_path / "absent.pem"), github_webhook_secret="s"
    )
    app = GitHubApp(settings, store, None, None)
    async with http_client(app) as client:
        assert (await deliver(client, "ping", {}, secret="s")).status_code == 503
    assert "not a usable PEM key" in caplog.text and app.reporter is None


@pytest.mark.parametrize(
    ("event", "body", "error"),
    [
        ("issues", b"{not json", "body is not JSON"),
        ("issues", b"\xff\xfe{}", "body is not JSON"),
        ("issues", b"[1, 2]", "body is not a JSON object"),
        ("issues", b'{"action": "labeled"}', "issues payload is missing fields autodev needs"),
        ("ping", b"{not json", "body is not JSON"),
        ("ping", b"[]", "body is not a JSON object"),
    ],
)
async def test_a_signed_body_that_is_not_a_usable_payload_is_refused_with_400_and_no_job(
    client: httpx.AsyncClient, store: JobStore, event: str, body: bytes, error: str
) -> None:
    response = await deliver(client, event, body)
    assert (response.status_code, response.json()) == (400, {"error": error})
    assert await jobs(store) == []
