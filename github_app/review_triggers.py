"""A review on a pull request autodev opened becomes one revise job, answering its comments thread by thread.

A submitted review brings its inline comments (read with their threads, github_app.threads); one inline
comment that mentions the App is handled as the review that wraps it, and both deliveries make the same job
(one dedupe key per review). A review takes on at most MAX_REVIEW_COMMENTS comments and says so when it
leaves some open.

GitHub wraps every reply in an existing thread in a review of its own, so "ok, leave it" under autodev's
answer arrives as a review with one inline comment. A review made only of such replies is people talking in
threads: it starts a round (LLM calls the user pays for) only when it mentions the App or requests changes.
"""

from __future__ import annotations

from typing import Any

from githubkit.exception import GraphQLFailed, RequestFailed

from engine.pipeline.review import review_origin, review_task
from github_app.client import GitHubUnavailable
from github_app.commands import find_command
from github_app.payloads import ReviewCommentEvent, ReviewEvent
from github_app.replies import GitHubFailed
from github_app.threads import review_comments
from github_app.trigger_context import Outcome, TriggerContext

MAX_REVIEW_COMMENTS = 30


async def pull_request_review(context: TriggerContext, event: ReviewEvent, delivery: str) -> Outcome:
    """A submitted review on autodev's PR becomes one revise job for all its inline comments. One with
    none, or with nothing but replies in threads that were there before it, becomes a job only when it
    requests changes or mentions the App."""
    review = event.review
    comments = await review_threads(context, event, review.id)
    slug = await context.github("reading the App's name", context.api.slug())
    asked = review.state.lower() == "changes_requested" or find_command(review.body or "", slug) is not None
    if not comments and not asked:
        return Outcome(f"review {review.state.lower()} without inline comments: nothing to do")
    only_replies = all(c["reply"] for c in comments)
    if only_replies and not asked and not any(find_command(c["body"], slug) for c in comments):
        return Outcome(f"replies in existing threads without @{slug}: nothing to do")
    return await review_job(context, event, review.id, review.body or "", comments)


async def pull_request_review_comment(context: TriggerContext, event: ReviewCommentEvent) -> Outcome:
    """One inline comment that mentions the App, handled as the review that wraps it: GitHub delivers
    that review too, and both make the same job (one dedupe key per review)."""
    slug = await context.github("reading the App's name", context.api.slug())
    if find_command(event.comment.body or "", slug) is None:
        return Outcome("not addressed to autodev")
    review_id = event.comment.pull_request_review_id
    comments = await review_threads(context, event, review_id) if review_id is not None else []
    if not any(c["comment_id"] == event.comment.id for c in comments):
        # Not in the threads GitHub answered with (yet): the delivery's own copy is enough to answer it.
        comment = event.comment
        comments.append(
            {
                "comment_id": comment.id, "thread_id": None, "author": comment.user.login,
                "body": comment.body or "", "path": comment.path, "line": comment.line,
                "start_line": comment.start_line, "diff_hunk": comment.diff_hunk, "history": [],
                "reply": comment.in_reply_to_id is not None,
            }
        )  # fmt: skip
    return await review_job(context, event, review_id or event.comment.id, "", comments)


async def review_job(
    context: TriggerContext,
    event: ReviewEvent | ReviewCommentEvent,
    review_id: int,
    body: str,
    comments: list[dict[str, Any]],
) -> Outcome:
    number = event.pull_request.number
    if not await context.authorized(event, reply_on=number):
        return Outcome("refused: the sender may not trigger jobs")
    pull = event.pull_request.model_dump()
    by = context.sender(event)
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
    key = f"review:{context.repo(event)}:{review_id}"
    outcome = await context.revise(event, pull, instructions, key, origin)
    left = len(comments) - len(numbered)
    if left > 0 and outcome.summary == "job submitted":
        await context.reply(
            event,
            number,
            f"@{by} this review has {len(comments)} inline comments; this round takes on the first "
            f"{len(numbered)} and answers each of them in its thread. The other {left} stay open: send "
            "them again in a new review once this round is done.",
        )
    return outcome


async def review_threads(
    context: TriggerContext, event: ReviewEvent | ReviewCommentEvent, review_id: int
) -> list[dict[str, Any]]:
    number = event.pull_request.number
    try:
        return await review_comments(
            context.api, context.installation(event), context.repo(event), number, review_id
        )
    except (RequestFailed, GitHubUnavailable, GraphQLFailed) as exc:
        raise GitHubFailed("reading the review's comments", exc) from exc
