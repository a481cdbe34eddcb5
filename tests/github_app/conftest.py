"""Fixtures for the GitHub adapter: a fake GitHub on 127.0.0.1, a configured App, signed deliveries."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from githubkit.webhooks import sign

from engine.errors import TransientFailure
from engine.settings import Settings
from engine.store.jobs import JobStore
from github_app import GitHubApp
from tests.conftest import make_settings
from tests.support.fake_github import FakeGitHub
from tests.support.recording_queue import RecordingQueue as RecordingQueue

# GitHub's own example deliveries and their JSON schemas (octokit/webhooks, MIT; see its README there).
WEBHOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "github-webhooks"
SECRET = "webhook-secret-for-tests"
INSTALLATION = 77
INSTALLATION_NODE_ID = "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNzc="
REPO = "Codertocat/Hello-World"


def payload(event: str, name: str) -> dict[str, Any]:
    """A real example delivery from tests/fixtures (its schema is beside it, under schemas/)."""
    data: dict[str, Any] = json.loads((WEBHOOKS / "examples" / event / name).read_text())
    return data


def as_app_delivery(data: dict[str, Any], sender: str = "alice", sender_type: str = "User") -> dict[str, Any]:
    data["installation"] = {"id": INSTALLATION, "node_id": INSTALLATION_NODE_ID}
    data["sender"] = {**data.get("sender", {}), "login": sender, "type": sender_type}
    return data


def labeled(settings: Settings, sender: str = "alice") -> dict[str, Any]:
    """The corpus's `issues.labeled` delivery by `sender`, with this deployment's trigger label."""
    data = as_app_delivery(payload("issues", "labeled.payload.json"), sender)
    data["label"]["name"] = settings.autodev_trigger_label
    return data


@pytest.fixture(scope="session")
def private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as fake:
        yield fake


@pytest.fixture
def gh_settings(tmp_path: Path, database_url: str, github: FakeGitHub, private_key: str) -> Settings:
    return make_settings(
        tmp_path,
        database_url=database_url,
        github_app_id=github.app_id,
        github_private_key=private_key,
        github_webhook_secret=SECRET,
        github_api_url=github.api_url,
        webhook_max_body_bytes=200_000,
    )


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
async def gh_app(gh_settings: Settings, store: JobStore, queue: RecordingQueue) -> AsyncIterator[GitHubApp]:
    app = GitHubApp(gh_settings, store, queue, None)
    yield app
    await app.aclose()


@asynccontextmanager
async def http_client(gh_app: GitHubApp) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the App's routes; the App is closed with it (its GitHub connections too)."""
    web = FastAPI()
    web.include_router(gh_app.router)
    try:
        transport = httpx.ASGITransport(app=web)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
    finally:
        await gh_app.aclose()


@pytest.fixture
async def client(gh_app: GitHubApp) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(gh_app) as http:
        yield http


async def deliver(
    client: httpx.AsyncClient,
    event: str,
    data: dict[str, Any] | bytes,
    *,
    delivery: str | None = None,
    secret: str = SECRET,
    signature: str | None = None,
) -> httpx.Response:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signature if signature is not None else sign(secret, body),
    }
    if not headers["X-Hub-Signature-256"]:
        del headers["X-Hub-Signature-256"]
    return await client.post("/github/webhooks", content=body, headers=headers)


async def settle(app: GitHubApp, queue: RecordingQueue) -> list[str]:
    """What the worker does with each delivery the webhook queued, tries and all, in this process (with ARQ
    and its backoff in tests/e2e): the outcome of each, in order."""
    assert app.deliveries is not None
    max_tries = app.settings.trigger_max_tries
    outcomes: list[str] = []
    while queue.deliveries:
        delivery_id = queue.deliveries.pop(0)
        for try_number in range(1, max_tries + 1):
            try:
                outcome = await app.deliveries.handle(delivery_id, last_try=try_number == max_tries)
            except TransientFailure:
                continue
            outcomes.append(outcome)
            break
    return outcomes
