"""Comments to a job that waits on its issue or pull request: the answer to its question, or `@slug go`
approving its plan (a 👍 on the plan's comment approves it too: github_app.approvals)."""

from __future__ import annotations

import logging

from githubkit.exception import RequestFailed

from engine.pipeline.waiting import answer_question, approve_plan
from engine.store.models import Job
from engine.store.waits import waiting_info, waiting_on
from github_app.client import GitHubUnavailable
from github_app.payloads import IssueCommentEvent
from github_app.trigger_context import Outcome, TriggerContext

log = logging.getLogger(__name__)


async def waiting_for(
    context: TriggerContext, event: IssueCommentEvent, number: int, kind: str
) -> Job | None:
    """The job waiting on this issue or pull request for `kind` (question | approval), if one does."""
    job = await waiting_on(context.store, context.repo(event), number)
    if job is None or (waiting_info(job.origin) or {}).get("kind") != kind:
        return None
    return job


async def answer(context: TriggerContext, event: IssueCommentEvent, job: Job) -> Outcome:
    """A comment on an issue whose job asked a question: a writer's answers it, anyone else's is a
    comment like any other (no reply: people talk on issues)."""
    if not await context.authorized(event, reply_on=None):
        return Outcome("a comment by someone who may not answer autodev's question", job.id)
    by = f"@{context.sender(event)}"
    if await answer_question(
        context.store, context.queue, job.id, text=event.comment.body or "", by=by, via="github"
    ):
        await acknowledge(context, event)
        return Outcome("answered the job's question", job.id)
    return Outcome("the job no longer waits for an answer", job.id)


async def acknowledge(context: TriggerContext, event: IssueCommentEvent) -> None:
    """👀 on the comment that was taken as the answer, so its author sees it was (cosmetic)."""
    path = f"/repos/{context.repo(event)}/issues/comments/{event.comment.id}/reactions"
    try:
        await context.request(event, "POST", path, json={"content": "eyes"})
    except (RequestFailed, GitHubUnavailable) as exc:
        log.warning("could not react to the answer: %s", exc)


async def go(context: TriggerContext, event: IssueCommentEvent, number: int, amendment: str) -> Outcome:
    """`@slug go [changes]`: approve the plan of the job waiting on this issue or pull request."""
    job = await waiting_for(context, event, number, "approval")
    if job is None:
        await context.reply(event, number, "No autodev plan here is waiting for approval.")
        return Outcome("go: no plan waits for approval")
    by = f"@{context.sender(event)}"
    if await approve_plan(context.store, context.queue, job.id, by=by, via="comment", amendment=amendment):
        return Outcome("plan approved", job.id)
    return Outcome("go: the plan no longer waits for approval", job.id)
