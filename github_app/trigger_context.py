"""What every trigger handler shares: who sent the event and whether they may write, a reply on the issue,
GitHub as the installation, and a revise job submitted for a pull request.

Triggers (github_app.triggers) is this context plus the routing; the review and waiting-job handlers
(github_app.review_triggers, github_app.waiting) are functions that take it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from githubkit.exception import RequestFailed

from engine.ports import JobQueue
from engine.settings import Settings
from engine.store.intake import Intake
from engine.store.jobs import JobRequest, JobStore
from engine.store.models import JobKind
from github_app.client import GitHubApi, GitHubUnavailable
from github_app.payloads import Event
from github_app.permissions import WRITERS, Permissions
from github_app.replies import GitHubFailed, Replies

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome:
    summary: str
    job_id: str | None = None


class TriggerContext:
    """One a worker: the permission cache, the once-an-hour replies and the job intake are shared by all
    the deliveries it handles."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        queue: JobQueue | None,
        api: GitHubApi,
        redis: aioredis.Redis | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.api = api
        self.permissions = Permissions(api, redis)
        self.replies = Replies(api, redis)
        # Concurrent deliveries handled by the worker share their job inserts and queue round trips.
        self.intake = Intake.for_jobs(store, queue)

    # -- permission and replies -------------------------------------------------------------------

    async def authorized(self, event: Event, *, reply_on: int | None, instead: str | None = None) -> bool:
        """Whether the sender may write to the repository; if not, they are answered (once an hour per
        issue): with `instead` when given (the command list for `help`), else why nothing happens."""
        user, repo = self.sender(event), self.repo(event)
        lookup = self.permissions.of(repo, user, self.installation(event))
        permission = await self.github(f"checking @{user}'s permission on {repo}", lookup)
        if permission in WRITERS:
            return True
        log.info("refused a trigger from %s (permission %s)", user, permission)
        if reply_on is not None:
            text = instead or (
                f"@{user} only people with write, maintain or admin permission on {repo} "
                "can start or control autodev jobs."
            )
            await self.replies.once_an_hour("non-writer", repo, self.installation(event), reply_on, text)
        return False

    async def reply(self, event: Event, number: int, text: str) -> None:
        await self.replies.post(self.repo(event), self.installation(event), number, text)

    async def request(self, event: Event, method: str, path: str, **kwargs: Any) -> Any:
        return await self.api.request(self.installation(event), method, path, **kwargs)

    @staticmethod
    async def github(doing: str, call: Awaitable[T]) -> T:
        """Await a GitHub call; its failure becomes GitHubFailed saying what was being done."""
        try:
            return await call
        except (RequestFailed, GitHubUnavailable) as exc:
            raise GitHubFailed(doing, exc) from exc

    # -- building jobs ----------------------------------------------------------------------------

    async def revise(
        self, event: Event, pull: dict[str, Any], instructions: str, delivery: str, origin: dict[str, Any]
    ) -> Outcome:
        """`delivery`: the dedupe key's tail (a delivery id, or `review:<repo>:<review id>`)."""
        number = int(pull["number"])
        request = JobRequest(
            dedupe_key=f"github:{delivery}",
            trigger="github_review" if "review_id" in origin else "github_comment",
            repo=self.repo(event),
            title=f"Revise #{number}: {pull['title']}",
            task=f"Revise pull request #{number} ({pull['title']}).\n\nInstructions:\n{instructions}",
            requester=self.sender(event),
            kind=JobKind.REVISE,
            installation_id=self.installation(event),
            base_branch=str(pull["base"]["ref"]),
            branch=str(pull["head"]["ref"]),
            pr_number=number,
            origin={**origin, "issue_number": number},
        )
        return await self.submit(request)

    async def submit(self, request: JobRequest) -> Outcome:
        job_id, created = await self.intake.submit(request)  # committed and enqueued (group commit)
        return Outcome("job submitted" if created else "job already submitted", job_id)

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def repo(event: Event) -> str:
        assert event.repository is not None  # checked by the webhook before storing
        return event.repository.full_name

    @staticmethod
    def installation(event: Event) -> int:
        assert event.installation is not None  # checked by the webhook before storing
        return event.installation.id

    @staticmethod
    def sender(event: Event) -> str:
        assert event.sender is not None  # checked by the webhook before storing
        return event.sender.login
