"""The protocols through which the engine talks outward (design.md §1); adapters implement them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from engine.views import JobEventView, JobView


@runtime_checkable
class JobQueue(Protocol):
    async def enqueue(self, job_id: str) -> None:
        """Queue the job; enqueueing an id that is already queued or running does nothing."""

    async def enqueue_many(self, job_ids: Sequence[str]) -> None:
        """`enqueue` for each id, in one round trip where the queue can."""

    async def abort(self, job_id: str) -> None:
        """Ask a running job to stop; the engine also honours the job's cancel flag between calls."""

    async def enqueue_deliveries(self, delivery_ids: Sequence[str]) -> None:
        """Queue stored GitHub deliveries for the worker to decide (a queued id is not queued again)."""

    async def forget(self, job_id: str) -> None:
        """Drop what the queue keeps of the job's finished run, so the same id can be enqueued again (a job
        that waited for an answer and now resumes)."""


@runtime_checkable
class DeliveryHandler(Protocol):
    """Decides what a stored delivery means, in the worker (the GitHub adapter implements it)."""

    async def handle(self, delivery_id: str, *, last_try: bool) -> str:
        """Act on the delivery once and record how it ended; returns that outcome in a few words.

        Raises TransientFailure when trying again later may help (GitHub down); on the `last_try` it tells
        the user why nothing happened instead."""


@runtime_checkable
class ApprovalWatcher(Protocol):
    """Finds approvals no event announces (GitHub sends no webhook for a 👍); asked by the reconciler."""

    async def approver(self, view: JobView) -> str | None:
        """Who approved the plan the job waits on (someone allowed to trigger jobs), or None yet."""


@runtime_checkable
class Reporter(Protocol):
    """Makes a job visible somewhere (a check run, a Slack thread). One per origin per job."""

    name: str

    async def on_event(self, view: JobView, event: JobEventView) -> None:
        """Render the job's whole state after `event`; a reporter that missed one simply catches up."""


@dataclass(frozen=True, slots=True)
class GitRemote:
    """Where to fetch and push, with HTTP headers git sends (tokens go here, never into the URL)."""

    url: str
    http_headers: dict[str, str] = field(default_factory=dict)

    def git_config(self) -> list[tuple[str, str]]:
        """The git configuration that carries the headers (handed to git through its environment)."""
        return [("http.extraHeader", f"{name}: {value}") for name, value in self.http_headers.items()]


@dataclass(frozen=True, slots=True)
class PullRequest:
    number: int
    url: str
    head_branch: str
    base_branch: str
    draft: bool = False
    head_sha: str | None = None
    state: str = "open"


@runtime_checkable
class CodeHost(Protocol):
    """A repository's home: GitHub for the service, a plain local repository for `autodev run`.

    Optional, read with getattr: `supports_pull_requests: bool` (default True) and
    `async issue_text(repo, number) -> str` (an issue's title, body and comments, for jobs that name an
    issue without carrying its text, such as `/orchestrate owner/repo#123`),
    `async reply_to_review_comment(repo, pr_number, comment_id, body) -> None` (a reply in the thread of an
    inline review comment), `async resolve_review_thread(repo, thread_id) -> None` and
    `async answered_review_comments(repo, pr_number, marker) -> set[int]` (the comments a reply carrying
    `marker` answers), for review jobs.
    """

    async def remote(self, repo: str) -> GitRemote: ...

    async def default_branch(self, repo: str) -> str: ...

    async def find_pull_request(self, repo: str, head_branch: str) -> PullRequest | None: ...

    async def open_pull_request(
        self, repo: str, *, head: str, base: str, title: str, body: str, draft: bool
    ) -> PullRequest: ...

    async def update_pull_request(
        self,
        repo: str,
        number: int,
        *,
        title: str | None = None,
        body: str | None = None,
        draft: bool | None = None,
    ) -> PullRequest: ...
