"""The database gone for a moment: webhooks answer 503 (the one case for a redelivery); nothing half-written
remains, and the redelivery is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from autodev.app import create_app
from autodev.runtime import Runtime
from engine.store.models import GitHubDelivery
from tests.e2e.test_github_flow import SLUG, labeled_issue, stack_settings
from tests.github_app.conftest import REPO, deliver
from tests.github_app.conftest import private_key as private_key
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import FakeLLM
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
async def behind_a_proxy(
    tmp_path: Path, postgres_url: str, clean_redis: str, private_key: str
) -> AsyncIterator[Any]:
    """The whole service on PostgreSQL reached through a proxy the test can cut."""
    url = make_url(postgres_url)
    async with (
        TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy,
        FakeGitHub(app_slug=SLUG) as github,
        FakeLLM() as llm,
    ):
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        settings = stack_settings(tmp_path, proxied, clean_redis, private_key, github, llm)
        runtime = await Runtime.start(settings)
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield settings, runtime, http, github, proxy
        await runtime.close()


async def test_a_webhook_during_a_database_outage_gets_503_and_its_redelivery_makes_one_job(
    behind_a_proxy: Any,
) -> None:
    settings, runtime, http, github, proxy = behind_a_proxy
    github.add_repo(REPO, writers={"alice"})
    warm = await deliver(http, "issues", labeled_issue(settings), delivery="before-the-outage")
    assert warm.status_code == 202  # the pool holds live connections that the outage will break

    await proxy.cut()
    later = labeled_issue(settings)
    later["issue"]["updated_at"] = "2026-11-21T10:00:00Z"  # another label event: another body
    during = await deliver(http, "issues", later, delivery="during-the-outage")
    assert during.status_code == 503
    assert "redeliver" in during.json()["error"]
    ready = await http.get("/readyz")
    assert ready.status_code == 503

    await proxy.restore()
    again = await deliver(http, "issues", later, delivery="during-the-outage")
    assert again.status_code == 202 and again.json() == {"delivery": "during-the-outage", "stored": True}
    async with runtime.store.sessions() as session:
        rows = list(await session.scalars(select(GitHubDelivery)))
    assert sorted((r.id, r.state) for r in rows) == [
        ("before-the-outage", "pending"),
        ("during-the-outage", "pending"),
    ]
    assert (await runtime.queue.depth())[0] == 2  # both queued for the worker to decide
