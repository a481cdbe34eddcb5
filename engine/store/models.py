"""The job store's tables: jobs, their append-only events, steps, cost entries, and what adapters keep."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from engine.states import JobKind, JobState, StepState


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on both SQLite (which drops the zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        datetime: UTCDateTime,
    }


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    access_token: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20), default=JobKind.IMPLEMENT.value)
    # Where the request came from: github_issue, github_comment, github_review, github_check, slack, cli.
    trigger: Mapped[str] = mapped_column(String(32))
    repo: Mapped[str] = mapped_column(String(200), index=True)
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    issue_number: Mapped[int | None] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    task: Mapped[str] = mapped_column(Text)
    requester: Mapped[str] = mapped_column(String(200))
    base_branch: Mapped[str | None] = mapped_column(String(200))
    branch: Mapped[str | None] = mapped_column(String(200))
    # Origin-specific details the reporters need (comment ids, Slack channel and ts, …).
    origin: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Per-reporter state (check run id, sticky comment id, Slack parent ts, …), written by the worker.
    reporter_state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    retry_of: Mapped[str | None] = mapped_column(String(32))

    state: Mapped[str] = mapped_column(String(20), default=JobState.QUEUED.value, index=True)
    phase: Mapped[str | None] = mapped_column(String(40))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)

    budget_usd: Mapped[float] = mapped_column(Float)
    max_requests: Mapped[int] = mapped_column(Integer)
    max_minutes: Mapped[float] = mapped_column(Float)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)

    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    pr_number: Mapped[int | None] = mapped_column(Integer)
    pr_url: Mapped[str | None] = mapped_column(String(500))
    head_sha: Mapped[str | None] = mapped_column(String(64))
    agents_md_hash: Mapped[str | None] = mapped_column(String(64))
    context_diagnostics: Mapped[list[Any]] = mapped_column(default=list)
    # How the repository's commands ran: {runner: bwrap|none|None, network, problem?} (engine.workspace).
    sandbox: Mapped[dict[str, Any]] = mapped_column(default=dict)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (Index("ix_jobs_state_created", "state", "created_at"),)

    @property
    def job_state(self) -> JobState:
        return JobState(self.state)


class JobEvent(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("job_id", "seq", name="uq_job_events_job_seq"),
        Index("ix_job_events_type", "type"),  # /metrics counts events of a type at every scrape
    )


class Step(Base):
    __tablename__ = "steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    rationale: Mapped[str] = mapped_column(Text, default="")
    acceptance: Mapped[str] = mapped_column(Text, default="")
    files: Mapped[list[Any]] = mapped_column(default=list)
    state: Mapped[str] = mapped_column(String(20), default=StepState.PENDING.value)
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    diff: Mapped[str | None] = mapped_column(Text)
    test_command: Mapped[str | None] = mapped_column(Text)
    test_output: Mapped[str | None] = mapped_column(Text)
    test_passed: Mapped[bool | None] = mapped_column(Boolean)
    repair_rounds: Mapped[int] = mapped_column(Integer, default=0)
    refused_edits: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (UniqueConstraint("job_id", "index", name="uq_steps_job_index"),)


class CostEntry(Base):
    """One request that left the process for the LLM endpoint (every attempt of a call is one)."""

    __tablename__ = "cost_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    step_index: Mapped[int | None] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(20))  # planner, coder, embeddings
    model: Mapped[str] = mapped_column(String(100))
    tokens_in: Mapped[int] = mapped_column(Integer)
    tokens_out: Mapped[int] = mapped_column(Integer)
    # Of tokens_in, those served from the provider's cache; of tokens_out, the model's reasoning.
    tokens_cached: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    tokens_reasoning: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What engine.llm.tokens estimated the prompt at before it left: beside tokens_in (what the provider
    # counted) it calibrates the estimate per model (engine.store.calibration).
    tokens_in_estimate: Mapped[int | None] = mapped_column(Integer)
    # Billed: the reported usage priced, or the worst case when none sane came back (engine.llm.usage).
    usd: Mapped[float] = mapped_column(Float)
    # The worst case the budget guard checked before the request left (None: recorded before it was kept).
    checked_usd: Mapped[float | None] = mapped_column(Float)
    billed_on: Mapped[str | None] = mapped_column(String(20))  # usage | worst case | not billed
    outcome: Mapped[str | None] = mapped_column(String(60))  # ok, refused, timed out, HTTP 503, not JSON…
    note: Mapped[str | None] = mapped_column(Text)  # why the usage was not taken, what failed
    attempt: Mapped[int | None] = mapped_column(Integer)  # 1 for a call's first request, 2 for its retry…
    latency_ms: Mapped[int] = mapped_column(Integer)
    repo: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    __table_args__ = (
        Index("ix_cost_entries_model_id", "model", "id"),  # a model's latest requests
        Index("ix_cost_entries_model_repo_id", "model", "repo", "id"),  # and those about one repository
    )


class MemoryNote(Base):
    """Typed notes the agents keep per job and per repository (Decision, Constraint, Todo, Glossary, Link)."""

    __tablename__ = "memory_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    repo: Mapped[str] = mapped_column(String(200), index=True)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Installation(Base):
    """A GitHub App installation, kept from `installation*` webhooks."""

    __tablename__ = "installations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account: Mapped[str] = mapped_column(String(200))
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class InstallationRepo(Base):
    __tablename__ = "installation_repos"

    installation_id: Mapped[int] = mapped_column(
        ForeignKey("installations.id", ondelete="CASCADE"), primary_key=True
    )
    repo: Mapped[str] = mapped_column(String(200), primary_key=True)


class SlackRepoChannel(Base):
    """A Slack channel that follows a repository's jobs, and who may target which repo from Slack."""

    __tablename__ = "slack_grants"

    subject: Mapped[str] = mapped_column(String(64), primary_key=True)  # channel id (C…) or user id (U…)
    repo: Mapped[str] = mapped_column(String(200), primary_key=True)
    follow: Mapped[bool] = mapped_column(Boolean, default=False)  # post jobs of this repo to the channel
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookCount(Base):
    """GitHub webhook deliveries by event and answer, summed over every web process and every restart.

    /metrics exports these as counters: kept in a process they would restart from zero, and a scrape
    answered by another web process would go backwards."""

    __tablename__ = "webhook_counts"

    event: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class LlmTotal(Base):
    """Running totals of the LLM calls per model and role, added to in each call's own transaction
    (engine/totals.py), so /metrics reads a few rows instead of summing every cost entry (35 ms at 75k)."""

    __tablename__ = "llm_totals"

    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_in: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_out: Mapped[int] = mapped_column(BigInteger, default=0)
    usd: Mapped[float] = mapped_column(Float, default=0.0)


