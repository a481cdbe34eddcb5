"""The pipeline every trigger runs: prepare → plan → (code → test → commit → push) per step → publish.

Each finished step is a checkpoint (a commit on the pushed branch plus a `done` step row), so a job run
again after a crash skips what is done; pushing the same commits again and finding the PR first make the
publishing side idempotent too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import events
from engine.agents import AgentRules, load_agent_rules, repo_conventions
from engine.budget import BudgetGuard
from engine.coder import StepBrief, code_step
from engine.errors import JobStopped, LimitReached, PermanentFailure, TransientFailure
from engine.llm import LLMClient
from engine.models import Job, JobKind, StepState, utcnow
from engine.planner import Plan, make_plan
from engine.ports import GitRemote
from engine.prompts import gather_context, save_note
from engine.publish import Publisher
from engine.repo_config import CONFIG_PATH, RepoConfig, parse_repo_config
from engine.sandbox import Sandbox
from engine.testrun import TestResult, detect_test_command, run_tests
from engine.tools import ToolBox
from engine.views import JobView, StepView
from engine.workspace import Workspace, Worktree, branch_name

if TYPE_CHECKING:
    from engine.runner import JobRun

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    run: JobRun
    job: Job
    tree: Worktree
    llm: LLMClient
    rules: AgentRules
    config: RepoConfig
    conventions: str
    test_command: str | None
    publisher: Publisher
    # The context engine's diagnostics on the job's row; only this run writes them, so they are kept here
    # and written with each context event instead of read back first.
    diagnostics: list[Any] = field(default_factory=list)


async def run_pipeline(run: JobRun) -> None:
    store, settings = run.store, run.settings
    job = run.job if run.job is not None else await store.get(run.job_id)
    rules = load_agent_rules()
    await run.set_phase("preparing", fields={"agents_md_hash": rules.sha256})
    # The code host is chosen by the job's repository and installation, which the row read says.
    host = await run.deps.code_host_for(JobView.of(job, [], [], []))
    job = await _with_issue_text(run, job, host)
    remote = await host.remote(job.repo)
    default_branch = await host.default_branch(job.repo)
    workspace = Workspace(settings)
    mirror = await workspace.sync(job.repo, remote)
    config = parse_repo_config(await workspace.read_file(mirror, default_branch, CONFIG_PATH))
    base = job.base_branch or config.base_branch or default_branch
    branch = job.branch or branch_name(job.id, job.title, job.issue_number)
    await store.update(job.id, branch=branch, base_branch=base)
    llm = LLMClient(
        settings=settings,
        job_id=job.id,
        repo=job.repo,
        guard=BudgetGuard(store, settings, job.id, budget_cap_usd=config.budget_usd),
        check_cancel=run.check_cancel,
        record_cost=run.record_llm_call,
    )
    publisher = Publisher(run, host, repo=job.repo, branch=branch, base=base)
    try:
        await _work(run, job, workspace, mirror, remote, llm, rules, config, publisher)
    finally:
        await llm.aclose()


async def _work(
    run: JobRun,
    job: Job,
    workspace: Workspace,
    mirror: Path,
    remote: GitRemote,
    llm: LLMClient,
    rules: AgentRules,
    config: RepoConfig,
    publisher: Publisher,
) -> None:
    branch, base = publisher.branch, publisher.base
    async with workspace.worktree(mirror, job.id, branch=branch, base=base, remote=remote) as tree:
        conventions = repo_conventions(tree.path)
        agents_md = (
            (tree.path / "AGENTS.md").read_text(errors="replace")
            if (tree.path / "AGENTS.md").is_file()
            else None
        )
        jc = JobContext(
            run=run,
            job=job,
            tree=tree,
            llm=llm,
            rules=rules,
            config=config,
            conventions=conventions,
            test_command=config.test_command or detect_test_command(tree.path, agents_md),
            publisher=publisher,
            diagnostics=list(job.context_diagnostics or []),
        )
        plan: Plan | None = None
        try:
            plan, planned_now = await _plan(jc)
            # A plan made just now has no step done; a resumed job's steps are read once, here.
            saved = (
                {}
                if planned_now
                else {s.index: s for s in (await run.store.view(job.id, with_events=False)).steps}
            )
            for index in range(len(plan.steps)):
                await _run_step(jc, plan, index, saved.get(index))
        except LimitReached as exc:
            await run.emit(events.LIMIT, {"limit": exc.limit, "reason": exc.reason})
            if plan is not None and await _committed_steps(jc):
                # Keep what is done: the branch is pushed already; the PR stays a draft and says why.
                await publisher.sync_pr(
                    plan, ready=False, note=f"Stopped early by the {exc.limit} limit: {exc.reason}"
                )
            raise
        await run.set_phase("publishing")
        await publisher.push(tree)
        await publisher.sync_pr(plan, ready=True)


async def _plan(jc: JobContext) -> tuple[Plan, bool]:
    """The job's plan, and whether it was made just now."""
    job = jc.job
    if job.plan:  # a resumed job keeps the plan its done steps were made for
        return Plan.model_validate(job.plan), False
    await jc.run.set_phase("planning", unless_cancelled=True)
    context = await _context(jc, query=f"{job.title}\n{job.task}", step_index=None, named=[])
    plan = await make_plan(
        jc.llm, jc.rules, conventions=jc.conventions, task=_task_text(job), context=context
    )
    data = plan.model_dump()
    steps = {
        i: {"title": s.title, "rationale": s.rationale, "acceptance": s.acceptance, "files": s.files}
        for i, s in enumerate(plan.steps)
    }
    # The plan, its event and its steps: one transaction.
    await jc.run.emit(events.PLAN, {"steps": data["steps"]}, fields={"plan": data}, steps=steps)
    return plan, True


