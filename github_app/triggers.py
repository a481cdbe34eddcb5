"""What a stored delivery means, decided in the worker: a job, an action on a job, a reply, or nothing.

The webhook only asks `worth_storing` (no GitHub call); the handlers may call GitHub (the sender's
permission, a pull request, a review's comments) and raise GitHubFailed when they cannot. Issue and comment
commands and actions on jobs are here; reviews in github_app.review_triggers, comments to a waiting job in
github_app.waiting, CI results in github_app.ci_failures, and what they share in github_app.trigger_context.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

from engine import events
from engine.pipeline.actions import ActionRefused, cancel_job, retry_job
from engine.ports import Reporter
from engine.store.jobs import JobNotFound, JobRequest
from engine.store.models import JobState
from engine.workspace.git import BRANCH_PREFIX
from github_app import review_triggers, waiting
from github_app.ci_failures import CiFailures, own_check_run, worth_storing_ci
from github_app.commands import find_command
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
from github_app.trigger_context import Outcome, TriggerContext

log = logging.getLogger(__name__)

NOT_ADDRESSED = "not addressed to autodev"
# The verbs `@slug <verb>` means; any other mention on an issue whose job asked a question is an answer.
VERBS = frozenset({"implement", "revise", "cancel", "retry", "stop", "help", "go"})
HELP = (
    "Commands (people with write access to this repository):\n"
    "- on an issue: `@{slug} implement` (or add the `{label}` label) starts a job;\n"
    "- on a pull request autodev opened: `@{slug} revise <instructions>` adds commits to it, "
    "`@{slug} cancel` stops its running job, `@{slug} retry` starts a failed one again, "
    "`@{slug} stop` ends the rounds of fixing its failing CI (and cancels a fix under way); a review with "
    "inline comments (or one inline comment mentioning `@{slug}`) is answered in one job, thread by thread; "
    "a reply in an existing thread needs `@{slug}` to start a round;\n"
    "- when a job asks a question, any comment on the issue answers it; when its plan waits for approval, "
    "`@{slug} go [changes to the plan]` (or a 👍 on the plan's comment) starts the coding;\n"
    "- `@{slug} help` shows this list."
)


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


class Triggers(TriggerContext):
    """The shared context plus the routing: `dispatch` hands each stored event to its handler."""

    # Set by GitHubApp: shows a job that ends here, without a worker (cancelled while waiting).
    reporter: Reporter | None = None

    @cached_property
    def ci(self) -> CiFailures:
        """CI results, through this context's intake and replies."""
        return CiFailures(self.api, self.store, self.intake, self.replies, self.settings.secret_values())

    async def dispatch(self, event: Event, delivery: str) -> Outcome:
        if isinstance(event, IssuesEvent):
            return await self.issues(event, delivery)
        if isinstance(event, IssueCommentEvent):
            return await self.issue_comment(event, delivery)
        if isinstance(event, ReviewEvent):
            return await review_triggers.pull_request_review(self, event, delivery)
        if isinstance(event, ReviewCommentEvent):
            return await review_triggers.pull_request_review_comment(self, event)
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
            question = await waiting.waiting_for(self, event, number, "question")
            if question is not None:
                return await waiting.answer(self, event, question)
        if command is None:
            return Outcome("not addressed to autodev")
        # Help is the one command a non-writer is answered with (instead of a refusal).
        listing = self.help_text(slug) if command.verb == "help" else None
        if not await self.authorized(event, reply_on=number, instead=listing):
            return Outcome(f"refused {command.verb}: the sender may not use autodev")
        if listing is not None:
            await self.reply(event, number, listing)
            return Outcome("replied: help")
        if command.verb == "go":
            return await waiting.go(self, event, number, command.rest)
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

    @staticmethod
    def issue_text(issue: Issue) -> str:
        """The task as the delivery tells it; the job adds the issue's comments when it starts."""
        return "\n\n".join(part for part in (f"# {issue.title}", issue.body or "") if part)

    # -- actions on existing jobs -----------------------------------------------------------------

    async def job_action(self, event: Event, verb: str, job_id: str | None, number: int | None) -> Outcome:
        if job_id is None:
            if number is not None:
                on_issue = isinstance(event, IssueCommentEvent) and event.issue.pull_request is None
                where = "issue" if on_issue else "pull request"
                await self.reply(event, number, f"I found no autodev job for this {where}.")
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
