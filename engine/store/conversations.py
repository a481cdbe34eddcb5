"""One conversation per pull request: jobs on one branch run one at a time; waiting requests fold into one.

- Claiming (`waiting_behind`, used by JobStore.transition): a job whose branch has a running job, or an
  older queued one, is not started. The check locks every job row of the branch (PostgreSQL; SQLite has one
  writer), so two workers never both start a job on one branch. The worker records why and lets go of the
  job without holding a slot; the job that ends wakes the next one (engine.pipeline.run), and the
  reconciler wakes any it missed (workers.jobs).
- Submitting (`take_place_of_queued`, in the insert of a new job): a queued job on the same branch that has
  not started is cancelled and the new job takes its place. A CI fix replaces an older CI fix ("superseded
  by <id>"); any other pair folds the older task into the new one ("folded into <id>"). So a branch has at
  most one job waiting, whether the requests came from GitHub, Slack or anywhere else.
- CI fix rounds (`FollowUps`): the commits autodev pushed, the rounds a pull request has used, `@app stop`,
  and the one "rounds used up" comment.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from engine import events
from engine.states import JobState
from engine.store.db import session_scope
from engine.store.eventlog import JOBS
from engine.store.models import Job, PullRequestFollowUp, PushedCommit, utcnow

# The trigger of a job that fixes its pull request's failing CI (github_app.ci_failures).
CI_TRIGGER = "github_ci"
# How a review's comments are numbered in a task (`## Review comment 2 — path line 9`; engine.pipeline.review
# writes them), and how a fold finds them to number them on.
REVIEW_HEADING = "## Review comment {n} —"
_REVIEW_HEADINGS = re.compile(r"^## Review comment (\d+) —", re.MULTILINE)
FOLD_HEADER = "This job carries an earlier request on this pull request that waited for its turn (job {id}):"


class WaitingBehind(Exception):
    """The job's branch is busy with job `blocker`; the job stays queued until that one ends."""

    def __init__(self, job_id: str, blocker: str) -> None:
        super().__init__(f"job {job_id} waits for job {blocker} on its branch")
        self.job_id = job_id
        self.blocker = blocker


def _blocker(rows: Any, job_id: str) -> str | None:
    """Of the branch's jobs (id, state, created_at, started_at), the one `job_id` must wait for."""
    mine = next((r for r in rows if r.id == job_id), None)
    for row in rows:
        if row.id == job_id:
            continue
        if row.state == JobState.RUNNING.value:
            return str(row.id)
        older = mine is not None and (row.created_at, row.id) < (mine.created_at, mine.id)
        if row.state == JobState.QUEUED.value and older:
            return str(row.id)
    return None


def _branch_jobs(repo: str, branch: str) -> Any:
    columns = (JOBS.c.id, JOBS.c.state, JOBS.c.created_at, JOBS.c.started_at)
    active = (JobState.QUEUED.value, JobState.RUNNING.value)
    return (
        select(*columns)
        .where(JOBS.c.repo == repo, JOBS.c.branch == branch, JOBS.c.state.in_(active))
        .order_by(JOBS.c.id)
    )


async def waiting_behind(conn: AsyncConnection, job_id: str) -> None:
    """Inside the claim's transaction, before the job's row is read: raise WaitingBehind when its branch
    is busy. Locks the branch's active job rows in id order (one order for every claimer: no deadlock)."""
    job = (await conn.execute(select(JOBS.c.repo, JOBS.c.branch).where(JOBS.c.id == job_id))).one_or_none()
    if job is None or not job.branch:
        return
    rows = (await conn.execute(_branch_jobs(job.repo, job.branch).with_for_update())).all()
    if (blocker := _blocker(rows, job_id)) is not None:
        raise WaitingBehind(job_id, blocker)


