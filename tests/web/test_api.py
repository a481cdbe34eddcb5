"""The JSON API and the live stream, behind the job's link token."""

from __future__ import annotations

import asyncio

import httpx

from engine.store.jobs import JobStore
from engine.store.models import JobState
from tests.web.conftest import running_job, submit


async def test_the_api_returns_the_whole_job_without_its_token(
    client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await running_job(store)

    response = await client.get(f"/api/jobs/{made.id}", params={"t": made.job.access_token})

    assert response.status_code == 200
    body = response.json()
    assert "access_token" not in body
    assert (body["id"], body["repo"], body["state"], body["phase"]) == (
        made.id,
        "octo/hello",
        "running",
        "coding",
    )
    assert [s["state"] for s in body["steps"]] == ["done", "running"]
    assert body["steps_done"] == 1 and body["terminal"] is False
    assert [c["role"] for c in body["costs"]] == ["planner", "coder", "coder"]
    assert body["context_diagnostics"][0]["tokens"] == 1234
    assert body["events"][0] == {
        "seq": 1,
        "type": "submitted",
        "data": {"trigger": "github_issue", "requester": "ada"},
    }


async def test_the_events_api_returns_only_events_after_the_given_seq(
    client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await running_job(store)
    token = made.job.access_token

    everything = (await client.get(f"/api/jobs/{made.id}/events", params={"t": token})).json()
    later = (await client.get(f"/api/jobs/{made.id}/events", params={"t": token, "after": 3})).json()
    nothing_new = (
        await client.get(f"/api/jobs/{made.id}/events", params={"t": token, "after": everything["last_seq"]})
    ).json()

    assert [e["seq"] for e in everything["events"]] == list(range(1, everything["last_seq"] + 1))
    assert [e["seq"] for e in later["events"]] == list(range(4, everything["last_seq"] + 1))
    assert nothing_new == {
        "job_id": made.id,
        "state": "running",
        "events": [],
        "last_seq": everything["last_seq"],
    }


async def test_a_negative_after_is_a_clear_error(client: httpx.AsyncClient, store: JobStore) -> None:
    made = await submit(store)

    response = await client.get(
        f"/api/jobs/{made.id}/events", params={"t": made.job.access_token, "after": -1}
    )

    assert response.status_code == 422


async def test_the_stream_announces_changes_and_ends_with_the_job(
    client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await running_job(store)

    async def finish_the_job() -> None:
        await store.save_step(made.id, 1, state="done")
        await store.transition(made.id, JobState.SUCCEEDED)

    request = asyncio.create_task(client.get(f"/jobs/{made.id}/stream", params={"t": made.job.access_token}))
    await finish_the_job()
    response = await request

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event: change\n" in response.text
    assert response.text.rstrip().endswith('event: end\ndata: {"state": "succeeded"}')


async def test_the_stream_stays_quiet_when_nothing_changed_since_the_page(
    client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await submit(store)
    await store.transition(made.id, JobState.CANCELLED)
    page = (await client.get(made.url)).text
    stream_url = page.split('data-stream="', 1)[1].split('"', 1)[0].replace("&amp;", "&")

    response = await client.get(stream_url)

    assert "event: change" not in response.text and "event: end" in response.text