class GitHubDelivery(Base):
    """A signed GitHub delivery that may trigger something, stored before anything else happens.

    Its id (X-GitHub-Delivery) and the hash of its signed body are unique for as long as the row is kept
    (engine.store.deliveries.DEDUPE_WINDOW): a redelivery and a replayed body under a new id both find it.
    The worker decides what it means (which may need GitHub) and records how that ended.
    """

    __tablename__ = "github_deliveries"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    event: Mapped[str] = mapped_column(String(40))
    # The fields autodev reads from the payload (github_app.payloads), not the whole body.
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done | failed
    outcome: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (Index("ix_github_deliveries_state_received", "state", "received_at"),)


class PushedCommit(Base):
    """A commit autodev pushed as a branch's head: only a CI failure on one of these starts a fix round."""

    __tablename__ = "pushed_commits"

    repo: Mapped[str] = mapped_column(String(200), primary_key=True)
    sha: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32))
    branch: Mapped[str] = mapped_column(String(200))
    pushed_at: Mapped[datetime] = mapped_column(default=utcnow)


class PullRequestFollowUp(Base):
    """What autodev keeps per pull request it follows: CI fix rounds stopped (`@app stop`) and whether the
    "rounds used up" comment was posted (once per pull request, not once per failing delivery)."""

    __tablename__ = "pull_request_follow_ups"

    repo: Mapped[str] = mapped_column(String(200), primary_key=True)
    pr_number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ci_stopped_by: Mapped[str | None] = mapped_column(String(200))
    ci_exhausted_noted_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
