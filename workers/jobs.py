"""ARQ job functions: run a job, and the reconciler that makes sure no job is lost or left hanging.

`ctx["deps"]` (an `engine.runner.EngineDeps`) and `ctx["queue"]` are put there by the composition root's
`on_startup`; job functions only take ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import timedelta
from typing import Any

from arq import Retry
from arq.constants import in_progress_key_prefix
from arq.jobs import JobStatus

from engine import events, logctx
from engine.errors import TransientFailure
from engine.pipeline import run as runner
from engine.pipeline.waiting import expire_waits, poll_approvals
from engine.settings import Settings
from engine.store.models import JobState, utcnow
from workers.deliveries import reconcile_deliveries
from workers.queue import ArqJobQueue

log = logging.getLogger(__name__)

# A queued job younger than this may simply not have been enqueued *yet* by the web process.
RECONCILE_GRACE = timedelta(seconds=30)
# While a worker runs a job it keeps this lease alive; a job whose lease lapsed lost its worker. ARQ alone
# would notice only when its in-progress key expires, a whole job timeout (an hour) later.
LEASE_PREFIX = "autodev:lease:"
LEASE_TTL_S = 30
LEASE_REFRESH_S = 10
# A job's end that GitHub or Slack could not show is shown again for this long, backing off between tries.
CATCH_UP_WINDOW = timedelta(hours=1)
CATCH_UP_PREFIX = "autodev:catch-up:"
CATCH_UP_MAX_WAIT_S = 300


async def _keep_lease(redis: Any, job_id: str) -> None:
    while True:
        await redis.set(LEASE_PREFIX + job_id, "1", ex=LEASE_TTL_S)
        await asyncio.sleep(LEASE_REFRESH_S)


async def run_job(ctx: dict[str, Any], job_id: str) -> str:
    queue: ArqJobQueue = ctx["queue"]
    await queue.redis.set(LEASE_PREFIX + job_id, "1", ex=LEASE_TTL_S)
    lease = asyncio.create_task(_keep_lease(queue.redis, job_id))
    try:
        return await _run_job(ctx, job_id)
    finally:
        lease.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lease
        with contextlib.suppress(Exception):
            await queue.redis.delete(LEASE_PREFIX + job_id)


async def _run_job(ctx: dict[str, Any], job_id: str) -> str:
    deps: runner.EngineDeps = ctx["deps"]
    try_number: int = ctx.get("job_try", 1)
    try:
        state = await runner.run_job(job_id, deps)
    except TransientFailure as exc:
        max_tries = deps.settings.job_max_tries
        if try_number >= max_tries:
            reason = f"{exc.reason} (gave up after {try_number} tries)"
            return (await runner.fail_job(job_id, deps, reason)).value
        defer = exc.retry_after if exc.retry_after is not None else _backoff(try_number)
        log.warning("transient failure, retrying in %.0fs: %s", defer, exc.reason, extra={"job_id": job_id})
        await deps.store.append_event(
            job_id, events.RETRYING, {"reason": exc.reason, "in_seconds": round(defer)}
        )
        raise Retry(defer=defer) from exc
    return state.value


def job_timeout_s(settings: Settings) -> int:
    return int(settings.job_max_minutes * 60) + 300


def in_progress_timeout_s(settings: Settings) -> int:
    return job_timeout_s(settings) + 10  # what ARQ's worker adds to the longest function timeout


async def _worker_lost(queue: ArqJobQueue, job_id: str, settings: Settings) -> bool:
    """ARQ says in progress, yet no worker has renewed the job's lease for a while."""
    if await queue.redis.exists(LEASE_PREFIX + job_id):
        return False
    # A worker that has only just taken the job sets its lease within milliseconds; look only at keys older
    # than a lease's lifetime (ARQ sets the key with a fixed expiry, so its remaining time tells its age).
    remaining_ms = await queue.redis.pttl(in_progress_key_prefix + job_id)
    timeout_ms = in_progress_timeout_s(settings) * 1000
    return remaining_ms > 0 and timeout_ms - remaining_ms > LEASE_TTL_S * 1000


