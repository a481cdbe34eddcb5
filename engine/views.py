"""Read-only snapshots of a job that reporters, the job page and the API render from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.models import CostEntry, Job, JobEvent, JobState, Step
from engine.ports import JobEventView


@dataclass(frozen=True, slots=True)
class StepView:
    index: int
    title: str
    rationale: str
    acceptance: str
    files: list[str]
    state: str
    commit_sha: str | None
    diff: str | None
    test_command: str | None
    test_output: str | None
    test_passed: bool | None
    repair_rounds: int
    refused_edits: int
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, step: Step) -> StepView:
        return cls(
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


@dataclass(frozen=True, slots=True)
class CostView:
    step_index: int | None
    role: str
    model: str
    tokens_in: int
    tokens_out: int
    usd: float
    latency_ms: int
    created_at: datetime

    @classmethod
    def of(cls, entry: CostEntry) -> CostView:
        return cls(
            step_index=entry.step_index,
            role=entry.role,
            model=entry.model,
            tokens_in=entry.tokens_in,
            tokens_out=entry.tokens_out,
            usd=entry.usd,
            latency_ms=entry.latency_ms,
            created_at=entry.created_at,
        )


@dataclass(frozen=True, slots=True)
class JobView:
    """A job row with its steps, events and cost entries, as one consistent snapshot."""

    id: str
    access_token: str
    kind: str
    trigger: str
    repo: str
    installation_id: int | None
    issue_number: int | None
    title: str
    task: str
    requester: str
    base_branch: str | None
    branch: str | None
    origin: dict[str, Any]
    reporter_state: dict[str, Any]
    retry_of: str | None
    state: JobState
    phase: str | None
    failure_reason: str | None
    cancel_requested: bool
    attempts: int
    budget_usd: float
    max_requests: int
    max_minutes: float
    cost_usd: float
    tokens_in: int
    tokens_out: int
    requests: int
    plan: dict[str, Any] | None
    pr_number: int | None
    pr_url: str | None
    head_sha: str | None
    context_diagnostics: list[Any]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    steps: list[StepView] = field(default_factory=list)
    events: list[JobEventView] = field(default_factory=list)
    costs: list[CostView] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    @property
    def steps_done(self) -> int:
        return sum(1 for s in self.steps if s.state == "done")

    def elapsed_seconds(self, now: datetime) -> float:
        if self.started_at is None:
            return 0.0
        return ((self.finished_at or now) - self.started_at).total_seconds()

    @classmethod
    def of(cls, job: Job, steps: list[Step], events: list[JobEvent], costs: list[CostEntry]) -> JobView:
        return cls(
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
            created_at=job.created_at,
            updated_at=job.updated_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            steps=[StepView.of(s) for s in steps],
            events=[JobEventView(seq=e.seq, type=e.type, data=dict(e.data or {})) for e in events],
            costs=[CostView.of(c) for c in costs],
        )