def take_place_of_queued(conn: Connection, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Before the new job `row` is inserted: cancel the queued, unstarted jobs of its branch, folding their
    tasks into `row` (or not, for a CI fix after a CI fix); the `state` events to insert for them."""
    if not row.get("branch"):
        return []
    # Lock the branch's active jobs first, in a statement of its own: a concurrent submit for the branch
    # waits here, and its next statement (a fresh snapshot on PostgreSQL) sees the job this one inserts.
    conn.execute(_branch_jobs(row["repo"], row["branch"]).with_for_update()).all()
    query = (
        select(JOBS.c.id, JOBS.c.task, JOBS.c.trigger, JOBS.c.origin, JOBS.c.last_seq)
        .where(JOBS.c.repo == row["repo"], JOBS.c.branch == row["branch"])
        .where(JOBS.c.state == JobState.QUEUED.value, JOBS.c.started_at.is_(None))
        .order_by(JOBS.c.created_at, JOBS.c.id)
        .with_for_update()
    )
    cancelled: list[dict[str, Any]] = []
    now = utcnow()
    for old in conn.execute(query).all():
        supersede = old.trigger == CI_TRIGGER and row["trigger"] == CI_TRIGGER
        reason = f"{'superseded by' if supersede else 'folded into'} {row['id']}"
        done = conn.execute(
            update(JOBS)
            .where(
                JOBS.c.id == old.id, JOBS.c.state == JobState.QUEUED.value, JOBS.c.last_seq == old.last_seq
            )
            .values(
                state=JobState.CANCELLED.value,
                failure_reason=reason,
                finished_at=now,
                updated_at=now,
                last_seq=old.last_seq + 1,
            )
        )
        if done.rowcount != 1:
            continue  # a worker took it meanwhile: the new job waits behind it instead
        data = {"state": JobState.CANCELLED.value, "reason": reason, "replaced_by": row["id"]}
        cancelled.append({"job_id": old.id, "seq": old.last_seq + 1, "type": events.STATE, "data": data})
        origin = dict(row["origin"])
        origin["replaces"] = [*origin.get("replaces", []), old.id]
        if not supersede:
            old_task = _fold_review(origin, old.origin or {}, old.task)
            earlier = f"{FOLD_HEADER.format(id=old.id)}\n\n{old_task}"
            row["task"] = f"{earlier}\n\n---\n\nThe latest request:\n\n{row['task']}"
            for key in ("ci_fix", "round"):  # a folded CI fix still counts as the round it was
                if key in (old.origin or {}) and key not in origin:
                    origin[key] = old.origin[key]
        row["origin"] = origin
    return cancelled


def _fold_review(origin: dict[str, Any], old_origin: dict[str, Any], old_task: str) -> str:
    """A folded review's comments stay answerable after the push: they join `origin`'s own, numbered after
    them, and the old task's headings are renumbered to match. The old task as the new one carries it."""
    old_review = old_origin.get("review") or {}
    old_comments = list(old_review.get("comments") or [])
    if not old_comments:
        return old_task
    review = dict(origin.get("review") or {})
    comments = list(review.get("comments") or [])
    offset = max((int(c["n"]) for c in comments), default=0)
    if offset:
        old_task = _REVIEW_HEADINGS.sub(lambda m: REVIEW_HEADING.format(n=int(m[1]) + offset), old_task)
    review["comments"] = comments + [{**c, "n": int(c["n"]) + offset} for c in old_comments]
    review.setdefault("by", old_review.get("by"))
    origin["review"] = review
    return old_task


class FollowUps:
    """The store's side of a pull request autodev follows: branch order, pushed commits, CI fix rounds."""

    sessions: async_sessionmaker[AsyncSession]

    async def blocker_of(self, job_id: str) -> str | None:
        """The job `job_id` waits for on its branch, read without locks (for the reconciler)."""
        async with self.sessions() as session:
            conn = await session.connection()
            job = (await conn.execute(select(JOBS.c.repo, JOBS.c.branch).where(JOBS.c.id == job_id))).one()
            if not job.branch:
                return None
            return _blocker((await conn.execute(_branch_jobs(job.repo, job.branch))).all(), job_id)

    async def next_on_branch(self, repo: str, branch: str) -> str | None:
        """The oldest queued job of the branch: the one to wake when the branch's running job ends."""
        async with self.sessions() as session:
            rows = (await (await session.connection()).execute(_branch_jobs(repo, branch))).all()
        queued = sorted(
            (r for r in rows if r.state == JobState.QUEUED.value), key=lambda r: (r.created_at, r.id)
        )
        return str(queued[0].id) if queued else None

    async def record_push(self, *, repo: str, sha: str, job_id: str, branch: str) -> None:
        async with self.sessions() as session:
            if await session.get(PushedCommit, (repo, sha)) is not None:
                return  # the same commits pushed again (a retried job)
        try:
            async with session_scope(self.sessions) as session:
                session.add(PushedCommit(repo=repo, sha=sha, job_id=job_id, branch=branch))
        except IntegrityError:
            pass  # recorded by a concurrent push of the same commit

    async def last_push(self, repo: str, branch: str) -> str | None:
        """The commit autodev pushed last to the branch."""
        query = (
            select(PushedCommit.sha)
            .where(PushedCommit.repo == repo, PushedCommit.branch == branch)
            .order_by(PushedCommit.pushed_at.desc())
            .limit(1)
        )
        async with self.sessions() as session:
            return await session.scalar(query)

    async def pushed_by_autodev(self, repo: str, sha: str) -> bool:
        async with self.sessions() as session:
            return await session.get(PushedCommit, (repo, sha)) is not None

    async def ci_fix_jobs(self, repo: str, pr_number: int) -> list[Job]:
        """The pull request's CI fix jobs (including folded ones), oldest first."""
        query = select(Job).where(Job.repo == repo, Job.pr_number == pr_number).order_by(Job.created_at)
        async with self.sessions() as session:
            return [job for job in await session.scalars(query) if (job.origin or {}).get("ci_fix")]

    async def ci_rounds_used(self, repo: str, pr_number: int) -> int:
        """CI fix rounds that started: a fix still queued may yet be superseded and is not counted."""
        return sum(1 for job in await self.ci_fix_jobs(repo, pr_number) if job.started_at is not None)

    async def _follow_up(self, repo: str, pr_number: int, **values: Any) -> bool:
        """Set `values` on the pull request's row (made when missing) where each is still unset; whether
        they were set now."""
        for _ in range(2):
            try:
                async with session_scope(self.sessions) as session:
                    row = await session.get(PullRequestFollowUp, (repo, pr_number), with_for_update=True)
                    if row is None:
                        session.add(PullRequestFollowUp(repo=repo, pr_number=pr_number, **values))
                        return True
                    if any(getattr(row, key) is not None for key in values):
                        return False
                    for key, value in values.items():
                        setattr(row, key, value)
                    return True
            except IntegrityError:
                continue  # made concurrently: read it again
        return False

    async def stop_ci_fixes(self, repo: str, pr_number: int, *, by: str) -> bool:
        """`@app stop`: no more CI fix rounds on the pull request; False when already stopped."""
        return await self._follow_up(repo, pr_number, ci_stopped_by=by)

    async def ci_fixes_stopped_by(self, repo: str, pr_number: int) -> str | None:
        async with self.sessions() as session:
            row = await session.get(PullRequestFollowUp, (repo, pr_number))
            return row.ci_stopped_by if row is not None else None

    async def claim_exhausted_note(self, repo: str, pr_number: int) -> bool:
        """Whether this caller posts the one "CI fix rounds used up" comment on the pull request."""
        return await self._follow_up(repo, pr_number, ci_exhausted_noted_at=utcnow())

    async def release_exhausted_note(self, repo: str, pr_number: int) -> None:
        """The comment could not be posted: a later failure may post it."""
        async with session_scope(self.sessions) as session:
            row = await session.get(PullRequestFollowUp, (repo, pr_number), with_for_update=True)
            if row is not None:
                row.ci_exhausted_noted_at = None