def _backoff(try_number: int) -> float:
    return min(300.0, 5.0 * 2 ** (try_number - 1)) * random.uniform(0.8, 1.2)


async def catch_up_reporters(deps: runner.EngineDeps, queue: ArqJobQueue) -> int:
    """Show recently ended jobs' final state where a reporter missed it (Slack or GitHub down at the end)."""
    caught_up = 0
    for job_id, name in await deps.store.reporters_behind(utcnow() - CATCH_UP_WINDOW):
        key = f"{CATCH_UP_PREFIX}{job_id}:{name}"
        tries = int(await queue.redis.incr(key))
        wait = min(CATCH_UP_MAX_WAIT_S, 15 * 2 ** (tries - 1))
        # The count lives while tries are due; `wait` seconds from now is the earliest next try.
        await queue.redis.expire(key, int(CATCH_UP_WINDOW.total_seconds()))
        if not await queue.redis.set(f"{key}:next", "1", ex=wait, nx=True):
            continue
        with logctx.bind(job_id=job_id):
            if await runner.catch_up_reporters(job_id, deps, [name]):
                caught_up += 1
                await queue.redis.delete(key, f"{key}:next")
    return caught_up


async def reconcile(ctx: dict[str, Any]) -> dict[str, int]:
    """Re-enqueue jobs (and stored GitHub deliveries) Redis does not hold; fail jobs whose worker died after
    its last try; show ends that a reporter missed."""
    deps: runner.EngineDeps = ctx["deps"]
    queue: ArqJobQueue = ctx["queue"]
    counts = {"enqueued": 0, "failed": 0, "revived": 0, "reported": 0, "expired": 0, "approved": 0}
    now = utcnow()
    for job_id in await deps.store.ids_in_state(JobState.QUEUED, JobState.RUNNING):
        status = await queue.status(job_id)
        if status is JobStatus.in_progress and await _worker_lost(queue, job_id, deps.settings):
            # The job is still on ARQ's queue; without the in-progress key the next free worker takes it and
            # resumes from the last completed step.
            await queue.redis.delete(in_progress_key_prefix + job_id)
            log.warning("worker lost; job handed to another worker", extra={"job_id": job_id})
            counts["revived"] += 1
            continue
        if status in (JobStatus.queued, JobStatus.deferred, JobStatus.in_progress):
            continue
        job = await deps.store.get(job_id)
        if status is JobStatus.complete and job.state == JobState.QUEUED and await queue.waited(job_id):
            # It let go of its slot behind another job on its branch; wake it if that one has ended.
            if await deps.store.blocker_of(job_id) is None:
                await queue.enqueue(job_id)
                counts["enqueued"] += 1
        elif status is JobStatus.complete:
            # ARQ finished with the job but our row never reached an end: its worker died on the last try.
            await runner.fail_job(
                job_id,
                deps,
                f"the worker stopped during the job and its {deps.settings.job_max_tries} tries"
                " are used up; retry it to continue from the last completed step",
            )
            counts["failed"] += 1
        elif job.state == JobState.RUNNING or now - job.created_at > RECONCILE_GRACE:
            # Not in Redis at all: lost with a Redis restart, or the enqueue failed after the commit.
            await queue.enqueue(job_id)
            counts["enqueued"] += 1
    counts["reported"] = await catch_up_reporters(deps, queue)
    # Waiting jobs are never enqueued here: an answer or an approval does that; past their deadline they end.
    counts["expired"] = await expire_waits(deps)
    counts["approved"] = await poll_approvals(deps, ctx.get("approvals"))
    counts |= await reconcile_deliveries(deps.store, queue)
    if any(counts.values()):
        log.info("reconciled jobs: %s", counts)
    return counts
