"""/metrics: running totals are counters read from the database, so no restart makes one go down."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from autodev.app import create_app
from autodev.metrics import REPORTER_ERRORS
from autodev.runtime import Runtime
from engine import events
from engine.store.db import make_engine, make_sessionmaker, upgrade_sync
from engine.store.models import CostEntry, JobState
from github_app.tally import DeliveryTally
from tests.conftest import make_settings
from tests.engine.conftest import submit
from tests.github_app.conftest import deliver
from tests.github_app.conftest import private_key as private_key

SECRET = "webhook-secret-for-tests"
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def web_process(
    tmp_path: Path, any_database_url: str, clean_redis: str, private_key: str
) -> Callable[..., Any]:
    """Starts a web process (runtime + app) on the test's database and Redis, as `autodev web` would."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
        settings = make_settings(
            tmp_path,
            database_url=any_database_url,
            redis_url=clean_redis,
            github_app_id=1,
            github_private_key=private_key,
            github_webhook_secret=SECRET,
            github_api_url="http://127.0.0.1:9",  # a ping needs no GitHub; anything else would fail loudly
            **overrides,
        )
        runtime = await Runtime.start(settings)
        try:
            transport = httpx.ASGITransport(app=create_app(runtime))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                yield runtime, http
        finally:
            await runtime.close()

    return start


async def scrape(http: httpx.AsyncClient) -> Series:
    response = await http.get("/metrics")
    assert response.status_code == 200
    series: Series = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return series


def totals(series: Series) -> Series:
    """The deployment's running totals: counters and the duration histogram's cumulative series."""
    return {
        key: value
        for key, value in series.items()
        if key[0].startswith("autodev_") and key[0].endswith(("_total", "_count", "_sum", "_bucket"))
    }


async def some_work(runtime: Runtime, http: httpx.AsyncClient) -> None:
    """Deliveries, jobs that start and end, LLM spend and a reporter failure: every kind of total."""
    for _ in range(3):
        assert (await deliver(http, "ping", {"zen": "hi"}, secret=SECRET)).status_code == 200
    assert (await deliver(http, "issues", {"action": "opened"}, secret="wrong")).status_code == 401
    store = runtime.store
    job = await submit(store, title=f"task {id(http)}")
    await store.transition(job, JobState.RUNNING)
    entry = CostEntry(
        job_id=job, role="coder", model="gpt-4.1", tokens_in=1200, tokens_out=300, usd=0.0123, latency_ms=900
    )
    await store.add_cost(entry)
    await store.append_event(job, events.REPORTER_ERROR, {"reporter": "github", "error": "502"})
    await store.transition(job, JobState.SUCCEEDED)
    await submit(store, title=f"queued {id(http)}")


def assert_none_went_down(before: Series, after: Series) -> None:
    for key, value in totals(before).items():
        assert key in after, f"{key} vanished"
        assert after[key] >= value, f"{key} went down: {value} -> {after[key]}"


async def test_a_restart_between_two_scrapes_lowers_no_total(web_process: Callable[..., Any]) -> None:
    """The totals were gauges (Gauge.inc) and a process counter: a restart sent them back to zero."""
    async with web_process() as (runtime, http):
        await some_work(runtime, http)
        first = await scrape(http)
        for _ in range(2):  # counted after the scrape, stored when the process stops
            await deliver(http, "ping", {"zen": "hi"}, secret=SECRET)

    async with web_process() as (_, http):
        second = await scrape(http)

    assert_none_went_down(first, second)
    names = {name for name, _ in totals(first)}
    assert {
        "autodev_jobs_created_total",
        "autodev_jobs_finished_total",
        "autodev_llm_calls_total",
        "autodev_llm_tokens_total",
        "autodev_llm_dollars_total",
        "autodev_reporter_errors_total",
        "autodev_webhook_requests_total",
        "autodev_job_duration_seconds_count",
    } <= names
    ping = ("autodev_webhook_requests_total", frozenset({("event", "ping"), ("status", "200")}))
    assert (first[ping], second[ping]) == (3, 5)
    assert first[("autodev_reporter_errors_total", frozenset())] == 1
    assert first[("autodev_llm_tokens_total", frozenset({("model", "gpt-4.1"), ("direction", "in")}))] == 1200


