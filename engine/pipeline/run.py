"""A job's lifecycle around the pipeline: claim it, run it, end it in exactly one terminal state.

Workers call `run_job`; everything a job does between `running` and its end happens in the pipeline
(engine.pipeline.work), which talks to the world through a `JobRun` (engine.pipeline.jobrun).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from engine import events, logctx, tracing
from engine.errors import (
    IllegalTransition,
    JobCancelled,
    JobNotFound,
    JobStopped,
    JobWaits,
    LimitReached,
    TransientFailure,
)
from engine.llm.caps import cap_refusal
from engine.pipeline.jobrun import EngineDeps, JobRun
from engine.pipeline.waiting import wait_for
from engine.pipeline.work import run_pipeline
from engine.states import JobState
from engine.store.conversations import CI_TRIGGER, WaitingBehind
from engine.store.models import Job
from engine.store.reads import job_view

__all__ = ["EngineDeps", "JobRun", "catch_up_reporters", "fail_job", "run_job"]

log = logging.getLogger(__name__)


async def run_job(job_id: str, deps: EngineDeps) -> JobState:
    """Run the job to a terminal state (or hand it back on shutdown); safe to call again for the same job."""
    with logctx.bind(job_id=job_id):
        return await _run_job(job_id, deps)


async def _run_job(job_id: str, deps: EngineDeps) -> JobState:
    store = deps.store
    try:
        job = await store.get(job_id)
    except JobNotFound:
        log.warning("job %s not found; nothing to run", job_id, extra={"job_id": job_id})
        return JobState.FAILED
    state = JobState(job.state)
    if state.terminal or state is JobState.WAITING:
        return state  # a waiting job runs again only once it is answered (and queued)
    attributes = {
        "autodev.job_id": job_id,
        "autodev.repo": job.repo,
        "autodev.trigger": job.trigger,
        "autodev.job.kind": job.kind,
        "autodev.job.attempt": job.attempts + 1,
    }
    # Under the trigger's span when the web process left its traceparent on the job: one trace per job.
    parent = (job.origin or {}).get("traceparent")
    with logctx.bind(repo=job.repo), tracing.span("autodev.job", attributes, parent=parent) as span:
        ended = await _claim_and_run(job_id, deps, job, state)
        span.set({"autodev.job.state": ended.value})
        if ended is JobState.FAILED:
            span.error("the job failed")
        return ended


async def _claim_and_run(job_id: str, deps: EngineDeps, job: Job, state: JobState) -> JobState:
    store = deps.store
    # Reporters are chosen by the job's origin and repository: the row just read says which.
    run = JobRun(job_id, deps, deps.reporters_for(job_view(job, [], [], [])), job)
    if job.cancel_requested:
        return await _finish(run, JobState.CANCELLED, "cancelled before it started")
    if state is JobState.QUEUED:
        await _show_replaced(deps, job)
        if (stale := await _stale_ci_fix(deps, job)) is not None:
            return await _finish(run, JobState.CANCELLED, stale)
        refusal = await cap_refusal(store, deps.settings, job.repo)
        if refusal is not None:
            return await _finish(run, JobState.FAILED, refusal, {"limit": "daily_cap"})
    if state is JobState.RUNNING:
        # A worker died or was stopped mid-job; pick up from the last checkpoint.
        await store.update(job_id, attempts=job.attempts + 1)
        await run.emit(events.RESUMED, {"attempt": job.attempts + 1})
    else:
        try:
            claimed = await store.transition(job_id, JobState.RUNNING, phase="preparing", unless_behind=True)
        except IllegalTransition:
            return JobState((await store.get(job_id)).state)
        except WaitingBehind as exc:
            await _wait_behind(run, exc.blocker)
            return JobState.QUEUED  # no worker slot held: the job that has the branch wakes this one
        await run.publish(claimed)

    pipeline = deps.pipeline or run_pipeline
    try:
        await pipeline(run)
    except JobCancelled as exc:
        return await _finish(run, JobState.CANCELLED, exc.reason)
    except JobWaits as exc:
        return await wait_for(run, exc)
    except LimitReached as exc:
        return await _finish(run, JobState.FAILED, exc.reason, {"limit": exc.limit})
    except JobStopped as exc:
        return await _finish(run, JobState.FAILED, exc.reason)
    except TransientFailure:
        raise  # the worker decides whether another try is left
    except asyncio.CancelledError:
        # Aborted through the queue (cancel) or the worker is shutting down: tell them apart by the flag.
        if await asyncio.shield(store.cancel_requested(job_id)):
            await asyncio.shield(_finish(run, JobState.CANCELLED, "cancelled on request"))
        raise
    except Exception as exc:
        log.exception("job crashed", extra={"job_id": job_id})
        return await _finish(run, JobState.FAILED, f"internal error: {type(exc).__name__}: {exc}")
    return await _finish(run, JobState.SUCCEEDED, None)


async def fail_job(job_id: str, deps: EngineDeps, reason: str) -> JobState:
    """End a job that cannot run any more (retries exhausted, worker lost) and tell its reporters."""
    view = await deps.store.view(job_id, with_events=False)
    if view.terminal:
        return view.state
    return await _finish(JobRun(job_id, deps, deps.reporters_for(view)), JobState.FAILED, reason)


async def catch_up_reporters(job_id: str, deps: EngineDeps, names: Sequence[str]) -> list[str]:
    """Show an ended job's final state on the reporters in `names` that missed it; the ones that now did."""
    view = await deps.store.view(job_id)
    ending = next((e for e in reversed(view.events) if e.type == events.STATE), None)
    if not view.terminal or ending is None:
        return []
    caught_up: list[str] = []
    for reporter in deps.reporters_for(view):
        if reporter.name not in names:
            continue
        try:
            await reporter.on_event(view, ending)
        except Exception as exc:
            log.warning(
                "reporter %s still cannot show the job's end: %s",
                reporter.name,
                f"{type(exc).__name__}: {exc}"[:300],
                extra={"job_id": job_id},
            )
            continue
        await deps.store.append_event(
            job_id, events.REPORTER_CAUGHT_UP, {"reporter": reporter.name, "seq": ending.seq}
        )
        caught_up.append(reporter.name)
    return caught_up


