"""`autodev run --repo PATH "<task>"`: one job on a local git repository, in this process, no services."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import time
from pathlib import Path
from typing import TextIO

from engine import events
from engine.llm.money import usd
from engine.settings import Settings
from engine.views import JobEventView, JobView

NO_LLM_HELP = """\
autodev run needs an LLM. Configure one of:
  OPENAI_API_KEY=sk-...                                  (OpenAI)
  OPENAI_BASE_URL=http://localhost:11434/v1              (an Ollama server; any key works)
  OPENAI_BASE_URL=http://localhost:8000/v1               (a vLLM or other OpenAI-compatible server)
and pick models with MODEL_PLANNER / MODEL_CODER (a local model also needs a price: see PRICING_FILE).
Set them in the environment or in .env."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    help_text = "plan, code, test and commit a task on a local git repository, leaving a branch behind"
    sub = subparsers.add_parser("run", help=help_text, description=help_text)
    sub.add_argument("--repo", required=True, type=Path, help="path to a local git repository")
    sub.add_argument("--budget", type=float, default=None, help="dollar budget for this job")
    sub.add_argument("task", help="what to do, in plain words")
    sub.set_defaults(handler=main)


def main(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.llm_configured:
        print(NO_LLM_HELP, file=sys.stderr)
        return 2
    repo = Path(args.repo).expanduser().resolve()
    if not (repo / ".git").exists():
        print(f"autodev run: {repo} is not a git repository", file=sys.stderr)
        return 2
    if args.budget is not None and args.budget <= 0:
        print("autodev run: --budget must be a positive number of dollars", file=sys.stderr)
        return 2
    return asyncio.run(run_local(settings, repo, args.task, args.budget))


async def run_local(settings: Settings, repo: Path, task: str, budget: float | None) -> int:
    from engine import tracing
    from engine.errors import TransientFailure
    from engine.pipeline.run import EngineDeps, fail_job, run_job
    from engine.store.db import make_engine, make_sessionmaker, upgrade
    from engine.store.jobs import JobLimits, JobRequest, JobStore
    from engine.store.models import JobState
    from engine.workspace.local_host import LocalCodeHost

    await upgrade(settings.database_url)
    tracing.start()
    engine = make_engine(settings.database_url)
    try:
        store = JobStore(
            make_sessionmaker(engine),
            JobLimits(settings.job_budget_usd, settings.job_max_requests, settings.job_max_minutes),
        )
        title = task.strip().splitlines()[0][:200] or "task"
        key = hashlib.sha256(f"{repo}\n{task}\n{time.time_ns()}".encode()).hexdigest()[:40]
        job, _ = await store.submit(
            JobRequest(
                dedupe_key=f"cli:{key}",
                trigger="cli",
                repo=f"local:{repo}",
                title=title,
                task=task,
                requester="cli",
                budget_usd=budget,
            )
        )
        host = LocalCodeHost(repo)

        async def code_host_for(view: object) -> LocalCodeHost:
            return host

        print(f"job {job.id} on {repo}", flush=True)
        progress = Progress()
        deps = EngineDeps(settings, store, code_host_for=code_host_for, reporters_for=lambda view: [progress])
        try:
            state = await run_job(job.id, deps)
        except TransientFailure as exc:
            # No worker will retry a CLI job later: it ends here, with the reason (e.g. "rate limited").
            state = await fail_job(job.id, deps, exc.reason)
        view = await store.view(job.id, with_events=False)
    finally:
        await engine.dispose()
        await asyncio.to_thread(tracing.shutdown)
    _print_summary(view)
    return 0 if state is JobState.SUCCEEDED else 1


class Progress:
    """A reporter that prints a line as the job goes: phases, steps, test rounds, cost so far."""

    name = "cli"

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.started = time.monotonic()

    async def on_event(self, view: JobView, event: JobEventView) -> None:
        line = self.describe(view, event)
        if line:
            elapsed = time.monotonic() - self.started
            print(f"[{elapsed:6.1f}s {usd(view.cost_usd)}] {line}", file=self.out, flush=True)

    @staticmethod
    def describe(view: JobView, event: JobEventView) -> str | None:
        data = event.data
        if event.type == events.PHASE:
            where = f" step {data['step']}/{data['of']}" if "step" in data else ""
            return f"{data.get('phase')}{where}"
        if event.type == events.PLAN:
            steps = data.get("steps") or []
            assert isinstance(steps, list)
            return f"plan: {len(steps)} steps" + "".join(
                f"\n    {i + 1}. {s.get('title')}" for i, s in enumerate(steps)
            )
        if event.type == events.STEP_FINISHED:
            error = f": {data['error']}" if data.get("error") else ""
            return f"step {int(str(data.get('index'))) + 1} {data.get('state')}{error}"
        if event.type == events.TESTS:
            verdict = "passed" if data.get("passed") else "failed"
            return f"tests round {data.get('round')}: {verdict} ({data.get('command')})"
        if event.type == events.EDIT_REFUSED:
            return f"edit refused: {data.get('path')} ({data.get('reason')})"
        if event.type in (events.LIMIT, events.RETRYING):
            return f"{event.type}: {data.get('reason')}"
        if event.type == events.STATE:
            reason = f" — {data['reason']}" if data.get("reason") else ""
            return f"{data.get('state')}{reason}"
        return None


def _print_summary(view: JobView) -> None:
    if view.plan:
        print("\nplan:")
        for i, step in enumerate(view.plan.get("steps", [])):
            print(f"  {i + 1}. {step.get('title')}")
    if view.steps:
        print("\nsteps:")
    for step in view.steps:
        sha = (step.commit_sha or "")[:10]
        tests = {True: "tests passed", False: "tests failed", None: "no tests"}[step.test_passed]
        line = f"  {step.index + 1}. [{step.state}] {step.title} {sha} ({tests}"
        line += f", {step.repair_rounds} repair rounds)" if step.repair_rounds else ")"
        print(line)
        if step.error:
            print("     " + step.error.splitlines()[0][:200])
    print(
        f"\ntokens: {view.tokens_in:,} in, {view.tokens_out:,} out; {view.requests} LLM calls; "
        f"{usd(view.cost_usd)}"
    )
    print(f"state: {view.state.value}" + (f" — {view.failure_reason}" if view.failure_reason else ""))
    if view.branch and view.steps_done:
        print(f"branch left behind: {view.branch}  (git log {view.branch})")