async def test_scrapes_answered_by_different_web_processes_never_go_backwards(
    web_process: Callable[..., Any],
) -> None:
    """Behind a load balancer each scrape may reach another process; a killed one loses only unseen counts."""
    async with web_process() as (one, http_one), web_process() as (two, http_two):
        await some_work(one, http_one)
        seen = [await scrape(http_one)]
        await some_work(two, http_two)
        seen.append(await scrape(http_two))
        await deliver(http_one, "ping", {"zen": "hi"}, secret=SECRET)
        seen.append(await scrape(http_two))  # one's delivery is not stored yet: the total waits, not drops
        seen.append(await scrape(http_one))
        await deliver(http_two, "ping", {"zen": "hi"}, secret=SECRET)
        # two is killed: what it counted since its last scrape is lost
        two.github.webhook_counts.pending.clear()

    async with web_process() as (_, http):
        seen.append(await scrape(http))

    for before, after in itertools.pairwise(seen):
        assert_none_went_down(before, after)
    ping = ("autodev_webhook_requests_total", frozenset({("event", "ping"), ("status", "200")}))
    assert [s[ping] for s in seen] == [3, 6, 6, 7, 7]


async def test_metrics_token_closes_the_endpoint_to_scrapers_without_it(
    web_process: Callable[..., Any],
) -> None:
    async with web_process(metrics_token="metrics-token-for-tests") as (_, http):
        anonymous = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await http.get("/metrics", headers={"Authorization": "Bearer metrics-token-for-tests"})
        health = await http.get("/healthz")

    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert "autodev_" not in anonymous.text + wrong.text
    assert right.status_code == 200 and "autodev_jobs_created_total" in right.text
    assert health.status_code == 200  # only /metrics asks for it


async def test_the_reporter_error_count_reads_the_type_index_not_the_table(any_database_url: str) -> None:
    """Every scrape counted job_events of one type by reading the whole table (~71 ms at 200k events)."""
    engine = make_engine(any_database_url)
    try:
        async with engine.begin() as conn:
            query = str(REPORTER_ERRORS.compile(conn.engine, compile_kwargs={"literal_binds": True}))
            if conn.dialect.name == "sqlite":
                rows = await conn.execute(text(f"EXPLAIN QUERY PLAN {query}"))
                plan = " ".join(str(row[-1]) for row in rows)
            else:
                # A near-empty table is cheaper to read whole; ask whether the index can serve the query.
                await conn.execute(text("SET LOCAL enable_seqscan = off"))
                plan = " ".join(row[0] for row in await conn.execute(text(f"EXPLAIN {query}")))
    finally:
        await engine.dispose()

    assert "ix_job_events_type" in plan, plan


async def test_webhook_counts_stay_pending_while_the_database_is_away(
    tmp_path: Path, database_url: str
) -> None:
    broken = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")  # no tables: every write fails
    tally = DeliveryTally(make_sessionmaker(broken))
    tally.count("issues", 202)
    await tally.flush()
    assert tally.pending == {("issues", 202): 1}
    await broken.dispose()

    working = make_engine(database_url)
    tally.sessions = make_sessionmaker(working)
    tally.FLUSH_EVERY_S = 0  # the next delivery starts a flush in the background
    tally.count("issues", 202)
    assert tally._background is not None
    await asyncio.wait_for(tally._background, 10)
    async with working.connect() as conn:
        stored = (await conn.execute(text("SELECT event, status, count FROM webhook_counts"))).all()
    await working.dispose()

    assert stored == [("issues", 202, 2)] and not tally.pending


def test_upgrading_fills_the_llm_totals_from_the_calls_already_recorded(tmp_path: Path) -> None:
    """Revision 0005 starts the totals from cost_entries, so the counters do not restart at zero."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    upgrade_sync(url, "0004")
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute(
            "INSERT INTO jobs (id, dedupe_key, access_token, kind, trigger, repo, title, task, requester, "
            "origin, reporter_state, state, cancel_requested, attempts, last_seq, budget_usd, max_requests, "
            "max_minutes, cost_usd, tokens_in, tokens_out, requests, context_diagnostics, created_at, "
            "updated_at) VALUES ('j1', 'k', 't', 'implement', 'cli', 'r', 't', 't', 'u', '{}', '{}', "
            "'succeeded', 0, 1, 0, 5, 300, 60, 0, 0, 0, 0, '[]', '2026-01-01', '2026-01-01')"
        )
        db.executemany(
            "INSERT INTO cost_entries (job_id, role, model, tokens_in, tokens_out, usd, latency_ms, repo, "
            "created_at) VALUES ('j1', ?, ?, ?, ?, ?, 1, 'r', '2026-01-01')",
            [("coder", "m1", 100, 10, 0.5), ("coder", "m1", 200, 20, 0.25), ("planner", "m2", 5, 1, 0.125)],
        )

    upgrade_sync(url)

    with sqlite3.connect(tmp_path / "old.db") as db:
        rows = db.execute("SELECT * FROM llm_totals ORDER BY model").fetchall()
    assert rows == [("m1", "coder", 2, 300, 30, 0.75), ("m2", "planner", 1, 5, 1, 0.125)]
