"""Reading jobs: one job, its snapshot for reporters and pages, lists, and who still owes a job's end."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine import events
from engine.errors import JobNotFound
from engine.states import JobState
from engine.store.models import CostEntry, Job, JobEvent, Step
from engine.views import CostView, JobEventView, JobView, StepView


class JobReads:
    """The read side of the job store; each read is one short session."""

    sessions: async_sessionmaker[AsyncSession]

    async def find_by_dedupe_key(self, dedupe_key: str) -> Job | None:
        async with self.sessions() as session:
            return (await session.scalars(select(Job).where(Job.dedupe_key == dedupe_key))).first()

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
        return job_view(job, steps, events, costs)

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
            .where(JobEvent.type.in_([events.STATE, events.REPORTER_ERROR, events.REPORTER_CAUGHT_UP]))
            .order_by(JobEvent.job_id, JobEvent.seq)
        )
        last_word: dict[tuple[str, str], tuple[str, int]] = {}  # per reporter: its last error or catch-up
        final_state: dict[str, int] = {}
        async with self.sessions() as session:
            for job_id, seq, type_, data in await session.execute(query):
                if type_ == events.STATE:
                    final_state[job_id] = seq
                else:
                    last_word[(job_id, str(data.get("reporter", "")))] = (type_, int(data.get("seq", -1)))
        return [
            (job_id, name)
            for (job_id, name), (type_, seq) in last_word.items()
            if type_ == events.REPORTER_ERROR and seq >= final_state.get(job_id, 0)
        ]


def step_view(step: Step) -> StepView:
    return StepView(
        index=step.index,
        title=step.title,
        rationale=step.rationale,
        acceptance=step.acceptance,
        files=list(step.files or []),
        state=step.state,
        commit_sha=step.commit_sha,
        diff=step.diff,
        test_command=step.test_command,
        test_output=step.test_output,
        test_passed=step.test_passed,
        repair_rounds=step.repair_rounds,
        refused_edits=step.refused_edits,
        error=step.error,
        started_at=step.started_at,
        finished_at=step.finished_at,
    )


def cost_view(entry: CostEntry) -> CostView:
    return CostView(
        step_index=entry.step_index,
        role=entry.role,
        model=entry.model,
        tokens_in=entry.tokens_in,
        tokens_out=entry.tokens_out,
        usd=entry.usd,
        latency_ms=entry.latency_ms,
        created_at=entry.created_at,
        tokens_cached=entry.tokens_cached or 0,
        tokens_reasoning=entry.tokens_reasoning or 0,
        checked_usd=entry.checked_usd,
        billed_on=entry.billed_on,
        outcome=entry.outcome,
        note=entry.note,
        attempt=entry.attempt,
    )


def job_view(job: Job, steps: list[Step], events: list[JobEvent], costs: list[CostEntry]) -> JobView:
    """A job row with its steps, events and cost entries as one snapshot."""
    return JobView(
        id=job.id,
        access_token=job.access_token,
        kind=job.kind,
        trigger=job.trigger,
        repo=job.repo,
        installation_id=job.installation_id,
        issue_number=job.issue_number,
        title=job.title,
        task=job.task,
        requester=job.requester,
        base_branch=job.base_branch,
        branch=job.branch,
        origin=dict(job.origin or {}),
        reporter_state=dict(job.reporter_state or {}),
        retry_of=job.retry_of,
        state=JobState(job.state),
        phase=job.phase,
        failure_reason=job.failure_reason,
        cancel_requested=job.cancel_requested,
        attempts=job.attempts,
        budget_usd=job.budget_usd,
        max_requests=job.max_requests,
        max_minutes=job.max_minutes,
        cost_usd=job.cost_usd,
        tokens_in=job.tokens_in,
        tokens_out=job.tokens_out,
        requests=job.requests,
        plan=job.plan,
        pr_number=job.pr_number,
        pr_url=job.pr_url,
        head_sha=job.head_sha,
        context_diagnostics=list(job.context_diagnostics or []),
        sandbox=dict(job.sandbox or {}),
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        steps=[step_view(s) for s in steps],
        events=[JobEventView(seq=e.seq, type=e.type, data=dict(e.data or {})) for e in events],
        costs=[cost_view(c) for c in costs],
    )
