"""A review's inline comments, answered thread by thread.

The trigger numbers the review's comments in the task (`review_task`) and keeps their ids on the job's
origin (`review_origin`). The coder says per comment, with the `review_comment` tool, whether it addressed
it and what to tell the reviewer (`ReviewLedger`, each word an event). After the push, `answer_review`
replies in every thread — with the commit for an addressed comment, which is then resolved, and why not for
one that was not — recording each reply, so a job run again does not post it twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from engine import events
from engine.pipeline.jobrun import JobRun
from engine.ports import CodeHost, PullRequest
from engine.store.conversations import REVIEW_HEADING
from engine.store.models import Job

log = logging.getLogger(__name__)

TOOL_NOTE = (
    "When you have dealt with a numbered review comment, call the `review_comment` tool with its number, "
    "whether your change addresses it, and a one-sentence reply for the reviewer (what you changed, or "
    "why you did not). A comment you say nothing about is answered as not addressed."
)
# Tries per reply or resolve, and the pause before each retry (seconds); then it is recorded as failed.
ANSWER_TRIES = 3
ANSWER_BACKOFF_S = 0.5
REPLY_MAX_CHARS = 1500


def review_origin(comment: dict[str, Any]) -> dict[str, Any]:
    """What the job keeps of a numbered comment to answer it: its ids and where it is."""
    keys = ("n", "comment_id", "thread_id", "author", "path", "line", "start_line")
    return {key: comment.get(key) for key in keys}


def review_task(body: str, comments: list[dict[str, Any]]) -> str:
    """The review as the coder reads it: the review's text, then each comment numbered, where it is, the
    diff hunk it sits on and what was said before it in its thread."""
    parts = [f"The review says:\n{body.strip()}"] if body.strip() else []
    for c in comments:
        where = f"{c.get('path') or '(file)'}"
        if c.get("start_line") and c.get("start_line") != c.get("line"):
            where += f" lines {c['start_line']}-{c.get('line')}"
        elif c.get("line"):
            where += f" line {c['line']}"
        lines = [f"{REVIEW_HEADING.format(n=c['n'])} {where}"]
        if c.get("diff_hunk"):
            lines.append(f"Diff hunk:\n```diff\n{c['diff_hunk']}\n```")
        if c.get("history"):
            lines.append("Earlier in this thread:")
            lines += [f"> @{h['author']}: {h['body']}".replace("\n", "\n> ") for h in c["history"]]
        lines.append(f"@{c.get('author')}: {c.get('body') or ''}")
        parts.append("\n".join(lines))
    if comments:
        parts.append(TOOL_NOTE)
    return "\n\n".join(parts)


def review_comments_of(job: Job | None) -> list[dict[str, Any]]:
    if job is None:
        return []
    return list(((job.origin or {}).get("review") or {}).get("comments") or [])


class ReviewLedger:
    """The coder's word on each numbered comment (the `review_comment` tool), kept as events."""

    def __init__(self, run: JobRun, comments: list[dict[str, Any]]) -> None:
        self.run = run
        self.numbers = {int(c["n"]) for c in comments}

    async def record(self, number: int, addressed: bool, reply: str) -> str:
        if number not in self.numbers:
            known = ", ".join(str(n) for n in sorted(self.numbers))
            return f"error: there is no review comment {number}; the comments are numbered {known}"
        text = reply.strip()[:REPLY_MAX_CHARS]
        if not text:
            return "error: the reply is empty; say what you changed, or why you did not"
        await self.run.emit(events.REVIEW_COMMENT, {"n": number, "addressed": addressed, "reply": text})
        return f"noted: comment {number} {'addressed' if addressed else 'not addressed'}"


