"""The job store: submit once per dedupe key, validated state transitions, append-only numbered events."""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from engine.db import SqliteWriter, session_scope
from engine.errors import JobCancelled
from engine.models import Base, CostEntry, Job, JobEvent, JobKind, JobState, Step, utcnow
from engine.ports import JobEventView
from engine.totals import add_llm_call
from engine.views import JobView

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


class JobNotFound(LookupError):
    pass


class IllegalTransition(ValueError):
    def __init__(self, job_id: str, current: JobState, target: JobState) -> None:
        super().__init__(f"job {job_id} cannot go from {current} to {target}")
        self.current = current
        self.target = target


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


# Core tables for the batched insert: the ORM's unit of work costs more than the insert itself.
JOBS = Base.metadata.tables[Job.__tablename__]
JOB_EVENTS = Base.metadata.tables[JobEvent.__tablename__]
COST_ENTRIES = Base.metadata.tables[CostEntry.__tablename__]
STEPS = Base.metadata.tables[Step.__tablename__]
# Cancel flags this store has read, per job: (flag, when). An entry goes when its job ends.
CANCEL_SEEN_MAX = 10_000


@dataclass(frozen=True, slots=True)
class BudgetState:
    """The columns of a job's row that its limits are checked against."""

    repo: str
    requests: int
    max_requests: int
    cost_usd: float
    budget_usd: float
    max_minutes: float
    started_at: datetime | None
    cancel_requested: bool


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobStore:
    """All reads and writes of jobs go through here, each in its own short transaction."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        defaults: JobLimits,
        *,
        writer: SqliteWriter | None = None,
    ) -> None:
        self.sessions = sessions
        self.defaults = defaults
        # On SQLite, new jobs are written in one hop to a thread of their own (engine/db.py).
        self.writer = writer
        self._cancel_seen: dict[str, tuple[bool, float]] = {}

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
        return {
            "id": new_job_id(),
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
            "origin": request.origin,
            "reporter_state": {},
            "retry_of": request.retry_of,
            "state": JobState.QUEUED.value,
            "budget_usd": request.budget_usd or self.defaults.budget_usd,
            "max_requests": request.max_requests or self.defaults.max_requests,
            "max_minutes": request.max_minutes or self.defaults.max_minutes,
            "last_seq": 1,
            "context_diagnostics": [],
        }

    @staticmethod
    def _submitted_event(job_id: str, request: JobRequest) -> dict[str, Any]:
        data = {"trigger": request.trigger, "requester": request.requester}
        return {"job_id": job_id, "seq": 1, "type": "submitted", "data": data}

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
        rows: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        answers: list[tuple[str, bool]] = []
        for request in requests:
            if (job_id := known.get(request.dedupe_key)) is not None:
                answers.append((job_id, False))
                continue
            row = self._row(request)
            known[request.dedupe_key] = row["id"]
            rows.append(row)
            events.append(self._submitted_event(row["id"], request))
            answers.append((row["id"], True))
        if rows:
            # In key order: two batches holding the same new keys (PostgreSQL, several commits in flight)
            # then wait on each other in one order, and the later one fails on the unique key and settles
            # one by one, instead of each holding a key the other needs (a deadlock).
            conn.execute(insert(JOBS), sorted(rows, key=lambda row: str(row["dedupe_key"])))
            conn.execute(insert(JOB_EVENTS), events)
        return answers, rows

    async def find_by_dedupe_key(self, dedupe_key: str) -> Job | None:
        async with self.sessions() as session:
            return (await session.scalars(select(Job).where(Job.dedupe_key == dedupe_key))).first()

    # -- reads ------------------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        async with self.sessions() as session:
            job = await session.get(Job, job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def view(self, job_id: str, *, with_events: bool = True) -> JobView:
        async with self.sessions() as session:
            job = await session.get(Job, job_id)
            if job is None:
                raise JobNotFound(job_id)
            steps = list(
                await session.scalars(select(Step).where(Step.job_id == job_id).order_by(Step.index))
            )
            events: list[JobEvent] = []
            if with_events:
                events = list(
                    await session.scalars(
                        select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
                    )
                )
            costs = list(
                await session.scalars(
                    select(CostEntry).where(CostEntry.job_id == job_id).order_by(CostEntry.id)
                )
            )
        return JobView.of(job, steps, events, costs)

    async def events(self, job_id: str, *, after: int = 0) -> list[JobEventView]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > after).order_by(JobEvent.seq)
            )
            return [JobEventView(seq=e.seq, type=e.type, data=dict(e.data or {})) for e in rows]

    async def list_jobs(
        self,
        *,
        repo: str | None = None,
        state: str | None = None,
        trigger: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        query = select(Job).order_by(Job.created_at.desc()).limit(limit)
        if repo:
            query = query.where(Job.repo == repo)
        if state:
            query = query.where(Job.state == state)
        if trigger:
            query = query.where(Job.trigger == trigger)
        async with self.sessions() as session:
            return list(await session.scalars(query))

    async def ids_in_state(self, *states: JobState) -> list[str]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(Job.id).where(Job.state.in_([s.value for s in states])).order_by(Job.created_at)
            )
            return list(rows)

    async def reporters_behind(self, since: datetime) -> list[tuple[str, str]]:
        """(job id, reporter name) for jobs ended since `since` whose end a reporter failed to show and has
        not shown since: a `reporter_error` on the final `state` event, no `reporter_caught_up` after it."""
        terminal = [s.value for s in JobState if s.terminal]
        query = (
            select(JobEvent.job_id, JobEvent.seq, JobEvent.type, JobEvent.data)
            .join(Job, Job.id == JobEvent.job_id)
            .where(Job.state.in_(terminal), Job.finished_at >= since)
            .where(JobEvent.type.in_(["state", "reporter_error", "reporter_caught_up"]))
            .order_by(JobEvent.job_id, JobEvent.seq)
        )
        last_word: dict[tuple[str, str], tuple[str, int]] = {}  # per reporter: its last error or catch-up
        final_state: dict[str, int] = {}
        async with self.sessions() as session:
            for job_id, seq, type_, data in await session.execute(query):
                if type_ == "state":
                    final_state[job_id] = seq
                else:
                    last_word[(job_id, str(data.get("reporter", "")))] = (type_, int(data.get("seq", -1)))
        return [
            (job_id, name)
            for (job_id, name), (type_, seq) in last_word.items()
            if type_ == "reporter_error" and seq >= final_state.get(job_id, 0)
        ]

    async def spent_since(self, since: datetime, *, repo: str | None = None) -> float:
        query = select(func.coalesce(func.sum(CostEntry.usd), 0.0)).where(CostEntry.created_at >= since)
        if repo:
            query = query.where(CostEntry.repo == repo)
        async with self.sessions() as session:
            return float((await session.execute(query)).scalar_one())

    # -- writes -----------------------------------------------------------------------------------

    async def append_event(
        self,
        job_id: str,
        type: str,
        data: dict[str, Any] | None = None,
        *,
        fields: dict[str, Any] | None = None,
        steps: dict[int, dict[str, Any]] | None = None,
    ) -> JobEventView:
        """Append one event; in the same transaction set the job's columns `fields` (never `state`) and
        create or update the steps in `steps` ({index: columns})."""
        (event,) = await self.append_events(job_id, [(type, data or {})], fields=fields, steps=steps)
        return event

    async def append_events(
        self,
        job_id: str,
        new: Sequence[tuple[str, dict[str, Any]]],
        *,
        fields: dict[str, Any] | None = None,
        steps: dict[int, dict[str, Any]] | None = None,
        unless_cancelled: bool = False,
    ) -> list[JobEventView]:
        """Append events (numbered in order) with `fields` and `steps` as append_event, in one transaction.
        With `unless_cancelled`, nothing is written when the job's cancel flag is set: JobCancelled."""
        if fields and "state" in fields:
            raise ValueError("use transition() to change a job's state")
        async with session_scope(self.sessions) as session:
            appended = await self._append_many(
                session, job_id, new, fields=fields, unless_cancelled=unless_cancelled
            )
            for index, columns in (steps or {}).items():
                await _save_step(await session.connection(), job_id, index, dict(columns))
        return appended

    async def transition(
        self,
        job_id: str,
        target: JobState,
        *,
        reason: str | None = None,
        phase: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> JobEventView:
        """Move the job to `target` (validated) and record a `state` event, in one transaction."""
        async with session_scope(self.sessions) as session:
            conn = await session.connection()
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
            event = await self._append(session, job_id, "state", payload, fields=fields)
        if target.terminal:
            self._cancel_seen.pop(job_id, None)
        log.info("job %s", target.value, extra={"job_id": job_id, "reason": reason})
        return event

    async def set_phase(
        self,
        job_id: str,
        phase: str,
        data: dict[str, Any] | None = None,
        *,
        fields: dict[str, Any] | None = None,
        steps: dict[int, dict[str, Any]] | None = None,
    ) -> JobEventView:
        """Set the job's phase and append its `phase` event (plus `fields` and `steps`, as append_event)."""
        return await self.append_event(
            job_id,
            "phase",
            {"phase": phase, **(data or {})},
            fields={**(fields or {}), "phase": phase},
            steps=steps,
        )

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
            await self._append(session, job_id, "cancel_requested", {"by": by})
        if JobState(job.state) is JobState.QUEUED:
            # A worker may have picked it up meanwhile; then it sees the flag at its next check.
            with contextlib.suppress(IllegalTransition):
                await self.transition(job_id, JobState.CANCELLED, reason=f"cancelled by {by}")
        return await self.get(job_id), True

    async def cancel_requested(self, job_id: str, *, max_age_s: float = 0.0) -> bool:
        """The job's cancel flag. With `max_age_s`, a value this store read from the job's row at most that
        many seconds ago (every event appended and every budget check reads it too) answers without a read."""
        if max_age_s > 0 and (seen := self._cancel_seen.get(job_id)) is not None:
            flag, at = seen
            if time.monotonic() - at <= max_age_s:
                return flag
        async with self.sessions() as session:
            value = await session.scalar(select(JOBS.c.cancel_requested).where(JOBS.c.id == job_id))
        self._saw_cancel(job_id, value)
        return bool(value)

    def _saw_cancel(self, job_id: str, flag: bool | None) -> None:
        if len(self._cancel_seen) >= CANCEL_SEEN_MAX and job_id not in self._cancel_seen:
            self._cancel_seen.clear()  # jobs handed back without an end; a cleared entry only costs a read
        self._cancel_seen[job_id] = (bool(flag), time.monotonic())

    async def _append(
        self,
        session: AsyncSession,
        job_id: str,
        type: str,
        data: dict[str, Any],
        *,
        fields: dict[str, Any] | None = None,
    ) -> JobEventView:
        (event,) = await self._append_many(session, job_id, [(type, data)], fields=fields)
        return event

    async def _append_many(
        self,
        session: AsyncSession,
        job_id: str,
        new: Sequence[tuple[str, dict[str, Any]]],
        *,
        fields: dict[str, Any] | None = None,
        unless_cancelled: bool = False,
    ) -> list[JobEventView]:
        """Append events; `fields` (column values or expressions) go into the same UPDATE of the job row,
        which also returns the cancel flag as of this write (and, `unless_cancelled`, writes nothing when
        it is set: JobCancelled)."""
        # Taking the next numbers with an UPDATE … RETURNING locks the job row (PostgreSQL) or the database
        # (SQLite) until commit, so concurrent appends queue up and the numbers have no gaps or repeats.
        # Core statements on the session's connection: the ORM's unit of work costs more than the statements.
        await session.flush()  # this transaction's pending ORM changes first, as an ORM statement would
        conn = await session.connection()
        values = {**(fields or {}), "last_seq": JOBS.c.last_seq + len(new), "updated_at": utcnow()}
        where = JOBS.c.id == job_id
        if unless_cancelled:
            where &= JOBS.c.cancel_requested.is_(False)
        row = (
            await conn.execute(
                update(JOBS).where(where).values(**values).returning(JOBS.c.last_seq, JOBS.c.cancel_requested)
            )
        ).one_or_none()
        if row is None:
            flag = await conn.scalar(select(JOBS.c.cancel_requested).where(JOBS.c.id == job_id))
            if flag is None:
                raise JobNotFound(job_id)
            self._saw_cancel(job_id, flag)
            raise JobCancelled("cancelled on request")
        first = row.last_seq - len(new) + 1
        rows = [{"job_id": job_id, "seq": first + i, "type": t, "data": d} for i, (t, d) in enumerate(new)]
        await conn.execute(insert(JOB_EVENTS), rows)
        self._saw_cancel(job_id, row.cancel_requested)
        return [JobEventView(seq=r["seq"], type=r["type"], data=r["data"]) for r in rows]

    # -- steps and costs --------------------------------------------------------------------------

    async def save_step(self, job_id: str, index: int, **fields: Any) -> None:
        """Create or update step `index` of the job."""
        async with session_scope(self.sessions) as session:
            await _save_step(await session.connection(), job_id, index, fields)

    async def add_cost(
        self, entry: CostEntry, event: tuple[str, dict[str, Any]] | None = None
    ) -> JobEventView | None:
        """Record one LLM call, add it to the job's running totals and append `event` (its `llm_call`), all
        in one transaction: one UPDATE of the job row takes the totals and the event's number together."""
        totals: dict[str, Any] = {
            "cost_usd": JOBS.c.cost_usd + entry.usd,
            "tokens_in": JOBS.c.tokens_in + entry.tokens_in,
            "tokens_out": JOBS.c.tokens_out + entry.tokens_out,
            "requests": JOBS.c.requests + 1,
        }
        cost = {c.key: getattr(entry, c.key) for c in COST_ENTRIES.c if getattr(entry, c.key) is not None}
        async with session_scope(self.sessions) as session:
            conn = await session.connection()
            if event is None:
                await conn.execute(
                    update(JOBS).where(JOBS.c.id == entry.job_id).values(updated_at=utcnow(), **totals)
                )
                appended = None
            else:
                appended = await self._append(session, entry.job_id, event[0], event[1], fields=totals)
            await conn.execute(insert(COST_ENTRIES).values(**cost))
            await add_llm_call(conn, entry)
        return appended

    async def budget_state(self, job_id: str) -> BudgetState:
        """What the guard before an LLM call needs, in one read of the job row (no ORM object)."""
        columns = [getattr(JOBS.c, name) for name in BudgetState.__annotations__]
        async with self.sessions() as session:
            row = (await session.execute(select(*columns).where(JOBS.c.id == job_id))).one_or_none()
        if row is None:
            raise JobNotFound(job_id)
        self._saw_cancel(job_id, row.cancel_requested)
        return BudgetState(**row._asdict())


async def _save_step(conn: AsyncConnection, job_id: str, index: int, fields: dict[str, Any]) -> None:
    """Update step `index` of the job, or create it (titled "Step n" unless `fields` has a title)."""
    where = (STEPS.c.job_id == job_id) & (STEPS.c.index == index)
    if fields:
        found = (
            await conn.execute(update(STEPS).where(where).values(**fields).returning(STEPS.c.id))
        ).first()
    else:
        found = (await conn.execute(select(STEPS.c.id).where(where))).first()
    if found is None:
        title = fields.pop("title", f"Step {index + 1}")
        await conn.execute(insert(STEPS).values(job_id=job_id, index=index, title=title, **fields))
