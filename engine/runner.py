"""A job's lifecycle around the pipeline: claim it, run it, end it in exactly one terminal state.

Workers call `run_job`; everything a job does between `running` and its end happens in the pipeline
(engine.pipeline), which talks to the world through a `JobRun`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine import events, logctx
from engine.caps import cap_refusal
from engine.errors import JobCancelled, JobStopped, LimitReached, ReporterBehind, TransientFailure
from engine.jobs import IllegalTransition, JobNotFound, JobStore
from engine.models import CostEntry, Job, JobState
from engine.ports import CodeHost, JobEventView, JobQueue, Reporter
from engine.settings import Settings
from engine.views import JobView

log = logging.getLogger(__name__)

Pipeline = Callable[["JobRun"], Awaitable[None]]
# How old a read of the cancel flag may be for the checks between a model's tool calls and test runs.
CANCEL_RECHECK_S = 1.0


@dataclass
class EngineDeps:
    """What the composition root hands the engine: settings, the store, and the adapters' factories."""

    settings: Settings
    store: JobStore
    code_host_for: Callable[[JobView], Awaitable[CodeHost]]
    reporters_for: Callable[[JobView], Sequence[Reporter]] = lambda view: ()
    queue: JobQueue | None = None
    pipeline: Pipeline | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class JobRun:
    """One execution of one job: emits events to the store and every reporter, and checks for cancel."""

    def __init__(
        self, job_id: str, deps: EngineDeps, reporters: Sequence[Reporter], job: Job | None = None
    ) -> None:
        self.job_id = job_id
        self.deps = deps
        self.store = deps.store
        self.settings = deps.settings
        self.reporters = list(reporters)
        self.reporter_errors = 0
        # The job's row as the runner read it when it claimed the job: what the pipeline starts from (its
        # request, plan, branch, …); state, phase and counters in it are not kept up to date.
        self.job = job

    async def emit(
        self,
        type: str,
        data: dict[str, Any] | None = None,
        *,
        fields: dict[str, Any] | None = None,
        steps: dict[int, dict[str, Any]] | None = None,
    ) -> JobEventView:
        """Append and show an event; `fields` (job columns) and `steps` are written in its transaction."""
        event = await self.store.append_event(self.job_id, type, data, fields=fields, steps=steps)
        await self.publish(event)
        return event

    async def record_llm_call(self, entry: CostEntry, data: dict[str, Any]) -> None:
        """The call's cost entry, the job's totals and its `llm_call` event in one transaction; then shown."""
        event = await self.store.add_cost(entry, (events.LLM_CALL, data))
        if event is not None:
            await self.publish(event)

    async def set_phase(
        self,
        phase: str,
        data: dict[str, Any] | None = None,
        *,
        fields: dict[str, Any] | None = None,
        steps: dict[int, dict[str, Any]] | None = None,
        then: Sequence[tuple[str, dict[str, Any]]] = (),
        unless_cancelled: bool = False,
    ) -> None:
        """Enter `phase` (its event, then the events `then`), with `fields` and `steps`, in one transaction.

        `unless_cancelled`: the write reads the cancel flag afresh and, when it is set, writes nothing and
        raises JobCancelled; the check before a plan or a step costs no read of its own."""
        new = [(events.PHASE, {"phase": phase, **(data or {})}), *then]
        appended = await self.store.append_events(
            self.job_id,
            new,
            fields={**(fields or {}), "phase": phase},
            steps=steps,
            unless_cancelled=unless_cancelled,
        )
        for event in appended:
            await self.publish(event)

    async def publish(self, event: JobEventView) -> None:
        """Show `event` everywhere; a reporter that fails is logged and never fails the job."""
        if not self.reporters:
            return
        view = await self.store.view(self.job_id, with_events=False)
        for reporter in self.reporters:
            try:
                await reporter.on_event(view, event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.reporter_errors += 1
                log.warning(
                    "reporter %s failed on %s",
                    reporter.name,
                    event.type,
                    exc_info=not isinstance(exc, ReporterBehind),  # a ReporterBehind has said why already
                    extra={"job_id": self.job_id},
                )
                # Recorded, not published (that would ask the failing reporter again): for /metrics, the page,
                # and the reconciler, which shows a job's end again where it could not be shown.
                await self.store.append_event(
                    self.job_id,
                    events.REPORTER_ERROR,
                    {
                        "reporter": reporter.name,
                        "on": event.type,
                        "seq": event.seq,
                        "error": f"{type(exc).__name__}: {exc}"[:300],
                    },
                )

    async def check_cancel(self) -> None:
        """Raise JobCancelled when the job's cancel flag is set (read now): before a step or a plan."""
        if await self.store.cancel_requested(self.job_id):
            raise JobCancelled("cancelled on request")

    async def check_cancel_recent(self) -> None:
        """check_cancel, answered by the flag as read within the last CANCEL_RECHECK_S seconds when there
        is one: before a tool call or a test run, which follow the LLM call whose event just read it. The
        next LLM call (its budget check) and the next step read the flag afresh."""
        if await self.store.cancel_requested(self.job_id, max_age_s=CANCEL_RECHECK_S):
            raise JobCancelled("cancelled on request")

    async def view(self) -> JobView:
        return await self.store.view(self.job_id)


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
    if state.terminal:
        return state
    with logctx.bind(repo=job.repo):
        return await _claim_and_run(job_id, deps, job, state)


async def _claim_and_run(job_id: str, deps: EngineDeps, job: Job, state: JobState) -> JobState:
    store = deps.store
    # Reporters are chosen by the job's origin and repository: the row just read says which.
    run = JobRun(job_id, deps, deps.reporters_for(JobView.of(job, [], [], [])), job)
    if job.cancel_requested:
        return await _finish(run, JobState.CANCELLED, "cancelled before it started")
    if state is JobState.QUEUED:
        refusal = await cap_refusal(store, deps.settings, job.repo)
        if refusal is not None:
            return await _finish(run, JobState.FAILED, refusal, {"limit": "daily_cap"})
    if state is JobState.RUNNING:
        # A worker died or was stopped mid-job; pick up from the last checkpoint.
        await store.update(job_id, attempts=job.attempts + 1)
        await run.emit("resumed", {"attempt": job.attempts + 1})
    else:
        try:
            await run.publish(await store.transition(job_id, JobState.RUNNING, phase="preparing"))
        except IllegalTransition:
            return JobState((await store.get(job_id)).state)

    pipeline = deps.pipeline
    if pipeline is None:
        from engine.pipeline import run_pipeline

        pipeline = run_pipeline
    try:
        await pipeline(run)
    except JobCancelled as exc:
        return await _finish(run, JobState.CANCELLED, exc.reason)
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


async def _finish(
    run: JobRun, state: JobState, reason: str | None, data: dict[str, Any] | None = None
) -> JobState:
    try:
        event = await run.store.transition(run.job_id, state, reason=reason, data=data)
    except IllegalTransition as exc:
        return exc.current
    await run.publish(event)
    return state