async def _wait_behind(run: JobRun, blocker: str) -> None:
    """Say once per blocker why the job waits (the job page, the check run), then let go of it."""
    last = next(
        (e for e in reversed(await run.store.events(run.job_id)) if e.type == events.WAITING_BEHIND), None
    )
    if last is None or last.data.get("job_id") != blocker:
        text = f"waiting for job {blocker} on this pull request's branch"
        await run.emit(events.WAITING_BEHIND, {"job_id": blocker, "text": text})
    log.info("job waits behind %s", blocker, extra={"job_id": run.job_id})


async def _show_replaced(deps: EngineDeps, job: Job) -> None:
    """Show the end of the waiting jobs this one took the place of (engine.store.conversations): they were
    cancelled inside the submit's transaction, where no reporter is at hand. Showing an end twice is
    harmless (a reporter renders the whole state)."""
    for old in (job.origin or {}).get("replaces", []):
        view = await deps.store.view(old, with_events=False)
        await catch_up_reporters(old, deps, [reporter.name for reporter in deps.reporters_for(view)])


async def _stale_ci_fix(deps: EngineDeps, job: Job) -> str | None:
    """Why a CI fix that waited is no longer needed: autodev pushed to the branch after the failing commit
    (the job it waited for), and CI on that commit decides whether another round is due."""
    failed = ((job.origin or {}).get("ci_fix") or {}).get("sha")
    if job.trigger != CI_TRIGGER or not failed or not job.branch:  # a folded request is still wanted
        return None
    if job.started_at is not None:
        return None  # handed back mid-way (a worker's shutdown): its own pushes are not someone else's
    last = await deps.store.last_push(job.repo, job.branch)
    if last is None or last == failed:
        return None
    return f"not needed any more: {last[:12]} was pushed after the failing commit {failed[:12]}"


async def wake_next(deps: EngineDeps, job: Job | None) -> str | None:
    """After a job on a branch ended: queue the branch's next job, which waited without a worker."""
    if job is None or not job.branch or deps.queue is None:
        return None
    next_id = await deps.store.next_on_branch(job.repo, job.branch)
    if next_id is not None:
        try:
            await deps.queue.enqueue(next_id)
        except Exception:  # the reconciler wakes it within a minute
            log.warning("could not wake job %s", next_id, exc_info=True, extra={"job_id": job.id})
    return next_id


async def _finish(
    run: JobRun, state: JobState, reason: str | None, data: dict[str, Any] | None = None
) -> JobState:
    try:
        event = await run.store.transition(run.job_id, state, reason=reason, data=data)
    except IllegalTransition as exc:
        return exc.current
    await run.publish(event)
    # The branch as it is now (an implement job names its branch once it prepared its worktree).
    await wake_next(run.deps, await run.store.get(run.job_id))
    return state
