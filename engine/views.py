"""Read-only snapshots of a job that reporters, the job page and the API render from.

Plain data: the store builds them from its rows (engine.store.reads), adapters only read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.states import JobState


@dataclass(frozen=True, slots=True)
class JobEventView:
    seq: int
    type: str
    data: dict[str, object]


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
    tokens_cached: int = 0
    tokens_reasoning: int = 0
    checked_usd: float | None = None  # the worst case the budget guard checked before the request left
    billed_on: str | None = None  # usage | worst case | not billed
    outcome: str | None = None
    note: str | None = None
    attempt: int | None = None

    @property
    def over_checked(self) -> bool:
        """Billed more than was checked: the prompt cost more than estimated (the next check sees it)."""
        return self.checked_usd is not None and self.usd > self.checked_usd + 1e-12


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
    sandbox: dict[str, Any]
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

    @property
    def round(self) -> str | None:
        """Which round of a PR's follow-through this job is, as its trigger named it (origin["round"]):
        "review by @alice: 3 comments", "CI fix 1 of 2"; None for a job that is not one."""
        value = self.origin.get("round")
        return str(value)[:200] if value else None

    @property
    def sandbox_notice(self) -> str | None:
        """What a user must know about where the repository's commands ran, or None when nothing is."""
        sandbox = self.sandbox
        if sandbox.get("problem"):
            return str(sandbox["problem"])
        setup = sandbox.get("setup") or {}
        if setup.get("status") == "failed":
            return (
                f"setup failed ({setup.get('reason')}), so the tests did not run: see its log on the job page"
            )
        if sandbox.get("runner") == "none" and sandbox.get("test_command"):
            return "tests ran without a sandbox (the operator set SANDBOX=none)"
        if sandbox.get("network"):
            return "tests ran with network access (the repository's .github/autodev.yml allows it)"
        return None

    def elapsed_seconds(self, now: datetime) -> float:
        if self.started_at is None:
            return 0.0
        return ((self.finished_at or now) - self.started_at).total_seconds()
