"""The reconciler: a job durable in the database is never lost by Redis, nor left running for ever."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.jobs import JobStatus
from sqlalchemy import update

from engine.db import session_scope
from engine.jobs import JobRequest, JobStore
from engine.models import Job, JobState, utcnow
from engine.runner import EngineDeps
from engine.settings import Settings
from workers.jobs import reconcile
from workers.queue import ArqJobQueue, connect


@pytest.fixture
async def pool(clean_redis: str) -> AsyncIterator[ArqRedis]:
    redis = await connect(clean_redis)
    yield redis
    await redis.aclose()


async def no_code_host(view: Any) -> Any:
    raise AssertionError("the reconciler never touches a repository")


def ctx(settings: Settings, store: JobStore, pool: ArqRedis) -> dict[str, Any]:
    deps = EngineDeps(settings=settings, store=store, code_host_for=no_code_host)
    return {"deps": deps, "queue": ArqJobQueue(pool)}


async def submit(store: JobStore, key: str, *, age: timedelta = timedelta(0)) -> str:
    job, _ = await store.submit(
        JobRequest(dedupe_key=key, trigger="cli", repo="octo/widgets", title="t", task="t", requester="m")
    )
    if age:
        async with session_scope(store.sessions) as session:
            await session.execute(update(Job).where(Job.id == job.id).values(created_at=utcnow() - age))
    return job.id


async def test_a_queued_job_redis_does_not_hold_is_enqueued_again(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    lost = await submit(store, "lost", age=timedelta(minutes=5))
    queue = ArqJobQueue(pool)

    counts = await reconcile(ctx(settings, store, pool))

    assert counts == {"enqueued": 1, "failed": 0}
    assert await queue.status(lost) is JobStatus.queued


async def test_a_just_submitted_job_is_left_to_the_web_process_to_enqueue(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    fresh = await submit(store, "fresh")

    assert await reconcile(ctx(settings, store, pool)) == {"enqueued": 0, "failed": 0}
    assert await ArqJobQueue(pool).status(fresh) is JobStatus.not_found


async def test_jobs_already_on_the_queue_are_left_alone(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    job_id = await submit(store, "fine", age=timedelta(minutes=5))
    await ArqJobQueue(pool).enqueue(job_id)

    assert await reconcile(ctx(settings, store, pool)) == {"enqueued": 0, "failed": 0}


async def test_a_running_job_lost_with_redis_is_enqueued_to_resume(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    job_id = await submit(store, "running")
    await store.transition(job_id, JobState.RUNNING)

    counts = await reconcile(ctx(settings, store, pool))

    assert counts["enqueued"] == 1
    assert await ArqJobQueue(pool).status(job_id) is JobStatus.queued


async def test_a_running_job_whose_tries_ARQ_used_up_is_failed_with_a_reason(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    from arq.constants import retry_key_prefix
    from arq.worker import Worker

    from workers.settings import worker_options

    job_id = await submit(store, "dead")
    await store.transition(job_id, JobState.RUNNING)
    await ArqJobQueue(pool).enqueue(job_id)
    # Each worker that took the job and died counted a try; the next one finds them all used up, and ARQ
    # records the job as failed without running it — our row still says running.
    await pool.set(retry_key_prefix + job_id, settings.job_max_tries)
    worker = Worker(
        **worker_options(settings, burst=True, reconciler=False),
        redis_pool=pool,
        ctx=ctx(settings, store, pool),
    )
    await worker.main()
    assert worker.jobs_failed == 1
    assert (await store.get(job_id)).state == JobState.RUNNING

    counts = await reconcile(ctx(settings, store, pool))

    assert counts == {"enqueued": 0, "failed": 1}
    job = await store.get(job_id)
    assert job.state == JobState.FAILED
    assert "retry it to continue" in (job.failure_reason or "")