async def _run_step(jc: JobContext, plan: Plan, index: int, saved: StepView | None) -> None:
    run, job, step = jc.run, jc.job, plan.steps[index]
    if (
        saved
        and saved.state == StepState.DONE
        and saved.commit_sha
        and await jc.tree.contains(saved.commit_sha)
    ):
        log.info("step %d already done; skipping", index, extra={"job_id": job.id})
        return
    total = len(plan.steps)
    running = {"title": step.title, "state": StepState.RUNNING.value, "started_at": utcnow(), "error": None}
    # A cancel stops the job here, before the step starts: the write below checks the flag and does nothing.
    await run.set_phase(
        "coding",
        {"step": index + 1, "of": total},
        steps={index: running},
        then=[(events.STEP_STARTED, {"index": index, "title": step.title})],
        unless_cancelled=True,
    )
    context = await _context(
        jc, query=f"{job.task}\n{step.title}\n{step.acceptance}", step_index=index, named=step.files
    )
    sandbox = Sandbox(jc.tree.path, jc.config.protected_paths)
    last_test: list[TestResult] = []

    async def step_tests(round_: int) -> TestResult | None:
        result = await _tests(jc, index, total, round_)
        last_test[:] = [result] if result else []
        return result

    async def tool_tests() -> TestResult | None:
        if not jc.test_command:
            return None
        await run.check_cancel_recent()
        return await _execute_tests(jc)

    async def remember(kind: str, text: str) -> None:
        await save_note(run.store, repo=job.repo, job_id=job.id, kind=kind, text=text)
        await run.emit(events.NOTE, {"kind": kind, "text": text})

    tools = ToolBox(sandbox, emit=run.emit, run_tests=tool_tests, remember=remember)
    try:
        outcome = await code_step(
            StepBrief(index, step, plan, _task_text(job), context),
            llm=jc.llm,
            rules=jc.rules,
            conventions=jc.conventions,
            tools=tools,
            run_tests=step_tests,
            check_cancel=run.check_cancel_recent,
            repair_rounds=run.settings.repair_rounds,
            max_turns=run.settings.coder_max_turns,
        )
    except JobStopped as exc:
        test = last_test[0] if last_test else None
        await run.store.save_step(
            job.id,
            index,
            state=StepState.FAILED.value,
            error=exc.reason[:4000],
            refused_edits=tools.refused,
            test_passed=test.passed if test else None,
            finished_at=utcnow(),
        )
        await run.emit(events.STEP_FINISHED, {"index": index, "state": "failed", "error": exc.reason[:500]})
        raise
    sha = await jc.tree.commit(
        f"{step.title}\n\nautodev job {job.id}, step {index + 1} of {total}", sorted(sandbox.changed)
    )
    await run.store.save_step(
        job.id,
        index,
        state=StepState.DONE.value,
        commit_sha=sha,
        diff=await jc.tree.diff(sha),
        repair_rounds=outcome.repair_rounds,
        refused_edits=tools.refused,
        finished_at=utcnow(),
    )
    # Published before the step is announced, so a cancel or crash after this point keeps the work.
    await jc.publisher.push(jc.tree)
    await jc.publisher.sync_pr(plan, ready=False)
    await run.emit(events.STEP_FINISHED, {"index": index, "state": "done", "commit_sha": sha})


