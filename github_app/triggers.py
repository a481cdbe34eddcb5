"""What each webhook means: a job to submit, an action on a job, a reply, or nothing."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from githubkit.exception import RequestFailed

from engine.pipeline.actions import ActionRefused, cancel_job, retry_job
from engine.ports import JobQueue
from engine.settings import Settings
from engine.store.intake import Intake
from engine.store.jobs import JobNotFound, JobRequest, JobStore
from engine.store.models import JobKind
from github_app.client import GitHubApi, GitHubUnavailable
from github_app.payloads import CheckRunEvent, Event, Issue, IssueCommentEvent, IssuesEvent, ReviewEvent

log = logging.getLogger(__name__)

WRITERS = frozenset({"admin", "maintain", "write"})
PERMISSION_TTL_SECONDS = 60
LOCAL_PERMISSION_TTL_SECONDS = 10
LOCAL_PERMISSION_ENTRIES = 10_000
BRANCH_PREFIX = "autodev/"
HELP = (
    "Commands (people with write access to this repository):\n"
    "- on an issue: `@{slug} implement` (or add the `{label}` label) starts a job;\n"
    "- on a pull request autodev opened: `@{slug} revise <instructions>` adds commits to it, "
    "`@{slug} cancel` stops its running job, `@{slug} retry` starts a failed one again;\n"
    "- `@{slug} help` shows this list."
)


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


def ignored(reason: str) -> Outcome:
    return Outcome(202, {"ignored": reason})


def parse_command(text: str, slug: str) -> tuple[str, str] | None:
    """`@slug verb rest…` anywhere in a comment → (verb, rest); None when the App is not addressed."""
    match = re.search(rf"(?<![\w-])@{re.escape(slug)}(?:\[bot\])?\s+(\w+)\b(.*)", text, re.I | re.S)
    if match is None:
        return None
    return match.group(1).lower(), match.group(2).strip()


class Triggers:
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
        self.redis = redis
        self.intake = Intake.for_jobs(store, queue)
        # (repo, user) → (permission, monotonic expiry): spares the Redis round trip on a burst of webhooks.
        self._permissions: dict[tuple[str, str], tuple[str, float]] = {}
        # Lookups in flight: a burst from one sender asks Redis (or GitHub) once, not once per delivery.
        self._asking: dict[tuple[str, str], asyncio.Task[str]] = {}

    # -- events -----------------------------------------------------------------------------------

    async def issues(self, event: IssuesEvent, delivery: str) -> Outcome:
        if event.action != "labeled" or event.label is None:
            return ignored(f"issues.{event.action}")
        if event.label.name != self.settings.autodev_trigger_label:
            return ignored("another label")
        if not await self.authorized(event, reply_on=event.issue.number):
            return ignored("sender may not trigger jobs")
        return await self.implement(event, event.issue, delivery, {"reaction": ["issue", None]})

    async def issue_comment(self, event: IssueCommentEvent, delivery: str) -> Outcome:
        if event.action != "created":
            return ignored(f"issue_comment.{event.action}")
        slug = await self.api.slug()
        command = parse_command(event.comment.body or "", slug)
        if command is None:
            return ignored("not addressed to autodev")
        verb, rest = command
        number = event.issue.number
        if verb == "help":
            await self.reply(event, number, HELP.format(slug=slug, label=self.settings.autodev_trigger_label))
            return Outcome(202, {"replied": "help"})
        if not await self.authorized(event, reply_on=number):
            return ignored("sender may not trigger jobs")
        origin = {"reaction": ["comment", event.comment.id], "comment_id": event.comment.id}
        if event.issue.pull_request is None:
            if verb == "implement":
                return await self.implement(event, event.issue, delivery, origin)
            if verb in ("cancel", "retry"):
                return await self.job_action(event, verb, await self.latest_job(event, issue=number), number)
            return await self.unknown(event, number, verb, slug)
        path = f"/repos/{self.repo(event)}/pulls/{number}"
        pull = await self.api.request(self.installation(event), "GET", path)
        head = str(pull["head"]["ref"])
        if not head.startswith(BRANCH_PREFIX):
            return ignored("not a pull request autodev opened")
        if verb == "revise":
            if not rest:
                await self.reply(event, number, f"Tell me what to change: `@{slug} revise <instructions>`.")
                return ignored("revise without instructions")
            return await self.revise(event, pull, rest, delivery, origin)
        if verb in ("cancel", "retry"):
            return await self.job_action(event, verb, await self.latest_job(event, branch=head), number)
        return await self.unknown(event, number, verb, slug)

    async def pull_request_review(self, event: ReviewEvent, delivery: str) -> Outcome:
        if event.action != "submitted" or event.review.state.lower() != "changes_requested":
            return ignored("not a change request")
        if not event.pull_request.head.ref.startswith(BRANCH_PREFIX):
            return ignored("not a pull request autodev opened")
        number = event.pull_request.number
        if not await self.authorized(event, reply_on=number):
            return ignored("sender may not trigger jobs")
        comments = await self.review_comments(event)
        parts = [event.review.body or "", *comments]
        instructions = "\n\n".join(filter(None, parts)) or "Address the review."
        pull = event.pull_request.model_dump()
        origin = {"reaction": ["issue", None], "review_id": event.review.id}
        return await self.revise(event, pull, instructions, delivery, origin)

    async def check_run(self, event: CheckRunEvent, delivery: str) -> Outcome:
        job_id = event.check_run.external_id
        if event.check_run.name != "autodev" or not job_id:
            return ignored("not autodev's check run")
        if event.action == "rerequested":
            verb = "retry"
        elif event.action == "requested_action" and event.requested_action is not None:
            verb = event.requested_action.identifier
        else:
            return ignored(f"check_run.{event.action}")
        if not await self.authorized(event, reply_on=None):
            return ignored("sender may not trigger jobs")
        return await self.job_action(event, verb, job_id, None)

    # -- building jobs ----------------------------------------------------------------------------

    async def implement(self, event: Event, issue: Issue, delivery: str, origin: dict[str, Any]) -> Outcome:
        number = issue.number
        task = self.issue_text(issue)
        request = JobRequest(
            dedupe_key=f"github:{delivery}",
            trigger="github_issue" if origin.get("comment_id") is None else "github_comment",
            repo=self.repo(event),
            title=issue.title,
            task=task,
            requester=self.sender(event),
            installation_id=self.installation(event),
            issue_number=number,
            origin={**origin, "issue_number": number},
        )
        return await self.submit(request)

    async def revise(
        self, event: Event, pull: dict[str, Any], instructions: str, delivery: str, origin: dict[str, Any]
    ) -> Outcome:
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
        return Outcome(202, {"job_id": job_id, "created": created})

    @staticmethod
    def issue_text(issue: Issue) -> str:
        """The task as the webhook tells it; the worker adds the issue's comments when the job starts, so
        the webhook is answered without a call to GitHub beyond the (cached) permission check."""
        return "\n\n".join(part for part in (f"# {issue.title}", issue.body or "") if part)

    async def review_comments(self, event: ReviewEvent) -> list[str]:
        number, review = event.pull_request.number, event.review.id
        path = f"/repos/{self.repo(event)}/pulls/{number}/reviews/{review}/comments"
        try:
            rows = await self.api.request(self.installation(event), "GET", path, params={"per_page": 100})
        except (RequestFailed, GitHubUnavailable):
            log.warning("could not read the review's comments; using the review body only")
            return []
        return [f"{row.get('path', '')}:{row.get('line') or ''}\n{row.get('body', '')}" for row in rows or []]

    # -- actions on existing jobs -----------------------------------------------------------------

    async def job_action(self, event: Event, verb: str, job_id: str | None, number: int | None) -> Outcome:
        if job_id is None:
            if number is not None:
                await self.reply(event, number, "I found no autodev job for this pull request.")
            return ignored("no job")
        by = f"github:{self.sender(event)}"
        try:
            if verb == "cancel":
                await cancel_job(self.store, self.queue, job_id, by=by)
                return Outcome(202, {"job_id": job_id, "action": "cancel"})
            if verb == "retry":
                job, _ = await retry_job(self.store, self.queue, job_id, by=by)
                return Outcome(202, {"job_id": job.id, "action": "retry"})
        except (ActionRefused, JobNotFound) as exc:
            if number is not None:
                await self.reply(event, number, f"Could not {verb}: {exc}")
            return ignored(str(exc))
        return ignored(f"unknown action {verb}")

    async def latest_job(self, event: Event, *, branch: str = "", issue: int = 0) -> str | None:
        """The newest job on this PR's branch or for this issue (a retry is newer than what it retried)."""
        for job in await self.store.list_jobs(repo=self.repo(event), limit=200):
            if (branch and job.branch == branch) or (issue and job.issue_number == issue):
                return job.id
        return None

    async def unknown(self, event: Event, number: int, verb: str, slug: str) -> Outcome:
        await self.reply(event, number, f"I don't know `{verb}` here. `@{slug} help` lists what I can do.")
        return ignored(f"unknown command {verb}")

    # -- permission and replies -------------------------------------------------------------------

    async def authorized(self, event: Event, *, reply_on: int | None) -> bool:
        user = self.sender(event)
        permission = await self.permission(event, user)
        if permission in WRITERS:
            return True
        log.info("refused a trigger from %s (permission %s)", user, permission)
        if reply_on is not None:
            await self.reply(
                event,
                reply_on,
                f"@{user} only people with write, maintain or admin permission on {self.repo(event)} "
                "can start or control autodev jobs.",
            )
        return False

    async def permission(self, event: Event, user: str) -> str:
        """The sender's permission on the repo: from this process (10 s), Redis (60 s), else GitHub."""
        local_key = (self.repo(event), user)
        if (hit := self._permissions.get(local_key)) is not None and hit[1] > time.monotonic():
            return hit[0]
        asking = self._asking.get(local_key)
        if asking is None:
            asking = asyncio.create_task(self._shared_permission(event, user))
            self._asking[local_key] = asking
            asking.add_done_callback(lambda task: self._remember(local_key, task))
        # Shielded: a caller that goes away (client disconnect) does not cancel the others' answer.
        return await asyncio.shield(asking)

    def _remember(self, key: tuple[str, str], task: asyncio.Task[str]) -> None:
        del self._asking[key]
        if task.cancelled() or task.exception() is not None:
            return  # every waiter has the error; nothing is cached
        if len(self._permissions) >= LOCAL_PERMISSION_ENTRIES:
            self._permissions.clear()
        self._permissions[key] = (task.result(), time.monotonic() + LOCAL_PERMISSION_TTL_SECONDS)

    async def _shared_permission(self, event: Event, user: str) -> str:
        key = f"autodev:github:permission:{self.repo(event)}:{user}"
        if self.redis is not None and (cached := await self.redis.get(key)) is not None:
            return cached.decode() if isinstance(cached, bytes) else str(cached)
        path = f"/repos/{self.repo(event)}/collaborators/{user}/permission"
        try:
            answer = await self.api.request(self.installation(event), "GET", path)
            role = str(answer.get("role_name") or "")
            permission = role if role in WRITERS else str(answer.get("permission") or "none")
        except RequestFailed as exc:
            if exc.response.status_code != 404:
                raise
            permission = "none"  # not a collaborator at all
        if self.redis is not None:
            await self.redis.set(key, permission, ex=PERMISSION_TTL_SECONDS)
        return permission

    async def reply(self, event: Event, number: int, text: str) -> None:
        path = f"/repos/{self.repo(event)}/issues/{number}/comments"
        try:
            await self.api.request(self.installation(event), "POST", path, json={"body": text})
        except (RequestFailed, GitHubUnavailable):
            log.warning("could not post a reply on %s#%s", self.repo(event), number)

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def repo(event: Event) -> str:
        assert event.repository is not None  # checked by the router before dispatch
        return event.repository.full_name

    @staticmethod
    def installation(event: Event) -> int:
        assert event.installation is not None  # checked by the router before dispatch
        return event.installation.id

    @staticmethod
    def sender(event: Event) -> str:
        assert event.sender is not None  # checked by the router before dispatch
        return event.sender.login
