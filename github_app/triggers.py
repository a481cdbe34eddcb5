"""What a stored delivery means, decided in the worker: a job, an action on a job, a reply, or nothing.

The webhook only asks `worth_storing` (no GitHub call); everything here may call GitHub (the sender's
permission, a pull request, a review's comments) and raises GitHubFailed when it cannot.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from githubkit.exception import GraphQLFailed, RequestFailed

from engine import events
from engine.pipeline.actions import ActionRefused, cancel_job, retry_job
from engine.pipeline.review import review_origin, review_task
from engine.pipeline.waiting import answer_question, approve_plan
from engine.ports import JobQueue, Reporter
from engine.settings import Settings
from engine.store.intake import Intake
from engine.store.jobs import JobNotFound, JobRequest, JobStore
from engine.store.models import Job, JobKind, JobState
from engine.store.waits import waiting_info, waiting_on
from engine.workspace.git import BRANCH_PREFIX
from github_app.ci_failures import CiFailures, own_check_run, worth_storing_ci
from github_app.client import GitHubApi, GitHubUnavailable
from github_app.commands import Command, find_command
from github_app.payloads import (
    CheckRunEvent,
    CheckSuiteEvent,
    Event,
    Issue,
    IssueCommentEvent,
    IssuesEvent,
    ReviewCommentEvent,
    ReviewEvent,
)
from github_app.permissions import WRITERS, Permissions
from github_app.replies import GitHubFailed, Replies
from github_app.threads import review_comments

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_REVIEW_COMMENTS = 30
NOT_ADDRESSED = "not addressed to autodev"
# The verbs `@slug <verb>` means; any other mention on an issue whose job asked a question is an answer.
VERBS = frozenset({"implement", "revise", "cancel", "retry", "stop", "help", "go"})
HELP = (
    "Commands (people with write access to this repository):\n"
    "- on an issue: `@{slug} implement` (or add the `{label}` label) starts a job;\n"
    "- on a pull request autodev opened: `@{slug} revise <instructions>` adds commits to it, "
    "`@{slug} cancel` stops its running job, `@{slug} retry` starts a failed one again, "
    "`@{slug} stop` ends the rounds of fixing its failing CI (and cancels a fix under way); a review with "
    "inline comments (or one inline comment mentioning `@{slug}`) is answered in one job, thread by thread;\n"
    "- when a job asks a question, any comment on the issue answers it; when its plan waits for approval, "
    "`@{slug} go [changes to the plan]` (or a 👍 on the plan's comment) starts the coding;\n"
    "- `@{slug} help` shows this list."
)


@dataclass(frozen=True, slots=True)
class Outcome:
    summary: str
    job_id: str | None = None


def worth_storing(
    name: str, event: Event, *, label: str, slug: str | None, app_id: int | None = None
) -> str | None:
    """None when the delivery may trigger something (it is stored for the worker), else why it is ignored.
    Reads the payload only; `slug` None (not known yet) keeps every comment that mentions someone."""
    if isinstance(event, IssuesEvent):
        if event.action != "labeled" or event.label is None:
            return f"issues.{event.action}"
        return None if event.label.name == label else "another label"
    if isinstance(event, IssueCommentEvent):
        if event.action != "created":
            return f"issue_comment.{event.action}"
        return None if find_command(event.comment.body or "", slug) else NOT_ADDRESSED
    if isinstance(event, ReviewEvent):
        # Whether it has inline comments takes a GitHub call: the worker reads them.
        if event.action != "submitted":
            return f"pull_request_review.{event.action}"
        return None if event.pull_request.head.ref.startswith(BRANCH_PREFIX) else "not autodev's pull request"
    if isinstance(event, ReviewCommentEvent):
        if event.action != "created":
            return f"pull_request_review_comment.{event.action}"
        if not event.pull_request.head.ref.startswith(BRANCH_PREFIX):
            return "not autodev's pull request"
        return None if find_command(event.comment.body or "", slug) else NOT_ADDRESSED
    if isinstance(event, CheckSuiteEvent):
        return worth_storing_ci(event, app_id=app_id)
    if isinstance(event, CheckRunEvent):
        if not own_check_run(event.check_run):
            return worth_storing_ci(event, app_id=app_id)  # another app's check: a CI result
        if event.action == "rerequested" or (event.action == "requested_action" and event.requested_action):
            return None
        return f"check_run.{event.action}"
    return f"event {name} not handled"


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
        self.permissions = Permissions(api, redis)
        self.replies = Replies(api, redis)
        # Concurrent deliveries handled by the worker share their job inserts and queue round trips.
        self.intake = Intake.for_jobs(store, queue)
        self.ci = CiFailures(api, store, self.intake, self.replies, settings.secret_values())
        # Set by GitHubApp: shows a job that ends here, without a worker (cancelled while waiting).
        self.reporter: Reporter | None = None

    async def dispatch(self, event: Event, delivery: str) -> Outcome:
        if isinstance(event, IssuesEvent):
            return await self.issues(event, delivery)
        if isinstance(event, IssueCommentEvent):
            return await self.issue_comment(event, delivery)
        if isinstance(event, ReviewEvent):
            return await self.pull_request_review(event, delivery)
        if isinstance(event, ReviewCommentEvent):
            return await self.pull_request_review_comment(event)
        if isinstance(event, CheckSuiteEvent):
            return await self.check_suite(event, delivery)
        if isinstance(event, CheckRunEvent):
            if event.action == "completed":  # another app's check run: worth_storing kept only those
                return Outcome(*await self.ci.handle(event, delivery))
            return await self.check_run(event)
        return Outcome(f"{type(event).__name__} not handled")

    # -- events -----------------------------------------------------------------------------------

    async def issues(self, event: IssuesEvent, delivery: str) -> Outcome:
        if not await self.authorized(event, reply_on=event.issue.number):
            return Outcome("refused: the sender may not trigger jobs")
        return await self.implement(event, event.issue, delivery, {"reaction": ["issue", None]})

    async def issue_comment(self, event: IssueCommentEvent, delivery: str) -> Outcome:
        slug = await self.github("reading the App's name", self.api.slug())
        command = find_command(event.comment.body or "", slug)
        number = event.issue.number
        if command is None or command.verb not in VERBS:
            waiting = await waiting_on(self.store, self.repo(event), number)
            if waiting is not None and (waiting_info(waiting.origin) or {}).get("kind") == "question":
                return await self.answer(event, waiting)
        if command is None:
            return Outcome("not addressed to autodev")
        if not await self.authorized(event, reply_on=number, command=command, slug=slug):
            return Outcome(f"refused {command.verb}: the sender may not use autodev")
        if command.verb == "help":
            await self.reply(event, number, self.help_text(slug))
            return Outcome("replied: help")
        if command.verb == "go":
            return await self.go(event, number, command.rest)
        origin = {"reaction": ["comment", event.comment.id], "comment_id": event.comment.id}
        if event.issue.pull_request is None:
            if command.verb == "implement":
                return await self.implement(event, event.issue, delivery, origin)
            if command.verb in ("cancel", "retry"):
                job_id = await self.latest_job(event, issue=number)
                return await self.job_action(event, command.verb, job_id, number)
            return await self.unknown(event, number, command.verb, slug)
        path = f"/repos/{self.repo(event)}/pulls/{number}"
        pull = await self.github(f"reading pull request #{number}", self.request(event, "GET", path))
        head = str(pull["head"]["ref"])
        if not head.startswith(BRANCH_PREFIX):
            return Outcome("not a pull request autodev opened")
        if command.verb == "revise":
            if not command.rest:
                await self.reply(event, number, f"Tell me what to change: `@{slug} revise <instructions>`.")
                return Outcome("revise without instructions")
            return await self.revise(event, pull, command.rest, delivery, origin)
        if command.verb in ("cancel", "retry"):
            return await self.job_action(
                event, command.verb, await self.latest_job(event, branch=head), number
            )
        if command.verb == "stop":
            return await self.stop_ci_fixes(event, number)
        return await self.unknown(event, number, command.verb, slug)

    async def pull_request_review(self, event: ReviewEvent, delivery: str) -> Outcome:
        """A submitted review on autodev's PR becomes one revise job for all its inline comments; one with
        none becomes a job only when it requests changes or mentions the App."""
        review = event.review
        comments = await self.review_threads(event, review.id)
        slug = await self.github("reading the App's name", self.api.slug())
        mentioned = find_command(review.body or "", slug) is not None
        if not comments and review.state.lower() != "changes_requested" and not mentioned:
            return Outcome(f"review {review.state.lower()} without inline comments: nothing to do")
        return await self.review_job(event, review.id, review.body or "", comments)

    async def pull_request_review_comment(self, event: ReviewCommentEvent) -> Outcome:
        """One inline comment that mentions the App, handled as the review that wraps it: GitHub delivers
        that review too, and both make the same job (one dedupe key per review)."""
        slug = await self.github("reading the App's name", self.api.slug())
        if find_command(event.comment.body or "", slug) is None:
            return Outcome("not addressed to autodev")
        review_id = event.comment.pull_request_review_id
        comments = await self.review_threads(event, review_id) if review_id is not None else []
        if not any(c["comment_id"] == event.comment.id for c in comments):
            # Not in the threads GitHub answered with (yet): the delivery's own copy is enough to answer it.
            comment = event.comment
            comments.append(
                {
                    "comment_id": comment.id, "thread_id": None, "author": comment.user.login,
                    "body": comment.body or "", "path": comment.path, "line": comment.line,
                    "start_line": comment.start_line, "diff_hunk": comment.diff_hunk, "history": [],
                }
            )  # fmt: skip
        return await self.review_job(event, review_id or event.comment.id, "", comments)

    async def review_job(
        self,
        event: ReviewEvent | ReviewCommentEvent,
        review_id: int,
        body: str,
        comments: list[dict[str, Any]],
    ) -> Outcome:
        number = event.pull_request.number
        if not await self.authorized(event, reply_on=number):
            return Outcome("refused: the sender may not trigger jobs")
        pull = event.pull_request.model_dump()
        by = self.sender(event)
        # One job takes on a bounded number: the task stays readable and within the model's context.
        numbered = [{"n": i, **c} for i, c in enumerate(comments[:MAX_REVIEW_COMMENTS], start=1)]
        count = f"{len(numbered)} comment{'s' if len(comments) != 1 else ''}"
        if len(comments) > len(numbered):
            count = f"{len(numbered)} of {len(comments)} comments"
        elif not numbered:
            count = "no inline comments"
        origin = {
            "reaction": ["issue", None],
            "review_id": review_id,
            "round": f"review by @{by}: {count}",
            "review": {"by": by, "comments": [review_origin(c) for c in numbered]},
        }
        instructions = review_task(body, numbered) or "Address the review."
        # Both deliveries of one review (the review and its single @-mention comment) make one job.
        key = f"review:{self.repo(event)}:{review_id}"
        outcome = await self.revise(event, pull, instructions, key, origin)
        left = len(comments) - len(numbered)
        if left > 0 and outcome.summary == "job submitted":
            await self.reply(
                event,
                number,
                f"@{by} this review has {len(comments)} inline comments; this round takes on the first "
                f"{len(numbered)} and answers each of them in its thread. The other {left} stay open: send "
                "them again in a new review once this round is done.",
            )
        return outcome

    async def check_suite(self, event: CheckSuiteEvent, delivery: str) -> Outcome:
        """A failed suite on autodev's pull request: a CI fix round (github_app.ci_failures)."""
        return Outcome(*await self.ci.handle(event, delivery))

    async def check_run(self, event: CheckRunEvent) -> Outcome:
        job_id = event.check_run.external_id
        if event.action == "requested_action" and event.requested_action is not None:
            verb = event.requested_action.identifier
        else:
            verb = "retry"
        if not await self.authorized(event, reply_on=None):
            return Outcome("refused: the sender may not trigger jobs")
        return await self.job_action(event, verb, job_id, None)

    # -- building jobs ----------------------------------------------------------------------------

    async def implement(self, event: Event, issue: Issue, delivery: str, origin: dict[str, Any]) -> Outcome:
        request = JobRequest(
            dedupe_key=f"github:{delivery}",
            trigger="github_issue" if origin.get("comment_id") is None else "github_comment",
            repo=self.repo(event),
            title=issue.title,
            task=self.issue_text(issue),
            requester=self.sender(event),
            installation_id=self.installation(event),
            issue_number=issue.number,
            origin={**origin, "issue_number": issue.number},
        )
        return await self.submit(request)

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

    @staticmethod
    def issue_text(issue: Issue) -> str:
        """The task as the delivery tells it; the job adds the issue's comments when it starts."""
        return "\n\n".join(part for part in (f"# {issue.title}", issue.body or "") if part)

    async def review_threads(self, event: Event, review_id: int) -> list[dict[str, Any]]:
        number = event.pull_request.number  # type: ignore[attr-defined]
        try:
            return await review_comments(
                self.api, self.installation(event), self.repo(event), number, review_id
            )
        except (RequestFailed, GitHubUnavailable, GraphQLFailed) as exc:
            raise GitHubFailed("reading the review's comments", exc) from exc

    # -- actions on existing jobs -----------------------------------------------------------------

    async def answer(self, event: IssueCommentEvent, job: Job) -> Outcome:
        """A comment on an issue whose job asked a question: a writer's answers it, anyone else's is a
        comment like any other (no reply: people talk on issues)."""
        if not await self.authorized(event, reply_on=None):
            return Outcome("a comment by someone who may not answer autodev's question", job.id)
        by = f"@{self.sender(event)}"
        if await answer_question(
            self.store, self.queue, job.id, text=event.comment.body or "", by=by, via="github"
        ):
            await self.acknowledge(event)
            return Outcome("answered the job's question", job.id)
        return Outcome("the job no longer waits for an answer", job.id)

    async def acknowledge(self, event: IssueCommentEvent) -> None:
        """👀 on the comment that was taken as the answer, so its author sees it was (cosmetic)."""
        path = f"/repos/{self.repo(event)}/issues/comments/{event.comment.id}/reactions"
        try:
            await self.request(event, "POST", path, json={"content": "eyes"})
        except (RequestFailed, GitHubUnavailable) as exc:
            log.warning("could not react to the answer: %s", exc)

    async def go(self, event: IssueCommentEvent, number: int, amendment: str) -> Outcome:
        """`@slug go [changes]`: approve the plan of the job waiting on this issue or pull request."""
        job = await waiting_on(self.store, self.repo(event), number)
        if job is None or (waiting_info(job.origin) or {}).get("kind") != "approval":
            await self.reply(event, number, "No autodev plan here is waiting for approval.")
            return Outcome("go: no plan waits for approval")
        by = f"@{self.sender(event)}"
        if await approve_plan(self.store, self.queue, job.id, by=by, via="comment", amendment=amendment):
            return Outcome("plan approved", job.id)
        return Outcome("go: the plan no longer waits for approval", job.id)

    async def job_action(self, event: Event, verb: str, job_id: str | None, number: int | None) -> Outcome:
        if job_id is None:
            if number is not None:
                await self.reply(event, number, "I found no autodev job for this pull request.")
            return Outcome("no job")
        by = f"github:{self.sender(event)}"
        try:
            if verb == "cancel":
                job = await cancel_job(self.store, self.queue, job_id, by=by)
                if JobState(job.state).terminal:  # it ended at once (queued or waiting): no worker shows it
                    await self.show_end(job_id)
                return Outcome("cancel requested", job_id)
            if verb == "retry":
                job, _ = await retry_job(self.store, self.queue, job_id, by=by)
                return Outcome("retried", job.id)
        except (ActionRefused, JobNotFound) as exc:
            if number is not None:
                await self.reply(event, number, f"Could not {verb}: {exc}")
            return Outcome(f"{verb} refused: {exc}")
        return Outcome(f"unknown action {verb}")

    async def stop_ci_fixes(self, event: Event, number: int) -> Outcome:
        """`@app stop`: no more CI fix rounds on this pull request, and the fix under way cancelled."""
        repo, by = self.repo(event), f"github:{self.sender(event)}"
        stopped = await self.store.stop_ci_fixes(repo, number, by=f"@{self.sender(event)}")
        cancelled = []
        for job in await self.store.ci_fix_jobs(repo, number):
            if not JobState(job.state).terminal:
                await cancel_job(self.store, self.queue, job.id, by=by)
                cancelled.append(job.id)
        text = (
            "I will not try to fix this pull request's CI any more."
            if stopped
            else "CI fixing was already stopped here."
        )
        if cancelled:
            text += f" Cancelled the fix under way ({', '.join(cancelled)})."
        await self.reply(event, number, text)
        return Outcome(f"CI fixes stopped; {len(cancelled)} cancelled")

    async def show_end(self, job_id: str) -> None:
        """Render a job that ended without a worker (cancelled while queued or waiting) on GitHub."""
        if self.reporter is None:
            return
        view = await self.store.view(job_id)
        ending = next((e for e in reversed(view.events) if e.type == events.STATE), None)
        if ending is not None:
            try:
                await self.reporter.on_event(view, ending)
            except Exception:  # cosmetic: the job page shows the end either way
                log.warning("could not show the cancelled job on GitHub", exc_info=True)

    async def latest_job(self, event: Event, *, branch: str = "", issue: int = 0) -> str | None:
        """The newest job on this PR's branch or for this issue (a retry is newer than what it retried)."""
        for job in await self.store.list_jobs(repo=self.repo(event), limit=200):
            if (branch and job.branch == branch) or (issue and job.issue_number == issue):
                return job.id
        return None

    async def unknown(self, event: Event, number: int, verb: str, slug: str) -> Outcome:
        await self.reply(event, number, f"I don't know `{verb}` here. `@{slug} help` lists what I can do.")
        return Outcome(f"unknown command {verb}")

    def help_text(self, slug: str) -> str:
        return HELP.format(slug=slug, label=self.settings.autodev_trigger_label)

    # -- permission and replies -------------------------------------------------------------------

    async def authorized(
        self, event: Event, *, reply_on: int | None, command: Command | None = None, slug: str = ""
    ) -> bool:
        """Whether the sender may write to the repository; if not, they are answered (once an hour per
        issue): the command list for `help`, else why nothing happens."""
        user, repo = self.sender(event), self.repo(event)
        lookup = self.permissions.of(repo, user, self.installation(event))
        permission = await self.github(f"checking @{user}'s permission on {repo}", lookup)
        if permission in WRITERS:
            return True
        log.info("refused a trigger from %s (permission %s)", user, permission)
        if reply_on is not None:
            if command is not None and command.verb == "help":
                text = self.help_text(slug)
            else:
                text = (
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
