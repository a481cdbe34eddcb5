"""One conversation per pull request, through ARQ on a real Redis: a job whose branch is busy waits without
a worker slot and runs when the busy one ends — also after its worker is gone or Redis lost everything."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

from arq.connections import ArqRedis
from arq.jobs import JobStatus

from engine import events
from engine.pipeline.run import JobRun
from engine.settings import Settings
from engine.states import JobKind, JobState
from engine.store.conversations import CI_TRIGGER
from engine.store.intake import Intake
from engine.store.jobs import JobRequest, JobStore
from engine.views import JobEventView, JobView
from tests.workers.conftest import burst_worker, worker_ctx
from workers.jobs import reconcile
from workers.queue import ArqJobQueue
from workers.settings import AutodevWorker, worker_options

BRANCH = "autodev/7-widgets"


def revise(key: str, task: str) -> JobRequest:
    return JobRequest(
        dedupe_key=key,
        trigger="github_comment",
        repo="octo/widgets",
        title=f"Revise #7 ({key})",
        task=task,
        requester="alice",
        kind=JobKind.REVISE,
        base_branch="main",
        branch=BRANCH,
        pr_number=7,
    )


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll the database (where the worker writes) until `condition` holds; ten seconds at most."""
    async with asyncio.timeout(10):
        for _ in itertools.count():
            if await condition():
                return
            await asyncio.sleep(0.02)


