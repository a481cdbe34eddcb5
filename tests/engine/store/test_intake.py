"""Intake: concurrent submissions share transactions and queue round trips, and each caller hears back
only once its job is committed and on the queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq.connections import ArqRedis
from sqlalchemy import event

from engine.store.db import SqliteWriter, make_engine, make_sessionmaker
from engine.store.intake import CONCURRENT_COMMITS, Intake
from engine.store.jobs import JobStore
from tests.engine.store.test_jobs import LIMITS, count_jobs, request
from tests.support.recording_queue import RecordingQueue
from workers.queue import ArqJobQueue, connect


@pytest.fixture
async def store_and_commits(any_database_url: str) -> AsyncIterator[tuple[JobStore, list[int]]]:
    engine = make_engine(any_database_url)
    writer = SqliteWriter.for_url(any_database_url)  # as the service does on SQLite
    commits: list[int] = []

    def _count(_conn: Any) -> None:
        commits.append(1)

    for sync_engine in (engine.sync_engine, *([writer.engine, writer.loop_engine] if writer else [])):
        event.listen(sync_engine, "commit", _count)
    store = JobStore(make_sessionmaker(engine), LIMITS, writer=writer)
    yield store, commits
    await store.aclose()
    await engine.dispose()


@pytest.fixture
async def pool(clean_redis: str) -> AsyncIterator[ArqRedis]:
    redis = await connect(clean_redis)
    yield redis
    await redis.aclose()


async def test_a_burst_of_submissions_shares_commits_and_every_job_is_queued_once(
    store_and_commits: tuple[JobStore, list[int]], pool: ArqRedis
) -> None:
    store, commits = store_and_commits
    queue = ArqJobQueue(pool)
    intake = Intake.for_jobs(store, queue)
    keys = [f"delivery-{n % 37}" for n in range(40)]  # three redeliveries among them

    answers = await asyncio.gather(*(intake.submit(request(key)) for key in keys))

    assert sum(created for _, created in answers) == 37
    assert len({job_id for job_id, _ in answers}) == 37
    assert await count_jobs(store) == 37
    assert (await queue.depth())[0] == 37
    assert len(commits) < 10, f"{len(commits)} commits for 40 submissions: no group commit"


async def test_waves_arriving_while_commits_are_in_flight_make_each_job_once(
    store_and_commits: tuple[JobStore, list[int]],
) -> None:
    """PostgreSQL runs several commits side by side (SQLite one); redeliveries across them still make one
    job each, and every caller hears its job's id."""
    store, _ = store_and_commits
    queue = RecordingQueue()
    intake = Intake.for_jobs(store, queue)
    assert intake.max_in_flight == (CONCURRENT_COMMITS if store.concurrent_writers else 1)

    async def wave(n: int) -> list[tuple[str, bool]]:
        await asyncio.sleep(0.001 * n)  # each wave lands while the previous ones are being committed
        return await asyncio.gather(
            *(intake.submit(request(f"wave-key-{(n * 7 + k) % 30}")) for k in range(10))
        )

    answers = [a for w in await asyncio.gather(*(wave(n) for n in range(8))) for a in w]

    by_key: dict[str, set[str]] = {}
    for n in range(8):
        for k in range(10):
            by_key.setdefault(f"wave-key-{(n * 7 + k) % 30}", set()).add(answers[n * 10 + k][0])
    assert all(len(ids) == 1 for ids in by_key.values()), "a key answered with two different jobs"
    assert sum(created for _, created in answers) == len(by_key) == await count_jobs(store)
    assert sorted(queue.enqueued) == sorted(job_id for job_id, created in answers if created)


async def test_a_lone_submission_is_committed_and_queued_before_it_is_answered(
    store_and_commits: tuple[JobStore, list[int]],
) -> None:
    store, commits = store_and_commits
    queue = RecordingQueue()
    job_id, created = await Intake.for_jobs(store, queue).submit(request("alone"))
    assert created and queue.enqueued == [job_id] and len(commits) == 1
    assert (await store.get(job_id)).dedupe_key == "alone"


async def test_when_the_queue_is_down_the_jobs_are_still_committed(
    store_and_commits: tuple[JobStore, list[int]],
) -> None:
    store, _ = store_and_commits
    intake = Intake.for_jobs(store, RecordingQueue(fail_with=ConnectionError("redis gone")))
    answers = await asyncio.gather(*(intake.submit(request(f"k{n}")) for n in range(5)))
    assert all(created for _, created in answers)
    assert await count_jobs(store) == 5  # the reconciler enqueues them


async def test_when_the_database_is_down_every_waiting_caller_gets_the_error(tmp_path: Any) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'no-tables.db'}")
    intake = Intake.for_jobs(JobStore(make_sessionmaker(engine), LIMITS), RecordingQueue())
    submissions = (intake.submit(request(f"k{n}")) for n in range(5))
    results = await asyncio.gather(*submissions, return_exceptions=True)
    assert len(results) == 5 and all(isinstance(r, Exception) for r in results)
    await engine.dispose()
