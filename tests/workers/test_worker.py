"""The ARQ worker on a real Redis: picks up submitted jobs, persists their state and events, retries
transient failures, honours cancel, and never runs one job twice at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from arq.connections import ArqRedis

from engine.errors import PermanentFailure, TransientFailure
from engine.pipeline.run import JobRun
from engine.settings import Settings
from engine.store.jobs import JobRequest, JobStore
from engine.store.models import JobState
from tests.conftest import make_settings
from tests.workers.conftest import burst_worker, worker_ctx
from workers.queue import ArqJobQueue
from workers.settings import AutodevWorker, worker_options


async def submit(store: JobStore, key: str = "k1") -> str:
    job, _ = await store.submit(
        JobRequest(dedupe_key=key, trigger="cli", repo="octo/widgets", title="t", task="t", requester="mona")
    )
    return job.id


async def test_a_burst_worker_runs_a_submitted_job_and_persists_its_state_and_events(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    async def pipeline(run: JobRun) -> None:
        await run.set_phase("planning")
        await run.emit("plan", {"steps": [{"title": "Add the flag"}]})

    job_id = await submit(store)
    await ArqJobQueue(pool).enqueue(job_id)
    worker = burst_worker(settings, store, pool, pipeline)

    await worker.main()

    assert (worker.jobs_complete, worker.jobs_failed, worker.jobs_retried) == (1, 0, 0)
    job = await store.get(job_id)
    assert job.state == JobState.SUCCEEDED and job.attempts == 1
    events = await store.events(job_id)
    assert [e.type for e in events] == ["submitted", "state", "phase", "plan", "state"]
    assert [e.data.get("state") for e in events if e.type == "state"] == ["running", "succeeded"]


async def test_enqueueing_a_job_twice_runs_it_once(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    runs: list[str] = []

    async def pipeline(run: JobRun) -> None:
        runs.append(run.job_id)

    job_id = await submit(store)
    queue = ArqJobQueue(pool)
    await queue.enqueue(job_id)
    await queue.enqueue(job_id)

    await burst_worker(settings, store, pool, pipeline).main()

    assert runs == [job_id]


async def test_a_transient_failure_is_retried_and_the_job_then_succeeds(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    tries: list[int] = []

    async def pipeline(run: JobRun) -> None:
        tries.append(1)
        if len(tries) == 1:
            raise TransientFailure("GitHub answered 502", retry_after=0.05)

    job_id = await submit(store)
    await ArqJobQueue(pool).enqueue(job_id)
    worker = burst_worker(settings, store, pool, pipeline)

    await worker.main()

    assert len(tries) == 2 and worker.jobs_retried == 1
    job = await store.get(job_id)
    assert job.state == JobState.SUCCEEDED and job.attempts == 2
    assert "resumed" in [e.type for e in await store.events(job_id)]


async def test_a_transient_failure_on_every_try_fails_the_job_saying_so(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    async def pipeline(run: JobRun) -> None:
        raise TransientFailure("LLM rate limited", retry_after=0.01)

    job_id = await submit(store)
    await ArqJobQueue(pool).enqueue(job_id)

    await burst_worker(settings, store, pool, pipeline).main()

    job = await store.get(job_id)
    assert job.state == JobState.FAILED
    assert job.failure_reason == f"LLM rate limited (gave up after {settings.job_max_tries} tries)"


async def test_a_permanent_failure_ends_the_job_with_its_reason(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    async def pipeline(run: JobRun) -> None:
        raise PermanentFailure("the LLM endpoint refused the API key (401)")

    job_id = await submit(store)
    await ArqJobQueue(pool).enqueue(job_id)
    worker = burst_worker(settings, store, pool, pipeline)

    await worker.main()

    job = await store.get(job_id)
    assert job.state == JobState.FAILED
    assert job.failure_reason == "the LLM endpoint refused the API key (401)"
    assert worker.jobs_retried == 0


async def test_cancel_aborts_a_running_job_and_it_ends_cancelled(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    from engine.pipeline.actions import cancel_job

    started = asyncio.Event()

    async def pipeline(run: JobRun) -> None:
        started.set()
        await asyncio.sleep(30)  # a long LLM call, say

    job_id = await submit(store)
    queue = ArqJobQueue(pool)
    await queue.enqueue(job_id)
    worker = burst_worker(settings, store, pool, pipeline)
    worker_task = asyncio.create_task(worker.main())
    await asyncio.wait_for(started.wait(), 10)

    await cancel_job(store, queue, job_id, by="mona")
    await asyncio.wait_for(worker_task, 20)

    job = await store.get(job_id)
    assert job.state == JobState.CANCELLED
    assert job.failure_reason == "cancelled on request"


async def test_jobs_enqueued_together_each_run_once_and_ids_arq_holds_are_skipped(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    runs: list[str] = []

    async def pipeline(run: JobRun) -> None:
        runs.append(run.job_id)

    queue = ArqJobQueue(pool)
    already = await submit(store, "already-queued")
    await queue.enqueue(already)
    fresh = [await submit(store, f"batch-{n}") for n in range(5)]

    await queue.enqueue_many([already, *fresh, fresh[0]])
    assert (await queue.depth())[0] == 6

    await burst_worker(settings, store, pool, pipeline).main()
    assert sorted(runs) == sorted([already, *fresh])
    await queue.enqueue_many(fresh)  # finished: ARQ keeps their results, so they are not queued again
    assert (await queue.depth())[0] == 0


def test_an_idle_worker_looks_at_the_queue_as_often_as_configured(tmp_path: Path) -> None:
    """The poll delay bounds how long a new job waits for an idle worker (issue 9: first sign of life)."""
    assert worker_options(make_settings(tmp_path))["poll_delay"] == 0.05
    assert worker_options(make_settings(tmp_path, worker_poll_delay_s=0.5))["poll_delay"] == 0.5


async def test_polls_do_not_ask_redis_about_jobs_this_worker_is_running(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    """ARQ keeps a running job in its queue; each poll used to ask Redis (WATCH, EXISTS, ZSCORE) whether
    every one of them was already running. This worker knows its own."""
    release, all_running = asyncio.Event(), asyncio.Event()
    running: set[str] = set()

    async def pipeline(run: JobRun) -> None:
        running.add(run.job_id)
        if len(running) == 3:
            all_running.set()
        await release.wait()

    for n in range(3):
        await ArqJobQueue(pool).enqueue(await submit(store, f"k{n}"))
    worker = AutodevWorker(
        **worker_options(settings, reconciler=False) | {"max_jobs": 5, "poll_delay": 0.02},
        redis_pool=pool,
        ctx=worker_ctx(settings, store, pool, pipeline),
    )
    main = asyncio.create_task(worker.main())
    await asyncio.wait_for(all_running.wait(), 10)
    await pool.config_resetstat()
    await asyncio.sleep(0.3)  # ~15 polls with two slots free
    watches = (await pool.info("commandstats")).get("cmdstat_watch", {}).get("calls", 0)
    release.set()
    await asyncio.wait(list(worker.tasks.values()), timeout=10)
    main.cancel()
    await asyncio.gather(main, return_exceptions=True)
    assert watches == 0, f"{watches} WATCHes for jobs this worker runs"
    assert worker.jobs_complete == 3
