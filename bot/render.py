"""A job as Slack messages: the parent (status line edited in place) and the thread's replies.

Everything is rendered from the whole `JobView`, so a reporter that missed an update simply renders again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from engine.llm.money import usd
from engine.settings import Settings
from engine.store.models import JobState
from engine.store.waits import waiting_info
from engine.views import JobView

CANCEL_ACTION = "autodev_cancel"
APPROVE_ACTION = "autodev_approve"
DETAILS_ACTION = "autodev_details"

_ICONS = {
    JobState.QUEUED: ":hourglass_flowing_sand:",
    JobState.RUNNING: ":gear:",
    JobState.WAITING: ":speech_balloon:",
    JobState.SUCCEEDED: ":white_check_mark:",
    JobState.FAILED: ":x:",
    JobState.CANCELLED: ":no_entry_sign:",
}
# The states a step ends in; each gets a thread reply.
STEP_ICONS = {
    "done": ":white_check_mark:",
    "failed": ":x:",
    "skipped": ":fast_forward:",
    "refused": ":no_entry:",
}


def short_id(job_id: str) -> str:
    return job_id[:8]


def details_url(settings: Settings, view: JobView) -> str:
    return f"{settings.public_url.rstrip('/')}/jobs/{view.id}?t={view.access_token}"


def escape(text: str) -> str:
    """Slack's mrkdwn needs only these three escaped; user text must never become a mention or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def who_asked(view: JobView) -> str:
    if view.trigger == "slack":
        return f"<@{view.requester}>"
    return f"`{escape(view.requester)}` on GitHub"


def status_line(view: JobView) -> str:
    icon = _ICONS.get(view.state, "")
    cost = f"{usd(view.cost_usd)} of {usd(view.budget_usd)}"
    if view.state is JobState.SUCCEEDED:
        pr = f" — <{view.pr_url}|PR #{view.pr_number}>" if view.pr_url else ""
        return f"{icon} *Succeeded*{pr} · {cost}"
    if view.state in (JobState.FAILED, JobState.CANCELLED):
        reason = f" — {escape(view.failure_reason)}" if view.failure_reason else ""
        return f"{icon} *{view.state.value.capitalize()}*{reason} · {cost}"
    if view.cancel_requested:
        return f"{icon} *Cancelling…* · {cost}"
    if view.state is JobState.WAITING and (info := waiting_info(view.origin)) is not None:
        what = "an answer (reply in the thread)" if info["kind"] == "question" else "approval of the plan"
        return f"{icon} *Waiting for {what}* · {cost}"
    phase = f" — {_phase(view)}" if view.state is JobState.RUNNING and view.phase else ""
    return f"{icon} *{view.state.value.capitalize()}*{phase} · {cost}"


def _phase(view: JobView) -> str:
    if view.phase == "coding" and view.steps:
        return f"coding step {min(view.steps_done + 1, len(view.steps))}/{len(view.steps)}"
    return view.phase or ""


def parent_message(view: JobView, settings: Settings) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and blocks of the job's parent message."""
    issue = f" · issue #{view.issue_number}" if view.issue_number else ""
    round_ = f" · {escape(view.round)}" if view.round else ""
    header = f"*{escape(view.title)}*\n`{view.repo}`{issue}{round_} · asked by {who_asked(view)}"
    status = f"{status_line(view)} · job `{short_id(view.id)}`"
    buttons: list[dict[str, Any]] = []
    if not view.terminal and not view.cancel_requested:
        confirm = {
            "title": {"type": "plain_text", "text": "Cancel this job?"},
            "text": {"type": "plain_text", "text": "Work done so far is kept on its branch."},
            "confirm": {"type": "plain_text", "text": "Cancel job"},
            "deny": {"type": "plain_text", "text": "Keep going"},
        }
        buttons.append(_job_button(CANCEL_ACTION, "Cancel", view.id, "danger", confirm=confirm))
    buttons.append(
        {
            "type": "button",
            "action_id": DETAILS_ACTION,
            "text": {"type": "plain_text", "text": "Details"},
            "url": details_url(settings, view),
        }
    )
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": header}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": status}]},
        {"type": "actions", "block_id": f"job:{view.id}", "elements": buttons},
    ]
    text = f"{view.title} ({view.repo}): {view.state.value}"
    return text, blocks


def digest(text: str, blocks: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps([text, blocks], sort_keys=True).encode()).hexdigest()[:16]


