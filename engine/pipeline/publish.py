"""Publishing a job's work: push the branch, open or update its PR (a draft until the job succeeds)."""

from __future__ import annotations

import logging

from engine import events
from engine.agents.planner import Plan
from engine.llm.money import usd
from engine.pipeline.jobrun import JobRun
from engine.ports import CodeHost, PullRequest
from engine.views import JobView
from engine.workspace.git import Worktree

log = logging.getLogger(__name__)


def job_link(public_url: str, view: JobView) -> str:
    return f"{public_url.rstrip('/')}/jobs/{view.id}?t={view.access_token}"


def pr_body(view: JobView, plan: Plan, public_url: str, note: str | None = None) -> str:
    done = {s.index for s in view.steps if s.state == "done"}
    summary = plan.summary.strip() or view.task.strip()[:1000] or view.title
    lines = [summary, "", "## Plan"]
    lines += [f"- [{'x' if i in done else ' '}] {i + 1}. {s.title}" for i, s in enumerate(plan.steps)]
    lines += [
        "",
        f"Cost: {usd(view.cost_usd)} ({view.tokens_in:,} tokens in, {view.tokens_out:,} out, "
        f"{view.requests} LLM requests)",
    ]
    if note:
        lines += ["", f"**{note}**"]
    if view.issue_number is not None:
        lines += ["", f"Closes #{view.issue_number}"]
    lines += ["", f"[Job page: plan, steps, diffs, test output, cost]({job_link(public_url, view)})"]
    return "\n".join(lines)


class Publisher:
    def __init__(self, run: JobRun, host: CodeHost, *, repo: str, branch: str, base: str) -> None:
        self.run = run
        self.host = host
        self.repo = repo
        self.branch = branch
        self.base = base
        # LocalCodeHost (autodev run) has branches but no pull requests.
        self.supports_prs = bool(getattr(host, "supports_pull_requests", True))

    async def push(self, tree: Worktree) -> str:
        sha = await tree.push()
        # Only a CI failure on a commit autodev pushed starts a fix round (github_app.ci_failures).
        await self.run.store.record_push(repo=self.repo, sha=sha, job_id=self.run.job_id, branch=self.branch)
        await self.run.emit(events.PUSHED, {"branch": self.branch, "head_sha": sha}, fields={"head_sha": sha})
        return sha

    async def sync_pr(self, plan: Plan, *, ready: bool, note: str | None = None) -> PullRequest | None:
        """Open the PR as a draft (found first, so a retried job never opens two) or refresh its body."""
        if not self.supports_prs:
            return None
        view = await self.run.store.view(self.run.job_id, with_events=False)
        body = pr_body(view, plan, self.run.settings.public_url, note)
        pr = await self.host.find_pull_request(self.repo, self.branch)
        created = pr is None
        if pr is None:
            pr = await self.host.open_pull_request(
                self.repo, head=self.branch, base=self.base, title=view.title, body=body, draft=not ready
            )
        else:
            pr = await self.host.update_pull_request(
                self.repo, pr.number, body=body, draft=False if ready and pr.draft else None
            )
        await self.run.emit(
            events.PR,
            {"number": pr.number, "url": pr.url, "draft": pr.draft, "created": created},
            fields={"pr_number": pr.number, "pr_url": pr.url},
        )
        return pr