async def test_two_revisions_asked_while_a_job_runs_make_one_job_that_runs_after_it(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    queue = ArqJobQueue(pool)
    intake = Intake.for_jobs(store, queue)  # the path GitHub's and Slack's requests take
    release = asyncio.Event()
    running: set[str] = set()
    most_at_once = 0
    ran: list[str] = []

    async def pipeline(run: JobRun) -> None:
        nonlocal most_at_once
        running.add(run.job_id)
        most_at_once = max(most_at_once, len(running))
        ran.append(run.job_id)
        if len(ran) == 1:
            await release.wait()
        running.discard(run.job_id)

    first, _ = await intake.submit(revise("a", "Rename the flag."))
    worker = burst_worker(settings, store, pool, pipeline)
    working = asyncio.create_task(worker.main())
    await until(lambda: _state_is(store, first, JobState.RUNNING))

    second, _ = await intake.submit(revise("b", "Add a test for the flag."))
    await until(lambda: _waits(store, second))
    third, _ = await intake.submit(revise("c", "Document the flag."))
    await until(lambda: _waits(store, third))
    release.set()
    await working

    assert ran == [first, third] and most_at_once == 1
    assert worker.jobs_failed == 0
    assert (await store.get(second)).failure_reason == f"folded into {third}"
    job = await store.get(third)
    assert job.state == JobState.SUCCEEDED and "Add a test for the flag." in job.task
    waiting = [e for e in await store.events(third) if e.type == events.WAITING_BEHIND]
    assert [e.data["text"] for e in waiting] == [f"waiting for job {first} on this pull request's branch"]


async def test_a_job_waiting_behind_one_whose_worker_died_runs_after_it_even_when_redis_lost_both(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    ran: list[str] = []

    async def pipeline(run: JobRun) -> None:
        ran.append(run.job_id)

    queue = ArqJobQueue(pool)
    [(orphan, _)] = await store.submit_many([revise("a", "Rename the flag.")])
    await store.transition(orphan, JobState.RUNNING)  # its worker was killed mid-job
    [(waiting, _)] = await store.submit_many([revise("b", "Add a test.")])
    await queue.enqueue(waiting)
    await burst_worker(settings, store, pool, pipeline).main()
    assert ran == [] and await _waits(store, waiting)

    await pool.flushdb()  # Redis restarted empty
    counts = await reconcile(worker_ctx(settings, store, pool))
    worker = burst_worker(settings, store, pool, pipeline)
    await worker.main()

    assert counts["enqueued"] == 1, "the orphan (running, in no queue) is queued to resume"
    assert ran == [orphan, waiting], "the orphan's end woke the waiting job"
    assert (await store.get(waiting)).state == JobState.SUCCEEDED
    assert worker.jobs_failed == 0


async def test_the_reconciler_wakes_a_waiting_job_whose_blocker_ended_without_waking_it(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    queue = ArqJobQueue(pool)
    [(blocker, _)] = await store.submit_many([revise("a", "Rename the flag.")])
    await store.transition(blocker, JobState.RUNNING)
    [(waiting, _)] = await store.submit_many([revise("b", "Add a test.")])
    await queue.enqueue(waiting)
    await burst_worker(settings, store, pool).main()
    assert await queue.status(waiting) is JobStatus.complete, "it let go of the worker"

    still = await reconcile(worker_ctx(settings, store, pool))
    assert still["failed"] == 0 and await queue.status(waiting) is JobStatus.complete, "left waiting"
    await store.transition(blocker, JobState.SUCCEEDED)  # its worker died between the end and the wake
    woken = await reconcile(worker_ctx(settings, store, pool))

    assert woken["enqueued"] == 1
    assert await queue.status(waiting) is JobStatus.queued


async def _state_is(store: JobStore, job_id: str, state: JobState) -> bool:
    return (await store.get(job_id)).state == state


async def _waits(store: JobStore, job_id: str) -> bool:
    return any(e.type == events.WAITING_BEHIND for e in await store.events(job_id))


class ShownEvents:
    """A reporter (the port GitHub's check run and Slack's thread implement) that keeps what it was shown."""

    name = "recording"

    def __init__(self) -> None:
        self.shown: list[tuple[str, str, dict[str, object]]] = []

    async def on_event(self, view: JobView, event: JobEventView) -> None:
        self.shown.append((view.id, event.type, dict(event.data)))


async def test_the_end_of_a_request_folded_into_a_newer_one_is_shown_where_it_was_asked(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    """It is cancelled inside the newer request's insert, where no reporter is at hand: its check run or
    Slack thread would have stayed "queued" for ever."""
    reporter = ShownEvents()
    [(busy, _)] = await store.submit_many([revise("a", "Rename the flag.")])
    await store.transition(busy, JobState.RUNNING)
    [(older, _)] = await store.submit_many([revise("b", "Add a test.")])
    [(newer, _)] = await store.submit_many([revise("c", "Document the flag.")])
    await ArqJobQueue(pool).enqueue(newer)
    ctx = worker_ctx(settings, store, pool)
    ctx["deps"].reporters_for = lambda view: [reporter]

    await AutodevWorker(
        **worker_options(settings, burst=True, reconciler=False), redis_pool=pool, ctx=ctx
    ).main()

    ended = [(t, d["state"], d["reason"]) for job, t, d in reporter.shown if job == older and t == "state"]
    assert ended == [("state", "cancelled", f"folded into {newer}")]
    assert (newer, events.WAITING_BEHIND) in [(job, t) for job, t, _ in reporter.shown]


async def test_a_ci_fix_that_waited_while_autodev_pushed_a_newer_commit_is_not_run(
    settings: Settings, store: JobStore, pool: ArqRedis
) -> None:
    """The job it waited for pushed after the failing commit: CI on that commit decides whether to fix."""
    ran: list[str] = []

    async def pipeline(run: JobRun) -> None:
        ran.append(run.job_id)

    failing, newer = "1" * 40, "2" * 40
    fix = revise("ci", "Check `tests` fails.").model_copy(
        update={"trigger": CI_TRIGGER, "origin": {"ci_fix": {"sha": failing}, "round": "CI fix 1 of 2"}}
    )
    [(job_id, _)] = await store.submit_many([fix])
    await store.record_push(repo="octo/widgets", sha=failing, job_id="0" * 32, branch=BRANCH)
    await store.record_push(repo="octo/widgets", sha=newer, job_id="1" * 32, branch=BRANCH)
    await ArqJobQueue(pool).enqueue(job_id)

    await burst_worker(settings, store, pool, pipeline).main()

    job = await store.get(job_id)
    assert ran == [] and job.state == JobState.CANCELLED
    assert (
        job.failure_reason
        == f"not needed any more: {newer[:12]} was pushed after the failing commit {failing[:12]}"
    )
    assert await store.ci_rounds_used("octo/widgets", 7) == 0, "a fix that never ran is not a round"