async def _tests(jc: JobContext, index: int, total: int, round_: int) -> TestResult | None:
    if not jc.test_command:
        return None
    run = jc.run
    await run.set_phase("testing", {"step": index + 1, "of": total})
    result = await _execute_tests(jc)
    outcome = {
        "test_command": result.command,
        "test_output": result.output,
        "test_passed": result.passed,
        "repair_rounds": round_,
    }
    await run.emit(
        events.TESTS,
        {
            "index": index,
            "command": result.command,
            "passed": result.passed,
            "round": round_,
            "tail": result.tail(30),
        },
        steps={index: outcome},
    )
    return result


async def _execute_tests(jc: JobContext) -> TestResult:
    settings = jc.run.settings
    assert jc.test_command is not None
    return await run_tests(
        jc.test_command,
        jc.tree.path,
        timeout_seconds=settings.test_timeout_seconds,
        max_bytes=settings.test_output_max_bytes,
        secrets=settings.secret_values(),
    )


async def _context(jc: JobContext, *, query: str, step_index: int | None, named: list[str]) -> str:
    run = jc.run
    ctx = await gather_context(
        settings=run.settings,
        store=run.store,
        worktree=jc.tree.path,
        repo=jc.job.repo,
        query=query,
        job_id=jc.job.id,
        named_files=named,
    )
    diag = ctx.diagnostics
    summary: dict[str, Any] = {
        "step_index": step_index,
        "chosen": list(diag.get("chosen", []))[:50],
        "considered": diag.get("considered", diag.get("candidates_considered")),
        "tokens": ctx.tokens,
    }
    # The job page shows the full diagnostics (the row's column); the event carries only the summary.
    jc.diagnostics = [*jc.diagnostics, {"step_index": step_index, **diag}][-50:]
    await run.emit(events.CONTEXT, summary, fields={"context_diagnostics": jc.diagnostics})
    return ctx.text


async def _committed_steps(jc: JobContext) -> int:
    view = await jc.run.store.view(jc.job.id, with_events=False)
    return sum(1 for s in view.steps if s.state == StepState.DONE and s.commit_sha)


async def _with_issue_text(run: JobRun, job: Job, host: Any) -> Job:
    """A job on an issue gets the issue's text and comments as its task, read once when it first starts.

    From Slack (`owner/repo#123`) the issue's text is the task, so failing to read it fails the job. From a
    GitHub webhook the task already holds the title and body; the comments are read here rather than in
    the webhook, and if GitHub cannot give them the job goes on with what the webhook said."""
    fetch = getattr(host, "issue_text", None)
    if (
        job.issue_number is None
        or fetch is None
        or job.kind != JobKind.IMPLEMENT.value
        or job.origin.get("issue_text_fetched")
    ):
        return job
    required = job.trigger == "slack"
    try:
        text = await fetch(job.repo, job.issue_number)
    except TransientFailure:
        if required:
            raise
        log.warning("could not read issue #%s's comments; going on with the webhook's text", job.issue_number)
        return job
    except Exception as exc:
        if not required:
            log.warning("could not read issue #%s's comments (%s); going on", job.issue_number, exc)
            return job
        reason = exc.reason if isinstance(exc, JobStopped) else str(exc)
        raise PermanentFailure(f"could not read issue #{job.issue_number} of {job.repo}: {reason}") from exc
    if required and not job.task.startswith(f"Resolve issue #{job.issue_number}"):
        text = f"{text}\n\nFurther instructions from the requester:\n{job.task}"
    await run.store.update(job.id, task=text, origin={**job.origin, "issue_text_fetched": True})
    return await run.store.get(job.id)


def _task_text(job: Job) -> str:
    text = f"{job.title}\n\n{job.task}".strip() if job.task.strip() != job.title.strip() else job.title
    if job.kind == "revise":
        text = f"Revise the existing pull request on branch {job.branch}:\n{text}"
    return text
