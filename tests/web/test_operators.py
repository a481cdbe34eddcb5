"""The operators' side: the closed list, the login, the filtered list, and Cancel and Retry."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from arq.jobs import JobStatus

from engine.settings import Settings
from engine.store.jobs import JobStore
from engine.store.models import JobState
from tests.web.conftest import OPERATOR_TOKEN, make_app, running_job, submit
from web.access import OPERATOR_COOKIE
from workers.queue import ArqJobQueue, connect

BEARER = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


async def login(client: httpx.AsyncClient) -> None:
    response = await client.post("/jobs/login", data={"token": OPERATOR_TOKEN, "next": "/jobs"})
    assert response.status_code == 303


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def test_without_an_operator_token_the_list_is_closed_with_a_reason(client: httpx.AsyncClient) -> None:
    response = await client.get("/jobs", headers={"Authorization": "Bearer anything"})

    assert response.status_code == 403
    assert "OPERATOR_TOKEN" in response.text
    assert (await client.get("/api/jobs")).status_code == 403
    assert (await client.post("/jobs/login", data={"token": ""})).status_code == 403


async def test_the_list_asks_for_a_login_and_refuses_a_wrong_token(
    operator_client: httpx.AsyncClient,
) -> None:
    first = await operator_client.get("/jobs")
    wrong = await operator_client.post("/jobs/login", data={"token": "guess", "next": "/jobs"})

    assert first.status_code == 401 and 'action="/jobs/login"' in first.text
    assert wrong.status_code == 401 and "not the operator token" in wrong.text
    assert OPERATOR_COOKIE not in wrong.cookies


async def test_login_sets_an_httponly_cookie_that_opens_the_list_and_any_job(
    operator_client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await submit(store)

    response = await operator_client.post("/jobs/login", data={"token": OPERATOR_TOKEN, "next": "/jobs"})

    assert response.status_code == 303 and response.headers["location"] == "/jobs"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert OPERATOR_TOKEN not in cookie
    listing = await operator_client.get("/jobs")
    assert listing.status_code == 200 and f'href="/jobs/{made.id}"' in listing.text
    page = await operator_client.get(f"/jobs/{made.id}")
    assert page.status_code == 200 and made.job.title in page.text
    api = await operator_client.get(f"/api/jobs/{made.id}")
    assert api.status_code == 200 and "access_token" not in api.json()


async def test_login_only_redirects_to_a_path_on_this_site(operator_client: httpx.AsyncClient) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = await operator_client.post("/jobs/login", data={"token": OPERATOR_TOKEN, "next": target})
        assert response.headers["location"] == "/jobs"


async def test_logout_closes_the_list_again(operator_client: httpx.AsyncClient) -> None:
    await login(operator_client)
    await operator_client.post("/jobs/logout")

    assert (await operator_client.get("/jobs")).status_code == 401


async def test_the_list_filters_by_repo_state_and_trigger(
    operator_client: httpx.AsyncClient, store: JobStore
) -> None:
    from_issue = await submit(store, "From an issue", repo="octo/one")
    from_slack = await submit(store, "From Slack", repo="octo/two", trigger="slack")
    ended = await submit(store, "Ended early", repo="octo/one")
    await store.transition(ended.id, JobState.CANCELLED)

    async def titles(**params: str) -> set[str]:
        response = await operator_client.get("/jobs", params=params, headers=BEARER)
        assert response.status_code == 200
        shown = {m.job.title for m in (from_issue, from_slack, ended)}
        return {title for title in shown if title in response.text}

    assert await titles() == {"From an issue", "From Slack", "Ended early"}
    assert await titles(repo="octo/one") == {"From an issue", "Ended early"}
    assert await titles(state="cancelled") == {"Ended early"}
    assert await titles(trigger="slack") == {"From Slack"}
    assert await titles(repo="octo/one", state="queued", trigger="github_issue") == {"From an issue"}
    api = await operator_client.get("/api/jobs", params={"trigger": "slack"}, headers=BEARER)
    assert [j["title"] for j in api.json()["jobs"]] == ["From Slack"]


async def test_an_unknown_state_filter_is_explained_not_an_error(
    operator_client: httpx.AsyncClient, store: JobStore
) -> None:
    await submit(store)

    response = await operator_client.get("/jobs", params={"state": "exploded"}, headers=BEARER)

    assert response.status_code == 200 and "Unknown state" in response.text


async def test_an_operator_cancels_a_running_job_from_its_page(
    operator_client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await running_job(store)
    await login(operator_client)
    page = (await operator_client.get(f"/jobs/{made.id}")).text
    assert "Cancel job" in page and "Retry job" not in page

    response = await operator_client.post(f"/jobs/{made.id}/cancel", data={"csrf": csrf_of(page)})

    assert response.status_code == 303 and response.headers["location"] == f"/jobs/{made.id}"
    assert await store.cancel_requested(made.id)


async def test_a_cancel_without_the_forms_csrf_token_is_refused(
    operator_client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await running_job(store)
    await login(operator_client)

    for data in ({}, {"csrf": "0" * 64}):
        response = await operator_client.post(f"/jobs/{made.id}/cancel", data=data)
        assert response.status_code == 403

    assert not await store.cancel_requested(made.id)


async def test_a_job_link_alone_does_not_allow_cancel(
    operator_client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await running_job(store)

    page = (await operator_client.get(made.url)).text
    response = await operator_client.post(f"/jobs/{made.id}/cancel?t={made.job.access_token}", data={})

    assert "Cancel job" not in page
    assert response.status_code == 404
    assert not await store.cancel_requested(made.id)


async def test_a_bearer_call_cancels_without_a_form(
    operator_client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await running_job(store)

    response = await operator_client.post(f"/jobs/{made.id}/cancel", headers=BEARER)

    assert response.status_code == 303 and await store.cancel_requested(made.id)


@pytest.fixture
async def arq_queue(clean_redis: str) -> AsyncIterator[ArqJobQueue]:
    redis = await connect(clean_redis)
    yield ArqJobQueue(redis)
    await redis.aclose()


async def test_retry_starts_a_new_job_and_queues_it(
    store: JobStore, operator_settings: Settings, arq_queue: ArqJobQueue
) -> None:
    made = await running_job(store)
    await store.transition(made.id, JobState.FAILED, reason="tests kept failing")
    transport = httpx.ASGITransport(app=make_app(store, operator_settings, arq_queue))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await login(client)
        page = (await client.get(f"/jobs/{made.id}")).text
        assert "Retry job" in page and "Cancel job" not in page

        response = await client.post(f"/jobs/{made.id}/retry", data={"csrf": csrf_of(page)})

    new_id = response.headers["location"].removeprefix("/jobs/")
    assert response.status_code == 303 and new_id != made.id
    new_job = await store.get(new_id)
    assert new_job.retry_of == made.id and new_job.state == JobState.QUEUED
    assert await arq_queue.status(new_id) is JobStatus.queued


async def test_retrying_a_running_job_is_refused_with_the_reason(
    operator_client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await running_job(store)

    response = await operator_client.post(f"/jobs/{made.id}/retry", headers=BEARER)

    assert response.status_code == 409 and "still running" in response.text
