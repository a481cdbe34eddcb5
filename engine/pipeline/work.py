"""The pipeline every trigger runs: prepare → plan → (code → test → commit → push) per step → publish.

Each finished step is a checkpoint (a commit on the pushed branch plus a `done` step row), so a job run
again after a crash skips what is done; pushing the same commits again and finding the PR first make the
publishing side idempotent too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from engine import events, tracing
from engine.agents.instructions import as_prompt, instruction_files
from engine.agents.planner import Plan, PlannerQuestion, make_plan
from engine.agents.rules import AgentRules, load_agent_rules
from engine.errors import JobStopped, JobWaits, LimitReached, ModelRefused, PermanentFailure, TransientFailure
from engine.llm.budget import BudgetGuard
from engine.llm.client import LLMClient
from engine.pipeline.environment import JobEnvironment
from engine.pipeline.jobrun import JobRun
from engine.pipeline.publish import Publisher
from engine.pipeline.review import answer_review
from engine.pipeline.step import JobContext, build_context, run_step, task_text
from engine.pipeline.waiting import may_wait, needs_approval
from engine.ports import GitRemote
from engine.repo_config import CONFIG_PATH, RepoConfig, parse_repo_config
from engine.store.models import Job, JobKind, StepState
from engine.store.reads import job_view
from engine.store.waits import MAX_QUESTIONS, questions_asked
from engine.workspace.commands import command_runner, detect_test_command
from engine.workspace.git import Workspace, branch_name
from engine.workspace.sandbox import CommandRunner, SandboxUnavailable

log = logging.getLogger(__name__)


async def run_pipeline(run: JobRun) -> None:
    store, settings = run.store, run.settings
    job = run.job if run.job is not None else await store.get(run.job_id)
    rules = load_agent_rules()
    await run.set_phase("preparing", fields={"agents_md_hash": rules.sha256})
    # The code host is chosen by the job's repository and installation, which the row read says.
    host = await run.deps.code_host_for(job_view(job, [], [], []))
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
        told = instruction_files(tree.path)
        await run.emit(events.INSTRUCTIONS, {"files": [i.summary() for i in told]})
        agents_md = next((i.text for i in told if i.path == "AGENTS.md"), None)
        test_command = config.test_command or detect_test_command(tree.path, agents_md)
        runner, sandbox = await _sandbox(run, config, test_command)
        environment = (
            JobEnvironment(run, tree, config, runner, sandbox, job.repo) if runner and test_command else None
        )
        jc = JobContext(
            run=run,
            job=job,
            tree=tree,
            llm=llm,
            rules=rules,
            config=config,
            instructions=told,
            test_command=test_command if runner is not None else None,
            runner=runner,
            publisher=publisher,
            diagnostics=list(job.context_diagnostics or []),
            environment=environment,
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
                await run_step(jc, plan, index, saved.get(index))
        except (LimitReached, ModelRefused) as exc:
            if isinstance(exc, LimitReached):
                await run.emit(events.LIMIT, {"limit": exc.limit, "reason": exc.reason})
                note = f"Stopped early by the {exc.limit} limit: {exc.reason}"
            else:
                note = f"Stopped early: {exc.reason}"
            if plan is not None and await _committed_steps(jc):
                # Keep what is done: the branch is pushed already; the PR stays a draft and says why.
                await publisher.sync_pr(plan, ready=False, note=note)
            raise
        finally:
            if environment is not None:
                await environment.aclose()
        await run.set_phase("publishing")
        if job.kind != JobKind.REVISE.value and not await _committed_steps(jc):
            # Every step changed nothing: there is no branch to push and no pull request to open.
            log.info("no step changed anything; nothing to publish", extra={"job_id": job.id})
            return
        with tracing.span("autodev.publish", {"autodev.job_id": job.id}):
            sha = await publisher.push(tree)
            pr = await publisher.sync_pr(plan, ready=True)
        committed = await _committed_steps(jc) > 0
        await answer_review(run, publisher.host, job, pr, sha if committed else None)


async def _sandbox(
    run: JobRun, config: RepoConfig, test_command: str | None
) -> tuple[CommandRunner | None, dict[str, Any]]:
    """The runner for the repository's commands, recorded on the job (the check run, Slack and the job
    page show it); None when no sandbox can start: the job goes on without running them, and says so."""
    try:
        runner: CommandRunner | None = command_runner(run.settings)
        problem = None
    except SandboxUnavailable as exc:
        runner, problem = None, f"tests not run: no sandbox — {exc}"
        log.warning("%s", problem, extra={"job_id": run.job_id})
    sandbox: dict[str, Any] = {
        "runner": runner.name if runner else None,
        "network": bool(runner and config.network),
        "test_command": test_command,
    }
    if problem and test_command:
        sandbox["problem"] = problem
    await run.emit(events.SANDBOX, sandbox, fields={"sandbox": sandbox})
    return runner, sandbox


async def _plan(jc: JobContext) -> tuple[Plan, bool]:
    """The job's plan, and whether it was made just now. JobWaits when the planner asks a question, or
    when the plan waits for approval (made now, or saved by a run that stopped before it could wait)."""
    job, config = jc.job, jc.config
    if job.plan:  # a resumed job keeps the plan its done steps were made for
        plan = Plan.model_validate(job.plan)
        _approved_or_wait(jc, plan)
        return plan, False
    await jc.run.set_phase("planning", unless_cancelled=True)
    may_ask = config.questions and may_wait(job) and questions_asked(job.origin) < MAX_QUESTIONS
    with tracing.span("autodev.plan", {"autodev.job_id": job.id}) as span:
        context = await build_context(jc, query=f"{job.title}\n{job.task}", step_index=None, named=[])
        try:
            plan = await make_plan(
                jc.llm,
                jc.rules,
                conventions=as_prompt(jc.instructions),
                task=task_text(job),
                context=context,
                may_ask=may_ask,
            )
        except PlannerQuestion as asked:
            data = {"text": asked.text, "asked": questions_asked(job.origin) + 1}
            raise JobWaits(
                "question", asked.text, timeout_hours=config.question_timeout_hours, data=data
            ) from None
        span.set({"autodev.plan.steps": len(plan.steps)})
    data = plan.model_dump()
    steps = {
        i: {"title": s.title, "rationale": s.rationale, "acceptance": s.acceptance, "files": s.files}
        for i, s in enumerate(plan.steps)
    }
    # The plan, its event and its steps: one transaction.
    await jc.run.emit(events.PLAN, {"steps": data["steps"]}, fields={"plan": data}, steps=steps)
    _approved_or_wait(jc, plan)
    return plan, True


def _approved_or_wait(jc: JobContext, plan: Plan) -> None:
    if needs_approval(jc.job, jc.config.plan_approval):
        data = {"summary": plan.summary, "steps": len(plan.steps)}
        raise JobWaits("approval", plan.summary, timeout_hours=jc.config.question_timeout_hours, data=data)


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
