"""POST /github/webhooks, fed real payloads with real signatures: verify, parse, filter, store, answer.

What the stored deliveries then become (permission, jobs, replies) is in test_triggers.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.settings import Settings
from engine.store.jobs import JobStore
from engine.store.models import GitHubDelivery, Installation, InstallationRepo, Job
from github_app import GitHubApp
from tests.conftest import make_settings
from tests.github_app.conftest import (
    REPO,
    SECRET,
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
DEEP = b"[" * 100_000 + b"]" * 100_000


def comment(body: str, *, sender: str = "alice", sender_type: str = "User") -> dict:
    data = as_app_delivery(payload("issue_comment", "created.payload.json"), sender, sender_type)
    data["comment"]["body"] = body
    return data


async def stored(sessions: async_sessionmaker[AsyncSession]) -> list[GitHubDelivery]:
    async with sessions() as session:
        return list(await session.scalars(select(GitHubDelivery).order_by(GitHubDelivery.received_at)))


async def job_count(store: JobStore) -> int:
    async with store.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Job)) or 0)


async def test_a_labeled_issue_is_stored_and_queued_before_anything_asks_github(
    client: httpx.AsyncClient,
    github: FakeGitHub,
    gh_app: GitHubApp,
    store: JobStore,
    queue: RecordingQueue,
    gh_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    github.add_repo(REPO, writers={"alice"})
    body = json.dumps(labeled(gh_settings)).encode()
    response = await deliver(client, "issues", body, delivery="d-1")
    assert (response.status_code, response.json()) == (202, {"delivery": "d-1", "stored": True})
    assert github.calls == [], "the web side never calls GitHub"
    [row] = await stored(sessions)
    assert (row.id, row.event, row.state) == ("d-1", "issues", "pending")
    assert row.body_sha256 == hashlib.sha256(body).hexdigest()
    assert row.payload["issue"]["number"] == 1 and row.payload["sender"]["login"] == "alice"
    assert queue.deliveries == ["d-1"] and queue.enqueued == []

    assert await settle(gh_app, queue) == ["job submitted"]
    [job] = await store.list_jobs()
    assert job.dedupe_key == "github:d-1" and queue.enqueued == [job.id] and job.state == "queued"
    assert (await stored(sessions))[0].job_id == job.id


async def test_a_redelivery_is_a_duplicate_and_makes_one_job(
    client: httpx.AsyncClient,
    github: FakeGitHub,
    gh_app: GitHubApp,
    store: JobStore,
    queue: RecordingQueue,
    gh_settings: Settings,
) -> None:
    github.add_repo(REPO, writers={"alice"})
    first = await deliver(client, "issues", labeled(gh_settings), delivery="same")
    second = await deliver(client, "issues", labeled(gh_settings), delivery="same")
    assert first.json()["stored"] is True
    assert (second.status_code, second.json()) == (202, {"delivery": "same", "duplicate": True})
    assert queue.deliveries == ["same"]
    await settle(gh_app, queue)
    assert await job_count(store) == 1


async def test_the_same_signed_body_under_a_new_delivery_id_makes_no_second_job(
    client: httpx.AsyncClient,
    github: FakeGitHub,
    gh_app: GitHubApp,
    store: JobStore,
    queue: RecordingQueue,
    gh_settings: Settings,
) -> None:
    """Regression: dedupe was on X-GitHub-Delivery only, so replaying a signed body made a job each time."""
    github.add_repo(REPO, writers={"alice"})
    body = json.dumps(labeled(gh_settings)).encode()
    answers = [await deliver(client, "issues", body, delivery=f"replay-{n}") for n in range(5)]
    assert [a.status_code for a in answers] == [202] * 5
    assert [a.json().get("duplicate", False) for a in answers] == [False] + [True] * 4
    assert all(a.json()["delivery"] == "replay-0" for a in answers)
    await settle(gh_app, queue)
    assert await job_count(store) == 1


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("sha1={sha1}", id="sha1-hmac-in-the-sha256-header"),
        pytest.param("SHA256={sha256}", id="another-spelling"),
        pytest.param("md5={sha256}", id="another-prefix"),
        pytest.param("{sha256}", id="no-prefix"),
        pytest.param("sha256=" + "0" * 64, id="wrong-digest"),
        pytest.param("", id="missing"),
    ],
)
async def test_only_a_valid_sha256_signature_is_accepted(
    client: httpx.AsyncClient, store: JobStore, gh_settings: Settings, signature: str
) -> None:
    """Regression: githubkit's verify checks anything but a `sha256=` prefix as SHA-1, so `sha1=<hmac>` in
    X-Hub-Signature-256 was accepted."""
    body = json.dumps(labeled(gh_settings)).encode()
    digests = {
        "sha1": hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest(),
        "sha256": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }
    response = await deliver(client, "issues", body, signature=signature.format(**digests))
    assert response.status_code == 401
    assert await job_count(store) == 0


async def test_a_wrong_secret_and_a_signature_over_other_bytes_are_refused_before_parsing(
    client: httpx.AsyncClient, store: JobStore, gh_settings: Settings
) -> None:
    data = labeled(gh_settings)
    assert (await deliver(client, "issues", data, secret="wrong")).status_code == 401
    assert (await deliver(client, "issues", b"not json", signature="sha256=00")).status_code == 401
    assert await job_count(store) == 0


async def test_other_labels_actions_and_bots_are_acknowledged_and_not_stored(
    client: httpx.AsyncClient,
    github: FakeGitHub,
    queue: RecordingQueue,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    github.add_repo(REPO, writers={"alice", "helper[bot]"})
    other = as_app_delivery(payload("issues", "labeled.payload.json"))  # label "bug"
    opened = as_app_delivery(payload("issues", "opened.payload.json"))
    assert (await deliver(client, "issues", other)).json() == {"ignored": "another label"}
    assert (await deliver(client, "issues", opened)).json() == {"ignored": "issues.opened"}
    for sender, kind in (("helper[bot]", "User"), ("dependabot", "Bot"), (f"{SLUG}[bot]", "Bot")):
        answer = await deliver(
            client, "issue_comment", comment(f"@{SLUG} implement", sender=sender, sender_type=kind)
        )
        assert answer.json() == {"ignored": "sent by a bot"}
    assert await stored(sessions) == [] and queue.deliveries == []
    assert github.calls == []


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"Steps:\n\n```\n@{SLUG} implement\n```\n", id="fenced-code"),
        pytest.param(f"Type `@{SLUG} implement` to start a job.", id="inline-code"),
        pytest.param(f"> @{SLUG} implement\n\nThat is what the bot said.", id="quote"),
        pytest.param(f"<!-- @{SLUG} implement -->\nJust a note.", id="html-comment"),
    ],
)
async def test_a_mention_that_was_not_typed_as_text_starts_nothing(
    client: httpx.AsyncClient,
    github: FakeGitHub,
    gh_app: GitHubApp,
    store: JobStore,
    queue: RecordingQueue,
    gh_settings: Settings,
    text: str,
) -> None:
    """Regression: `@app implement` in a code block, inline code, a quote or an HTML comment started a job."""
    github.add_repo(REPO, writers={"alice"})
    answer = await deliver(client, "issue_comment", comment(text))
    assert answer.json() == {"ignored": "not addressed to autodev"}
    await settle(gh_app, queue)
    assert await job_count(store) == 0


async def test_a_mention_typed_as_text_starts_a_job(
    client: httpx.AsyncClient,
    github: FakeGitHub,
    gh_app: GitHubApp,
    store: JobStore,
    queue: RecordingQueue,
) -> None:
    github.add_repo(REPO, writers={"alice"})
    text = f"> the bot said `@{SLUG} help`\n\nRight, then: @{SLUG} implement this please"
    assert (await deliver(client, "issue_comment", comment(text))).json()["stored"] is True
    assert await settle(gh_app, queue) == ["job submitted"]
    [job] = await store.list_jobs()
    assert job.trigger == "github_comment"


async def test_without_a_known_slug_comments_that_mention_anyone_are_stored_and_the_worker_decides(
    tmp_path: Path, github: FakeGitHub, store: JobStore, private_key: str
) -> None:
    github.add_repo(REPO, writers={"alice"})
    settings = make_settings(
        tmp_path,
        github_app_id=github.app_id,
        github_private_key=private_key,
        github_webhook_secret=SECRET,
        github_api_url=github.api_url,
    )
    queue = RecordingQueue()
    app = GitHubApp(settings, store, queue, None)
    async with http_client(app) as client:
        answer = await deliver(client, "issue_comment", comment("@bob could you look at this"))
        assert answer.json()["stored"] is True  # the slug was not known yet
        assert await settle(app, queue) == ["not addressed to autodev"]
        assert github.calls_to("GET", "/app")
        later = await deliver(client, "issue_comment", comment("@bob and again"))
        assert later.json() == {"ignored": "not addressed to autodev"}  # learnt in the background
    assert await job_count(store) == 0


@pytest.mark.parametrize(
    ("event", "body", "error"),
    [
        ("issues", b"{not json", "body is not JSON"),
        ("issues", b"\xff\xfe{}", "body is not JSON"),
        ("issues", b"[1, 2]", "body is not a JSON object"),
        ("issues", b'{"action": "labeled"}', "issues payload is missing fields autodev needs"),
        ("issues", b'{"action": "labeled", "x": ' + DEEP + b"}", "body is not JSON"),
        ("ping", b"{not json", "body is not JSON"),
        ("ping", b"[]", "body is not a JSON object"),
        ("ping", DEEP, "body is not JSON"),
        ("star", b'{"a": ' + DEEP + b"}", "body is not JSON"),
        ("issue_comment", DEEP, "body is not JSON"),
    ],
)
async def test_a_signed_body_that_is_not_a_usable_payload_is_refused_with_400_and_no_job(
    client: httpx.AsyncClient, store: JobStore, event: str, body: bytes, error: str
) -> None:
    """Regression: JSON nested 100,000 deep raised RecursionError (500) on ping and unknown events."""
    response = await deliver(client, event, body)
    assert (response.status_code, response.json()) == (400, {"error": error})
    assert await job_count(store) == 0


async def test_unknown_events_are_acknowledged_and_ping_is_answered(client: httpx.AsyncClient) -> None:
    unknown = await deliver(client, "pull_request", payload("pull_request", "opened.payload.json"))
    assert unknown.status_code == 202 and "ignored" in unknown.json()
    assert (await deliver(client, "star", {"action": "created"})).status_code == 202
    assert (await deliver(client, "ping", payload("ping", "payload.json"))).status_code == 200


async def test_a_delivery_without_an_id_is_refused(client: httpx.AsyncClient, gh_settings: Settings) -> None:
    body = json.dumps(labeled(gh_settings)).encode()
    headers = {"X-GitHub-Event": "issues", "X-Hub-Signature-256": "sha256=" + hmac.new(
        SECRET.encode(), body, hashlib.sha256).hexdigest()}  # fmt: skip
    response = await client.post("/github/webhooks", content=body, headers=headers)
    assert (response.status_code, response.json()) == (
        400,
        {"error": "missing or malformed X-GitHub-Delivery"},
    )


async def test_without_credentials_the_webhook_answers_503(tmp_path: Path, store: JobStore) -> None:
    app = GitHubApp(make_settings(tmp_path), store, None, None)
    async with http_client(app) as client:
        response = await deliver(client, "ping", {"zen": "hi"})
    assert response.status_code == 503 and response.json()["error"] == "GitHub App not configured"
    assert app.reporter_for is not None


async def test_github_being_down_does_not_matter_to_the_webhook(
    client: httpx.AsyncClient, github: FakeGitHub, gh_settings: Settings
) -> None:
    """Regression: a permission lookup that failed was answered 503 "please redeliver", for ever."""
    github.add_repo(REPO, writers={"alice"})
    github.fail("GET", r"/.*", times=100, status=502)
    github.fail("POST", r"/.*", times=100, status=502)
    response = await deliver(client, "issues", labeled(gh_settings))
    assert response.status_code == 202 and response.json()["stored"] is True
    assert github.calls == []


async def test_a_failed_enqueue_still_answers_202_with_the_delivery_stored(
    gh_settings: Settings, github: FakeGitHub, store: JobStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    github.add_repo(REPO, writers={"alice"})
    app = GitHubApp(gh_settings, store, RecordingQueue(fail_with=ConnectionError("queue down")), None)
    async with http_client(app) as client:
        response = await deliver(client, "issues", labeled(gh_settings), delivery="unqueued")
    assert response.status_code == 202
    [row] = await stored(sessions)
    assert (row.id, row.state) == ("unqueued", "pending")  # the reconciler queues it (tests/workers)


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
    assert response.json() == {"error": "could not store the delivery, please redeliver"}
    await engine.dispose()


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
