"""The job store: submit once per dedupe key, validated state transitions, cancel requests.

`JobStore` is one object for its callers, made of one class per concern: `JobReads` (engine.store.reads),
`EventLog` (engine.store.eventlog: numbered events and the cancel flag) and `CostLedger`
(engine.store.ledger: LLM costs and budgets). This module adds submitting and changing a job's state.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine import events, tracing
from engine.errors import IllegalTransition, JobNotFound
from engine.states import JobKind, JobState
from engine.store.conversations import FollowUps, take_place_of_queued, waiting_behind
from engine.store.db import SqliteWriter, session_scope
from engine.store.deliveries import Deliveries
from engine.store.eventlog import JOB_EVENTS, JOBS
from engine.store.ledger import CostLedger
from engine.store.models import Job, JobEvent, utcnow
from engine.store.reads import JobReads
from engine.views import JobEventView

__all__ = ["ALLOWED_TRANSITIONS", "IllegalTransition", "JobLimits", "JobNotFound", "JobRequest", "JobStore"]

log = logging.getLogger(__name__)

# Which state may follow which. A terminal job never changes again; `queued` may follow `running` when a
# worker hands a job back (graceful shutdown) so that another worker resumes it.
ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.FAILED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {JobState.QUEUED, JobState.WAITING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.WAITING: frozenset({JobState.QUEUED, JobState.RUNNING, JobState.FAILED, JobState.CANCELLED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class JobRequest(BaseModel):
    """Everything an adapter knows about a request, before it becomes a job."""

    dedupe_key: str = Field(min_length=1, max_length=200)
    trigger: str
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$|^local:.+$")
    title: str = Field(min_length=1)
    task: str
    requester: str
    kind: JobKind = JobKind.IMPLEMENT
    installation_id: int | None = None
    issue_number: int | None = None
    base_branch: str | None = None
    branch: str | None = None
    pr_number: int | None = None
    origin: dict[str, Any] = Field(default_factory=dict)
    retry_of: str | None = None
    budget_usd: float | None = Field(default=None, gt=0)
    max_requests: int | None = Field(default=None, gt=0)
    max_minutes: float | None = Field(default=None, gt=0)


@dataclass(frozen=True, slots=True)
class JobLimits:
    budget_usd: float
    max_requests: int
    max_minutes: float


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobStore(CostLedger, JobReads, FollowUps):
    """All reads and writes of jobs go through here, each in its own short transaction."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        defaults: JobLimits,
        *,
        writer: SqliteWriter | None = None,
    ) -> None:
        super().__init__(sessions)
        self.defaults = defaults
        # On SQLite, new jobs are written in one hop to a thread of their own (engine/db.py).
        self.writer = writer
        self.deliveries = Deliveries(sessions, writer=writer)  # GitHub's, stored before they are decided

    @property
    def concurrent_writers(self) -> bool:
        """Whether the database takes several write transactions at once (SQLite: one writer)."""
        bind = self.sessions.kw.get("bind")
        return bind is not None and bind.dialect.name != "sqlite"

    async def aclose(self) -> None:
        if self.writer is not None:
            await self.writer.aclose()

    # -- submit -----------------------------------------------------------------------------------

    def _row(self, request: JobRequest) -> dict[str, Any]:
        """The new job's columns (the rest take their defaults)."""
        job_id, origin = new_job_id(), request.origin
        if tracing.enabled():
            # The trace's first span; the worker's run of the job continues it from the traceparent.
            attributes = {
                "autodev.job_id": job_id,
                "autodev.repo": request.repo,
                "autodev.trigger": request.trigger,
            }
            with tracing.span("autodev.trigger", attributes, kind="producer"):
                origin = {**origin, "traceparent": tracing.traceparent()}
        return {
            "id": job_id,
            "dedupe_key": request.dedupe_key,
            "access_token": secrets.token_urlsafe(24),
            "kind": request.kind.value,
            "trigger": request.trigger,
            "repo": request.repo,
            "installation_id": request.installation_id,
            "issue_number": request.issue_number,
            "title": request.title[:300],
            "task": request.task,
            "requester": request.requester,
            "base_branch": request.base_branch,
            "branch": request.branch,
            "pr_number": request.pr_number,
            "origin": origin,
            "reporter_state": {},
            "retry_of": request.retry_of,
            "state": JobState.QUEUED.value,
            "budget_usd": request.budget_usd or self.defaults.budget_usd,
            "max_requests": request.max_requests or self.defaults.max_requests,
            "max_minutes": request.max_minutes or self.defaults.max_minutes,
            "last_seq": 1,
            "context_diagnostics": [],
            "sandbox": {},
        }

    @staticmethod
    def _submitted_event(job_id: str, request: JobRequest) -> dict[str, Any]:
        data = {"trigger": request.trigger, "requester": request.requester}
        return {"job_id": job_id, "seq": 1, "type": events.SUBMITTED, "data": data}

    async def submit(self, request: JobRequest) -> tuple[Job, bool]:
        """Insert the job and its first event in one transaction; a known dedupe key returns that job."""
        existing = await self.find_by_dedupe_key(request.dedupe_key)
        if existing is not None:
            return existing, False
        job = Job(**self._row(request))
        try:
            async with session_scope(self.sessions) as session:
                session.add(job)
                await session.flush()
                session.add(JobEvent(**self._submitted_event(job.id, request)))
        except IntegrityError:
            existing = await self.find_by_dedupe_key(request.dedupe_key)
            if existing is None:
                raise
            return existing, False
        log.info("job submitted", extra={"job_id": job.id, "repo": job.repo})
        return job, True

    async def submit_many(self, requests: Sequence[JobRequest]) -> list[tuple[str, bool]]:
        """Submit several requests in one transaction (group commit): for each, in order, the job's id and
        whether it is new — the same answers as `submit` one after the other."""
        try:
            if self.writer is not None:
                answers, rows = await self.writer.run(lambda conn: self._insert_new(conn, requests))
            else:
                async with self.sessions() as session, session.begin():
                    conn = await session.connection()
                    answers, rows = await conn.run_sync(self._insert_new, requests)
        except IntegrityError:
            # Another process inserted one of these keys meanwhile (PostgreSQL): settle them one by one.
            return [(job.id, created) for job, created in [await self.submit(r) for r in requests]]
        for row in rows:
            log.info("job submitted", extra={"job_id": row["id"], "repo": row["repo"]})
        return answers

    def _insert_new(
        self, conn: Connection, requests: Sequence[JobRequest]
    ) -> tuple[list[tuple[str, bool]], list[dict[str, Any]]]:
        """Inside the caller's transaction: the answers, and the rows of the jobs that are new. Core
        statements: the ORM's unit of work costs more than the inserts themselves."""
        keys = list({r.dedupe_key for r in requests})
        found = conn.execute(select(JOBS.c.dedupe_key, JOBS.c.id).where(JOBS.c.dedupe_key.in_(keys)))
        known: dict[str, str] = {key: job_id for key, job_id in found}
        new: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        answers: list[tuple[str, bool]] = []
        for request in requests:
            if (job_id := known.get(request.dedupe_key)) is not None:
                answers.append((job_id, False))
                continue
            row = self._row(request)
            known[request.dedupe_key] = row["id"]
            answers.append((row["id"], True))
            new.append(row)
            if not row["branch"]:
                events.append(self._submitted_event(row["id"], request))
                continue
            # One waiting job per branch (engine.store.conversations): inserted at once, in order.
            replaced = take_place_of_queued(conn, row)
            conn.execute(insert(JOBS), [row])
            conn.execute(insert(JOB_EVENTS), [*replaced, self._submitted_event(row["id"], request)])
        if rows := [row for row in new if not row["branch"]]:
            # In key order: two batches holding the same new keys (PostgreSQL) wait on each other in one
            # order and the later one settles one by one, instead of each holding a key the other needs.
            conn.execute(insert(JOBS), sorted(rows, key=lambda row: str(row["dedupe_key"])))
            conn.execute(insert(JOB_EVENTS), events)
        return answers, new

    async def transition(
        self,
        job_id: str,
        target: JobState,
        *,
        reason: str | None = None,
        phase: str | None = None,
        data: dict[str, Any] | None = None,
        unless_behind: bool = False,
    ) -> JobEventView:
        """Move the job to `target` (validated) and record a `state` event, in one transaction;
        `unless_behind`: raise WaitingBehind instead when another job has the job's branch."""
        async with session_scope(self.sessions) as session:
            conn = await session.connection()
            if unless_behind:
                await waiting_behind(conn, job_id)
            row = (
                await conn.execute(
                    select(JOBS.c.state, JOBS.c.started_at).where(JOBS.c.id == job_id).with_for_update()
                )
            ).one_or_none()
            if row is None:
                raise JobNotFound(job_id)
            current = JobState(row.state)
            if target not in ALLOWED_TRANSITIONS[current]:
                raise IllegalTransition(job_id, current, target)
            now = utcnow()
            fields: dict[str, Any] = {"state": target.value}
            if reason is not None:
                fields["failure_reason"] = reason
            if target is JobState.RUNNING:
                fields["attempts"] = JOBS.c.attempts + 1
                if row.started_at is None:
                    fields["started_at"] = now
            if target.terminal:
                fields["finished_at"] = now
                fields["phase"] = None
            elif phase is not None:
                fields["phase"] = phase
            payload = {"state": target.value, **({"reason": reason} if reason else {}), **(data or {})}
            # The state change and the event's number: one UPDATE of the job row.
            event = await self._append(session, job_id, events.STATE, payload, fields=fields)
        if target.terminal:
            self._cancel_seen.pop(job_id, None)
        log.info("job %s", target.value, extra={"job_id": job_id, "reason": reason})
        return event

    async def update(self, job_id: str, **fields: Any) -> None:
        """Set plain columns of the job (plan, pr_url, branch, reporter_state, …); never `state`."""
        if "state" in fields:
            raise ValueError("use transition() to change a job's state")
        async with session_scope(self.sessions) as session:
            conn = await session.connection()
            await conn.execute(update(JOBS).where(JOBS.c.id == job_id).values(updated_at=utcnow(), **fields))

    async def merge_reporter_state(self, job_id: str, name: str, values: dict[str, Any]) -> None:
        async with session_scope(self.sessions) as session:
            job = await session.get(Job, job_id, with_for_update=True)
            if job is None:
                raise JobNotFound(job_id)
            state = dict(job.reporter_state or {})
            state[name] = {**state.get(name, {}), **values}
            job.reporter_state = state

    async def request_cancel(self, job_id: str, *, by: str) -> tuple[Job, bool]:
        """Flag the job for cancellation; a queued job is cancelled at once. Returns (job, changed)."""
        async with session_scope(self.sessions) as session:
            job = await session.get(Job, job_id, with_for_update=True)
            if job is None:
                raise JobNotFound(job_id)
            if JobState(job.state).terminal or job.cancel_requested:
                return job, False
            job.cancel_requested = True
            await self._append(session, job_id, events.CANCEL_REQUESTED, {"by": by})
        if JobState(job.state) in (JobState.QUEUED, JobState.WAITING):
            # Nothing runs a waiting job; a queued one a worker may have picked up meanwhile (it then sees
            # the flag at its next check).
            with contextlib.suppress(IllegalTransition):
                await self.transition(job_id, JobState.CANCELLED, reason=f"cancelled by {by}")
        return await self.get(job_id), True
