"""One step of a plan: context → coder (tool loop) → the repository's tests → commit → push.

The step is the job's checkpoint: its commit is pushed and the PR updated before the step is marked done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from engine import events, tracing
from engine.agents.briefing import gather_context, save_note
from engine.agents.coder import StepBrief, code_step
from engine.agents.instructions import Instruction, as_prompt, instruction_files
from engine.agents.planner import Plan
from engine.agents.rules import AgentRules
from engine.agents.tools import ToolBox
from engine.errors import ModelRefused
from engine.llm.client import LLMClient
from engine.pipeline.environment import JobEnvironment, SetupFailed
from engine.pipeline.jobrun import JobRun
from engine.pipeline.publish import Publisher
from engine.pipeline.review import ReviewLedger, review_comments_of
from engine.repo_config import RepoConfig
from engine.states import JobKind, StepState
from engine.store.models import Job, utcnow
from engine.views import StepView
from engine.workspace.commands import TestResult, run_tests
from engine.workspace.git import Worktree, git
from engine.workspace.guard import EditGuard
from engine.workspace.sandbox import CommandRunner

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    run: JobRun
    job: Job
    tree: Worktree
    llm: LLMClient
    rules: AgentRules
    config: RepoConfig
    # The repository's instruction files for the job as a whole (a step may have a nearer AGENTS.md).
    instructions: list[Instruction]
    test_command: str | None
    # Where the repository's commands run; None: no sandbox could start, so they do not run.
    runner: CommandRunner | None
    publisher: Publisher
    # The context engine's diagnostics on the job's row; only this run writes them, so they are kept here
    # and written with each context event instead of read back first.
    diagnostics: list[Any] = field(default_factory=list)
    # The repository's setup and the environment it prepared for the tests; None when no test runs.
    environment: JobEnvironment | None = None


async def run_step(jc: JobContext, plan: Plan, index: int, saved: StepView | None) -> None:
    with tracing.span("autodev.step", {"autodev.job_id": jc.job.id, "autodev.step_index": index}):
        await _run_step(jc, plan, index, saved)


async def _run_step(jc: JobContext, plan: Plan, index: int, saved: StepView | None) -> None:
    run, job, step = jc.run, jc.job, plan.steps[index]
    # A done step either committed (and the branch has its commit) or changed nothing.
    if (
        saved
        and saved.state == StepState.DONE
        and (saved.commit_sha is None or await jc.tree.contains(saved.commit_sha))
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
    context = await build_context(
        jc, query=f"{job.task}\n{step.title}\n{step.acceptance}", step_index=index, named=step.files
    )
    # A nearer AGENTS.md governs the files this step is about (the convention): the coder is told that one.
    told = instruction_files(jc.tree.path, step.files) if step.files else jc.instructions
    if told != jc.instructions:
        await run.emit(events.INSTRUCTIONS, {"files": [i.summary() for i in told], "step_index": index})
    guard = EditGuard(jc.tree.path, jc.config.protected_paths)
    last_test: list[TestResult] = []

    async def step_tests(round_: int) -> TestResult | None:
        try:
            result = await _tests(jc, index, total, round_)
        except SetupFailed as exc:
            last_test[:] = [exc.result]
            raise
        last_test[:] = [result] if result else []
        return result

    async def tool_tests() -> TestResult | None:
        if not jc.test_command:
            return None
        await run.check_cancel_recent()
        try:
            return await _execute_tests(jc)
        except SetupFailed as exc:  # the model is told; its next test round ends the step
            return exc.result

    async def remember(kind: str, text: str) -> None:
        await save_note(run.store, repo=job.repo, job_id=job.id, kind=kind, text=text)
        await run.emit(events.NOTE, {"kind": kind, "text": text})

    comments = review_comments_of(job)
    ledger = ReviewLedger(run, comments) if comments else None
    tools = ToolBox(
        guard,
        emit=run.emit,
        run_tests=tool_tests,
        remember=remember,
        review=ledger.record if ledger is not None else None,
    )
    try:
        outcome = await code_step(
            StepBrief(index, step, plan, task_text(job), context),
            llm=jc.llm,
            rules=jc.rules,
            conventions=as_prompt(told),
            tools=tools,
            run_tests=step_tests,
            check_cancel=run.check_cancel_recent,
            repair_rounds=run.settings.repair_rounds,
            max_turns=run.settings.coder_max_turns,
        )
        # Nothing to commit (no edit, every edit refused or undone): the step is done and says so; an empty
        # commit would only clutter the PR.
        changed = sorted(guard.changed)
        sha = None
        if changed and await _has_changes(jc.tree, changed):
            message = f"{step.title}\n\nautodev job {job.id}, step {index + 1} of {total}"
            sha = await jc.tree.commit(message, changed)
    except Exception as exc:
        # Whatever ends the step (a limit, a refusal, a git failure, a bug) ends it `failed` (`refused` for a
        # refusal), never `running`.
        reason = getattr(exc, "reason", None) or f"internal error: {type(exc).__name__}: {exc}"
        test = last_test[0] if last_test else None
        state = StepState.REFUSED if isinstance(exc, ModelRefused) else StepState.FAILED
        await run.store.save_step(
            job.id,
            index,
            state=state.value,
            error=reason[:4000],
            refused_edits=tools.refused,
            test_passed=test.passed if test else None,
            finished_at=utcnow(),
        )
        finished: dict[str, Any] = {"index": index, "state": state.value, "error": reason[:500]}
        if isinstance(exc, ModelRefused):
            finished["refusal"] = exc.refusal[:1000]
        await run.emit(events.STEP_FINISHED, finished)
        raise
    if sha is None:
        await run.store.save_step(
            job.id,
            index,
            state=StepState.DONE.value,
            repair_rounds=outcome.repair_rounds,
            refused_edits=tools.refused,
            finished_at=utcnow(),
        )
        await run.emit(events.STEP_FINISHED, {"index": index, "state": "done", "no_changes": True})
        return
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


async def _has_changes(tree: Worktree, paths: list[str]) -> bool:
    """Whether committing `paths` would change anything: an edit, a deletion, a new (even ignored) file."""
    where = (f"--git-dir={tree.gitdir}", f"--work-tree={tree.path}")
    listed = ("status", "--porcelain", "--ignored", "--untracked-files=all", "--", *paths)
    return bool((await git(*where, *listed, cwd=tree.path)).strip())


async def _tests(jc: JobContext, index: int, total: int, round_: int) -> TestResult | None:
    if not jc.test_command:
        return None
    run = jc.run
    await run.set_phase("testing", {"step": index + 1, "of": total})
    failed: SetupFailed | None = None
    try:
        result = await _execute_tests(jc)
    except SetupFailed as exc:  # no test round after this one: the step fails with the setup's log
        failed, result = exc, exc.result
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
    if failed is not None:
        raise failed
    return result


async def _execute_tests(jc: JobContext) -> TestResult:
    settings = jc.run.settings
    assert jc.test_command is not None and jc.runner is not None
    options = await jc.environment.ready() if jc.environment is not None else None
    with tracing.span(
        "autodev.tests", {"autodev.job_id": jc.job.id, "autodev.runner": jc.runner.name}
    ) as span:
        result = await run_tests(
            jc.test_command,
            jc.tree.path,
            runner=jc.runner,
            settings=settings,
            network=jc.config.network,
            readonly=[jc.tree.mirror],  # the worktree's git metadata: `git status` works, nothing is written
            secrets=settings.secret_values(),
            options=options,
        )
        span.set({"autodev.tests.passed": result.passed, "autodev.tests.exit_code": result.exit_code})
        if not result.passed:
            span.error(result.reason or "the tests failed")
        return result


async def build_context(jc: JobContext, *, query: str, step_index: int | None, named: list[str]) -> str:
    run = jc.run
    ctx = await gather_context(
        settings=run.settings,
        store=run.store,
        worktree=jc.tree.path,
        repo=jc.job.repo,
        query=query,
        job_id=jc.job.id,
        named_files=named,
        llm=jc.llm,
        step_index=step_index,
        model=jc.llm.model_for("planner" if step_index is None else "coder"),
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


def task_text(job: Job) -> str:
    text = f"{job.title}\n\n{job.task}".strip() if job.task.strip() != job.title.strip() else job.title
    if job.kind == JobKind.REVISE:
        text = f"Revise the existing pull request on branch {job.branch}:\n{text}"
    return text
