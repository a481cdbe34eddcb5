"""A job that waits for a person: a clarifying question, or its plan awaiting approval.

The job goes to `waiting` and its worker is free (the queue's function returns). The reporters show the
question or the plan; the first answer from someone allowed to trigger jobs (or the approval) adds to the
task, puts the job back on the queue and the next run picks up where it stopped. Unanswered past its
deadline the reconciler cancels it with a note; cancel works while it waits.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from engine import events
from engine.errors import IllegalTransition, JobWaits
from engine.pipeline.jobrun import EngineDeps, JobRun
from engine.ports import ApprovalWatcher, JobQueue
from engine.states import JobState
from engine.store.jobs import JobStore
from engine.store.models import Job, utcnow
from engine.store.waits import start_waiting, stop_waiting, waiting_info, waiting_jobs

log = logging.getLogger(__name__)

FIRST_EVENT = {"question": events.QUESTION, "approval": events.AWAITING_APPROVAL}
MAX_ANSWER_CHARS = 8000


# Jobs started where nobody can answer (`autodev run` on a local repository) never ask and never wait.
UNATTENDED_TRIGGERS = frozenset({"cli"})


def may_wait(job: Job) -> bool:
    return job.trigger not in UNATTENDED_TRIGGERS


def needs_approval(job: Job, plan_approval: bool) -> bool:
    """Whether the job's plan waits for approval: the repository asks for it or the request did."""
    origin = job.origin or {}
    return may_wait(job) and bool(plan_approval or origin.get("approve")) and not origin.get("approved")


async def wait_for(run: JobRun, waits: JobWaits) -> JobState:
    """Move the running job to `waiting` for `waits` and show it; the worker is free when this returns."""
    try:
        appended = await start_waiting(
            run.store,
            run.job_id,
            kind=waits.kind,
            text=waits.text,
            timeout_hours=waits.timeout_hours,
            first=(FIRST_EVENT[waits.kind], dict(waits.data)),
        )
    except IllegalTransition as exc:
        return exc.current
    for event in appended:
        await run.publish(event)
    log.info("job waits for %s", waits.kind, extra={"job_id": run.job_id})
    return JobState.WAITING


async def answer_question(
    store: JobStore, queue: JobQueue | None, job_id: str, *, text: str, by: str, via: str
) -> bool:
    """The answer to the job's question: added to its task, and the job queued again. False when the job
    does not wait for an answer (answered already, cancelled, timed out): nothing changes."""
    job = await store.get(job_id)
    info = waiting_info(job.origin)
    if info is None or info["kind"] != "question":
        return False
    answer = text.strip()[:MAX_ANSWER_CHARS]
    addition = f"Question from autodev: {info['text']}\nAnswer from {by}: {answer}"
    event = (events.ANSWERED, {"text": answer, "by": by, "via": via})
    return await _resume(store, queue, job_id, kind="question", event=event, addition=addition)


async def approve_plan(
    store: JobStore, queue: JobQueue | None, job_id: str, *, by: str, via: str, amendment: str = ""
) -> bool:
    """Approve the job's plan (with an optional amendment the coder is given); False when it does not
    wait for approval."""
    amendment = amendment.strip()[:MAX_ANSWER_CHARS]
    data = {"by": by, "via": via, **({"amendment": amendment} if amendment else {})}
    addition = f"Changes to the plan from {by}, who approved it: {amendment}" if amendment else None
    return await _resume(
        store,
        queue,
        job_id,
        kind="approval",
        event=(events.APPROVED, data),
        addition=addition,
        origin_update={"approved": {"by": by, "via": via}},
    )


async def _resume(
    store: JobStore,
    queue: JobQueue | None,
    job_id: str,
    *,
    kind: str,
    event: tuple[str, dict[str, Any]],
    addition: str | None,
    origin_update: dict[str, Any] | None = None,
) -> bool:
    if queue is not None:
        # The run that asked has finished in the queue; its kept result would refuse the same id.
        await queue.forget(job_id)
    resumed = await stop_waiting(
        store, job_id, kind=kind, event=event, task_addition=addition, origin_update=origin_update
    )
    if resumed is None:
        return False
    log.info("job resumed (%s)", kind, extra={"job_id": job_id})
    if queue is not None:
        try:
            await queue.enqueue(job_id)
        except Exception:  # queued in the database: the reconciler enqueues it within a minute
            log.warning("could not enqueue the resumed job", exc_info=True, extra={"job_id": job_id})
    return True


async def expire_waits(deps: EngineDeps, now: datetime | None = None) -> int:
    """Cancel waiting jobs past their deadline, with a note their reporters show; how many."""
    now = now or utcnow()
    expired = 0
    for job in await waiting_jobs(deps.store):
        info = waiting_info(job.origin)
        if info is None or datetime.fromisoformat(info["deadline"]) > now:
            continue
        what = "the question" if info["kind"] == "question" else "the plan's approval"
        reason = f"no answer to {what} within {info['hours']:g} hours; start the job again to continue"
        try:
            event = await deps.store.transition(job.id, JobState.CANCELLED, reason=reason)
        except IllegalTransition:
            continue  # answered or cancelled meanwhile
        view = await deps.store.view(job.id, with_events=False)
        await JobRun(job.id, deps, deps.reporters_for(view)).publish(event)
        expired += 1
    return expired


async def poll_approvals(deps: EngineDeps, watcher: ApprovalWatcher | None) -> int:
    """Approve the plans a watcher finds approved (a writer's 👍 on GitHub); how many."""
    if watcher is None:
        return 0
    approved = 0
    for job in await waiting_jobs(deps.store):
        if (waiting_info(job.origin) or {}).get("kind") != "approval":
            continue
        view = await deps.store.view(job.id, with_events=False)
        try:
            who = await watcher.approver(view)
        except Exception as exc:  # GitHub down: the next round asks again
            log.warning("could not read the plan's approvals: %s", exc, extra={"job_id": job.id})
            continue
        if who and await approve_plan(deps.store, deps.queue, job.id, by=who, via="reaction"):
            approved += 1
    return approved
