"""What a user can do to a job from anywhere (Slack button, check-run action, comment, job page)."""

from __future__ import annotations

import logging

from engine.ports import JobQueue
from engine.store.jobs import JobRequest, JobStore
from engine.store.models import Job, JobKind, JobState

log = logging.getLogger(__name__)


class ActionRefused(ValueError):
    """The action does not apply to the job in its current state; the message says why."""


async def cancel_job(store: JobStore, queue: JobQueue | None, job_id: str, *, by: str) -> Job:
    """Flag the job; a queued one ends at once, a running one at its next check (and is aborted)."""
    job, changed = await store.request_cancel(job_id, by=by)
    if not changed and JobState(job.state).terminal:
        raise ActionRefused(f"job {job_id} already ended ({job.state})")
    if changed and queue is not None and JobState(job.state) is not JobState.CANCELLED:
        try:
            await queue.abort(job_id)
        except Exception:  # the flag alone is enough; the abort only makes it sooner
            log.warning("could not abort job in the queue", exc_info=True, extra={"job_id": job_id})
    return job


async def retry_job(store: JobStore, queue: JobQueue | None, job_id: str, *, by: str) -> tuple[Job, bool]:
    """Start a new job for the same request as an ended one; asking twice gives the same new job."""
    old = await store.get(job_id)
    if not JobState(old.state).terminal:
        raise ActionRefused(f"job {job_id} is still {old.state}; cancel it first or wait for it to end")
    if old.state == JobState.SUCCEEDED and old.kind != JobKind.REVISE:
        raise ActionRefused(f"job {job_id} succeeded; ask for a revision instead")
    # The retry key names the job it retries and how many retries came before, so a double click or a
    # redelivered "retry" lands on the same new job.
    generation = 1
    root = old
    while root.retry_of is not None:
        generation += 1
        root = await store.get(root.retry_of)
    request = JobRequest(
        dedupe_key=f"retry:{root.id}:{generation}",
        trigger=old.trigger,
        repo=old.repo,
        title=old.title,
        task=old.task,
        requester=by,
        kind=JobKind(old.kind),
        installation_id=old.installation_id,
        issue_number=old.issue_number,
        base_branch=old.base_branch,
        branch=old.branch,
        pr_number=old.pr_number,
        origin={**old.origin, "retried_by": by},
        retry_of=old.id,
        budget_usd=old.budget_usd,
        max_requests=old.max_requests,
        max_minutes=old.max_minutes,
    )
    job, created = await store.submit(request)
    if created and queue is not None:
        await queue.enqueue(job.id)
    return job, created
