"""The text of the sticky issue comment and the check run, rendered from the whole job each time."""

from __future__ import annotations

from engine.llm.money import usd
from engine.store.models import JobState
from engine.store.waits import waiting_info
from engine.views import JobView, StepView

MARKS = {"done": "✅", "running": "🔄", "failed": "❌", "skipped": "⏭️", "refused": "🚫"}
COMMENT_MARKER = "<!-- autodev:job -->"


def job_url(public_url: str, view: JobView) -> str:
    return f"{public_url.rstrip('/')}/jobs/{view.id}?t={view.access_token}"


def checklist(view: JobView) -> str:
    """The plan as a checklist with each step's state; the plan event's steps until steps are saved."""
    if view.steps:
        rows = [(s.title + _step_note(s), s.state) for s in view.steps]
    else:
        planned = (view.plan or {}).get("steps") or []
        rows = [(str(s.get("title", f"Step {i + 1}")), "pending") for i, s in enumerate(planned)]
    if not rows:
        return "_No plan yet._"
    lines = []
    for index, (title, state) in enumerate(rows, start=1):
        box = "x" if state == "done" else " "
        lines.append(f"- [{box}] {MARKS.get(state, '⏳')} {index}. {title}")
    return "\n".join(lines)


def _step_note(step: StepView) -> str:
    if step.state == "done" and not step.commit_sha:
        return " (no changes)"
    if step.state == "refused" and step.error:
        return f" — {step.error[:300]}"
    return ""


def cost_line(view: JobView) -> str:
    return f"{usd(view.cost_usd)} of {usd(view.budget_usd)} budget, {view.requests} LLM requests"


def status_line(view: JobView) -> str:
    if view.state is JobState.WAITING and (info := waiting_info(view.origin)) is not None:
        return "Waiting for an answer" if info["kind"] == "question" else "Waiting for approval of the plan"
    if view.state is JobState.RUNNING:
        return f"Running — {view.phase or 'starting'}"
    if view.state is JobState.FAILED:
        return f"Failed: {view.failure_reason or 'unknown reason'}"
    if view.state is JobState.CANCELLED and view.failure_reason:
        return f"Cancelled: {view.failure_reason}"
    return view.state.value.capitalize()


def check_title(view: JobView) -> str:
    done = f"{view.steps_done}/{len(view.steps)} steps" if view.steps else "planning"
    round_ = f"{view.round} · " if view.round else ""
    return f"{round_}{status_line(view)} · {done} · {usd(view.cost_usd)}"[:200]


def check_summary(view: JobView, public_url: str) -> str:
    return "\n\n".join(
        [
            *([f"Round: {view.round}"] if view.round else []),
            f"**{status_line(view)}**",
            *([f"⚠️ {view.sandbox_notice}"] if view.sandbox_notice else []),
            checklist(view),
            f"Cost so far: {cost_line(view)}",
            f"[Job page]({job_url(public_url, view)})",
        ]
    )


def next_steps(view: JobView, slug: str) -> str:
    if view.state is JobState.FAILED:
        return (
            f"To try again, comment `@{slug} retry` on the pull request or press **Retry** on the "
            "`autodev` check run; to change the task, edit the issue and relabel it."
        )
    if view.state is JobState.CANCELLED:
        return "The job was cancelled. Relabel the issue to start a new one."
    return ""


def comment_body(view: JobView, public_url: str, slug: str) -> str:
    round_ = f"{view.round} · " if view.round else ""
    parts = [COMMENT_MARKER, f"### autodev · {round_}{status_line(view)}", checklist(view)]
    if view.state is JobState.WAITING and (info := waiting_info(view.origin)) is not None:
        if info["kind"] == "question":
            parts.append(f"❓ {quote(str(info['text']))}\n\nAnswer in a comment on this issue.")
        else:
            parts.append(
                f"The plan waits for approval: comment `@{slug} go` or react 👍 to the plan's comment."
            )
    if view.sandbox_notice:
        parts.append(f"⚠️ {view.sandbox_notice}")
    parts.append(f"Cost: {cost_line(view)}")
    if view.pr_url:
        parts.append(f"Pull request: {view.pr_url}")
    if view.terminal and (hint := next_steps(view, slug)):
        parts.append(hint)
    parts.append(f"[Details]({job_url(public_url, view)})")
    return "\n\n".join(parts)


def quote(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.splitlines() or [""])


def wait_comment(view: JobView, info: dict[str, object], public_url: str, slug: str) -> str:
    """The comment that asks the job's question, or shows its plan for approval: a new comment each
    time, so the people on the issue are notified (the sticky comment is only edited)."""
    who = f"@{view.requester} " if view.trigger.startswith("github") else ""
    deadline = str(info.get("deadline", ""))[:16].replace("T", " ")
    cancel = f"`@{slug} cancel` stops the job; unanswered, it is cancelled at {deadline} UTC."
    if info.get("kind") == "question":
        return "\n\n".join(
            [
                f"{who}Before planning this, autodev has a question:",
                quote(str(info.get("text", ""))),
                "Answer in a comment on this issue (someone with write access): the first answer resumes "
                "the job, and the planner is given it.",
                cancel,
            ]
        )
    summary = (view.plan or {}).get("summary") or ""
    return "\n\n".join(
        [
            f"{who}autodev's plan for this is ready and waits for approval before any code is written:",
            *([quote(str(summary))] if summary else []),
            checklist(view),
            f"To start coding, comment `@{slug} go` (text after it amends the plan and is given to the "
            "coder) or react 👍 to this comment (someone with write access).",
            cancel,
            f"[Job page]({job_url(public_url, view)})",
        ]
    )