async def answer_review(
    run: JobRun, host: CodeHost, job: Job, pr: PullRequest | None, sha: str | None
) -> None:
    """Reply in each review thread the job was asked about, and resolve the ones it addressed. `sha`: the
    pushed head when the job committed anything, else None. A reply that GitHub keeps refusing is
    recorded (`review_reply_failed`) and never fails the job."""
    comments = review_comments_of(job)
    reply_to = getattr(host, "reply_to_review_comment", None)
    resolve = getattr(host, "resolve_review_thread", None)
    if not comments or reply_to is None or pr is None:
        return
    view = await run.store.view(run.job_id)
    said: dict[int, dict[str, Any]] = {}
    replied: set[int] = set()
    resolved: set[int] = set()
    for event in view.events:
        data: dict[str, Any] = dict(event.data)
        if event.type == events.REVIEW_COMMENT:
            said[int(data["n"])] = data  # the latest word on a comment wins
        elif event.type == events.REVIEW_REPLY:
            replied.add(int(data["comment_id"]))
        elif event.type == events.REVIEW_RESOLVED:
            resolved.add(int(data["comment_id"]))
    if any(e.type == events.RESUMED for e in view.events):
        replied |= await _posted_before(run, host, job, pr, comments, replied)
    commit = f"{pr.url}/commits/{sha}" if sha and pr.url else sha
    for comment in comments:
        n, comment_id = int(comment["n"]), int(comment["comment_id"])
        word = said.get(n)
        addressed = bool(word and word.get("addressed"))
        if comment_id not in replied:
            body = f"{reply_text(word, commit, sha)}\n\n{marker(job.id)}"
            if not await _try(run, "reply", comment_id, reply_to, job.repo, pr.number, comment_id, body):
                continue  # not answered: the thread stays open whatever was done
            await run.emit(events.REVIEW_REPLY, {"n": n, "comment_id": comment_id, "addressed": addressed})
        thread = comment.get("thread_id")
        if resolve is None or not (addressed and thread) or comment_id in resolved:
            continue
        if await _try(run, "resolve", comment_id, resolve, job.repo, thread):
            await run.emit(events.REVIEW_RESOLVED, {"n": n, "comment_id": comment_id, "thread_id": thread})


def marker(job_id: str) -> str:
    """Hidden in every reply: a run that died between posting and recording finds its replies by it."""
    return f"<!-- autodev:review-reply job={job_id} -->"


async def _posted_before(
    run: JobRun, host: CodeHost, job: Job, pr: PullRequest, comments: list[dict[str, Any]], replied: set[int]
) -> set[int]:
    """The comments a previous run of this job answered on GitHub without recording it (it was killed in
    between), now recorded; asked only of a resumed run with replies left to post."""
    lookup = getattr(host, "answered_review_comments", None)
    pending = {int(c["comment_id"]) for c in comments} - replied
    if lookup is None or not pending:
        return set()
    try:
        found = set(await lookup(job.repo, pr.number, marker(job.id))) & pending
    except Exception as exc:
        log.warning("could not read which review comments were answered already: %s", exc)
        return set()
    by_id = {int(c["comment_id"]): int(c["n"]) for c in comments}
    for comment_id in sorted(found):
        data = {"n": by_id[comment_id], "comment_id": comment_id, "found_on_github": True}
        await run.emit(events.REVIEW_REPLY, data)
    return found


def reply_text(word: dict[str, Any] | None, commit: str | None, sha: str | None) -> str:
    if word is None:
        return "Not addressed in this round: the change made for this review did not cover this comment."
    if not word.get("addressed"):
        return f"Not addressed in this round: {word.get('reply')}"
    if not sha:
        return f"{word.get('reply')}\n\n(No commit: this round changed no code.)"
    return f"{word.get('reply')}\n\nChanged in [{sha[:7]}]({commit})."


async def _try(
    run: JobRun, action: str, comment_id: int, call: Callable[..., Awaitable[Any]], *args: Any
) -> bool:
    """`call(*args)` up to ANSWER_TRIES times; when it keeps failing, a `review_reply_failed` event says
    why."""
    error = ""
    for attempt in range(ANSWER_TRIES):
        if attempt:
            await asyncio.sleep(ANSWER_BACKOFF_S * attempt)
        try:
            await call(*args)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = (getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}")[:300]
            log.warning("could not %s review comment %s: %s", action, comment_id, error)
    data = {"action": action, "comment_id": comment_id, "tries": ANSWER_TRIES, "error": error}
    await run.emit(events.REVIEW_REPLY_FAILED, data)
    return False