def thread_replies(view: JobView, settings: Settings) -> list[tuple[str, str]]:
    """(key, text) of every reply the thread should have by now, in order; each key is posted once."""
    replies: list[tuple[str, str]] = []
    steps = (view.plan or {}).get("steps") or []
    if steps:
        lines = [f"{i}. {escape(str(s.get('title', '')))}" for i, s in enumerate(steps, 1)]
        replies.append(("plan", f":clipboard: *Plan* ({len(steps)} steps)\n" + "\n".join(lines)))
    if view.state is JobState.WAITING and (info := waiting_info(view.origin)) is not None:
        replies.append(_waiting_reply(view, info))
    if view.sandbox_notice:
        replies.append(("sandbox", f":warning: {escape(view.sandbox_notice)}"))
    total = len(view.steps) or len(steps)
    for step in view.steps:
        if step.state not in STEP_ICONS:
            continue
        replies.append((f"step:{step.index}:{step.state}", _step_text(view, step.index, total)))
    if view.terminal:
        replies.append((f"final:{view.state.value}", _final_text(view, settings)))
    return replies


def _waiting_reply(view: JobView, info: dict[str, Any]) -> tuple[str, str]:
    mention = f"<@{view.requester}> " if view.trigger == "slack" else ""
    deadline = str(info.get("deadline", ""))[:16].replace("T", " ")
    if info["kind"] == "question":
        text = (
            f":question: {mention}Before planning, a question:\n> {escape(str(info.get('text', '')))}\n"
            f"Reply in this thread to answer; unanswered, the job is cancelled at {deadline} UTC."
        )
        return f"question:{info['id']}", text
    text = (
        f":raised_hand: {mention}The plan above waits for approval before any code is written. "
        f"Approve it here (or `@app go` / :+1: on the issue); unanswered, it is cancelled at {deadline} UTC."
    )
    return f"approval:{info['id']}", text


def thread_blocks(view: JobView, key: str, text: str) -> list[dict[str, Any]] | None:
    """Blocks for a thread reply that needs buttons: a plan awaiting approval gets Approve and Cancel."""
    if not key.startswith("approval:"):
        return None
    buttons = [
        _job_button(APPROVE_ACTION, "Approve", view.id, "primary"),
        _job_button(CANCEL_ACTION, "Cancel", view.id, "danger"),
    ]
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "actions", "block_id": f"approve:{view.id}", "elements": buttons},
    ]


def _job_button(action_id: str, label: str, job_id: str, style: str, **extra: Any) -> dict[str, Any]:
    """A button that acts on a job (bot/listeners/actions.py reads the job from its value)."""
    text = {"type": "plain_text", "text": label}
    return {"type": "button", "action_id": action_id, "text": text, "style": style, "value": job_id, **extra}


def _step_text(view: JobView, index: int, total: int) -> str:
    step = next(s for s in view.steps if s.index == index)
    icon = STEP_ICONS.get(step.state, ":grey_question:")
    text = f"{icon} Step {index + 1}/{total} {step.state}: {escape(step.title)}"
    if step.commit_sha:
        text += f" (`{step.commit_sha[:7]}`)"
    elif step.state == "done":
        text += " (no changes)"
    if step.test_passed is not None:
        command = f" `{escape(step.test_command)}`" if step.test_command else ""
        verdict = "passed" if step.test_passed else "failed"
        rounds = f" after {step.repair_rounds} repair rounds" if step.repair_rounds else ""
        text += f"\n:test_tube: Tests{command} {verdict}{rounds}"
    if step.error:
        text += f"\n> {escape(step.error[:300])}"
    return text + f"\n:moneybag: {usd(view.cost_usd)} so far of {usd(view.budget_usd)}"


def _final_text(view: JobView, settings: Settings) -> str:
    mention = f"<@{view.requester}> " if view.trigger == "slack" else ""
    cost = f"{usd(view.cost_usd)} spent, {view.requests} LLM requests"
    if view.state is JobState.SUCCEEDED:
        if view.pr_url:
            return f":tada: {mention}PR ready: <{view.pr_url}|#{view.pr_number}> ({cost})"
        return f":white_check_mark: {mention}Done, nothing needed changing ({cost})"
    reason = escape(view.failure_reason or "no reason given")
    pr = f" What was done is in <{view.pr_url}|PR #{view.pr_number}>." if view.pr_url else ""
    link = f" <{details_url(settings, view)}|Details>"
    if view.state is JobState.CANCELLED:
        return f":no_entry_sign: {mention}Cancelled: {reason}.{pr} ({cost}){link}"
    return f":x: {mention}Failed: {reason}.{pr} ({cost}){link}"
