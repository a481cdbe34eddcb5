"""The reconciler: a job durable in the database is never lost by Redis, nor left running for ever."""

from __future__ import annotations

from datetime import timedelta

from arq.connections import ArqRedis
from arq.jobs import JobStatus
from sqlalchemy import update

from engine.settings import Settings
from engine.store.db import session_scope
from engine.store.jobs import JobRequest, JobStore
from engine.store.models import Job, JobState, utcnow
from tests.workers.conftest import burst_worker, worker_ctx
from workers.jobs import reconcile
from workers.queue import ArqJobQueue

NO_DELIVERIES = {
    "deliveries_enqueued": 0,
    "deliveries_purged": 0,
    "expired": 0,
    "approved": 0,
}  # and no waits


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

    counts = await reconcile(worker_ctx(settings, store, pool))

    assert counts == {"enqueued": 1, "failed": 0, "revived": 0, "reported": 0, **NO_DELIVERIES}
    assert await queue.status(lost) is JobStatus.queued


async def test_a_just_submitted_job_is_left_to_the_web_process_to_enqueue(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    fresh = await submit(store, "fresh")

    assert await reconcile(worker_ctx(settings, store, pool)) == {
        "enqueued": 0,
        "failed": 0,
        "revived": 0,
        "reported": 0,
        **NO_DELIVERIES,
    }
    assert await ArqJobQueue(pool).status(fresh) is JobStatus.not_found


async def test_jobs_already_on_the_queue_are_left_alone(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    job_id = await submit(store, "fine", age=timedelta(minutes=5))
    await ArqJobQueue(pool).enqueue(job_id)

    assert await reconcile(worker_ctx(settings, store, pool)) == {
        "enqueued": 0,
        "failed": 0,
        "revived": 0,
        "reported": 0,
        **NO_DELIVERIES,
    }


async def test_a_running_job_lost_with_redis_is_enqueued_to_resume(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    job_id = await submit(store, "running")
    await store.transition(job_id, JobState.RUNNING)

    counts = await reconcile(worker_ctx(settings, store, pool))

    assert counts["enqueued"] == 1
    assert await ArqJobQueue(pool).status(job_id) is JobStatus.queued


async def test_a_running_job_whose_tries_ARQ_used_up_is_failed_with_a_reason(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    from arq.constants import retry_key_prefix

    job_id = await submit(store, "dead")
    await store.transition(job_id, JobState.RUNNING)
    await ArqJobQueue(pool).enqueue(job_id)
    # Each worker that took the job and died counted a try; the next one finds them all used up, and ARQ
    # records the job as failed without running it — our row still says running.
    await pool.set(retry_key_prefix + job_id, settings.job_max_tries)
    worker = burst_worker(settings, store, pool)
    await worker.main()
    assert worker.jobs_failed == 1
    assert (await store.get(job_id)).state == JobState.RUNNING

    counts = await reconcile(worker_ctx(settings, store, pool))

    assert counts == {"enqueued": 0, "failed": 1, "revived": 0, "reported": 0, **NO_DELIVERIES}
    job = await store.get(job_id)
    assert job.state == JobState.FAILED
    assert "retry it to continue" in (job.failure_reason or "")


async def claim_as_a_dead_worker(pool: ArqRedis, settings: Settings, job_id: str, age_s: float) -> None:
    """What a worker killed mid-job leaves: the job on ARQ's queue, ARQ's in-progress key, no lease."""
    from arq.constants import in_progress_key_prefix

    from workers.jobs import in_progress_timeout_s

    await ArqJobQueue(pool).enqueue(job_id)
    remaining_ms = int((in_progress_timeout_s(settings) - age_s) * 1000)
    await pool.psetex(in_progress_key_prefix + job_id, remaining_ms, b"1")


async def test_a_job_whose_worker_died_is_handed_to_another_worker_and_resumed(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    from engine.pipeline.run import JobRun

    job_id = await submit(store, "orphan")
    await store.transition(job_id, JobState.RUNNING)
    await claim_as_a_dead_worker(pool, settings, job_id, age_s=60)
    assert await ArqJobQueue(pool).status(job_id) is JobStatus.in_progress

    counts = await reconcile(worker_ctx(settings, store, pool))

    assert counts["revived"] == 1
    ran: list[str] = []

    async def pipeline(run: JobRun) -> None:
        ran.append(run.job_id)

    await burst_worker(settings, store, pool, pipeline).main()
    assert ran == [job_id]
    job = await store.get(job_id)
    assert job.state == JobState.SUCCEEDED
    assert "resumed" in [e.type for e in await store.events(job_id)]


async def test_a_job_whose_worker_keeps_its_lease_is_left_alone(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    from workers.jobs import LEASE_PREFIX

    job_id = await submit(store, "alive")
    await store.transition(job_id, JobState.RUNNING)
    await claim_as_a_dead_worker(pool, settings, job_id, age_s=600)
    await pool.set(LEASE_PREFIX + job_id, "1", ex=30)

    assert (await reconcile(worker_ctx(settings, store, pool)))["revived"] == 0
    assert await ArqJobQueue(pool).status(job_id) is JobStatus.in_progress


async def test_a_job_a_worker_has_only_just_taken_is_left_alone(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    """Between ARQ's claim and the first lease there are milliseconds; a young claim is never revived."""
    job_id = await submit(store, "young")
    await store.transition(job_id, JobState.RUNNING)
    await claim_as_a_dead_worker(pool, settings, job_id, age_s=1)

    assert (await reconcile(worker_ctx(settings, store, pool)))["revived"] == 0


async def test_a_running_job_holds_a_lease_and_drops_it_when_done(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    import asyncio

    from engine.pipeline.run import JobRun
    from workers.jobs import LEASE_PREFIX

    job_id = await submit(store, "leased")
    seen: list[bool] = []

    async def pipeline(run: JobRun) -> None:
        seen.append(bool(await pool.exists(LEASE_PREFIX + run.job_id)))
        await asyncio.sleep(0)

    await ArqJobQueue(pool).enqueue(job_id)
    await burst_worker(settings, store, pool, pipeline).main()

    assert seen == [True]
    assert not await pool.exists(LEASE_PREFIX + job_id)
