"""A job's prepared environment: the repository's setup, run before the first test run, reused across jobs
(engine/workspace/envs.py); its outcome is an event and on the job.

The environment is built from the job's base branch as it was when the job started, in a checkout of its
own, never from the worktree: what the model writes (a new dependency, a changed setup script) never runs with
setup's network. So it is settled once per job, and a job that adds a dependency tests against the base's
environment; the next job after the merge installs it.

A setup that fails ends the job's test rounds: the round's result is the setup's log with the reason, and
the step fails with it (SetupFailed); the coder's own `run_tests` tool gets the same result as its answer.
"""

from __future__ import annotations

import logging
from typing import Any

from engine import events
from engine.errors import PermanentFailure
from engine.pipeline.jobrun import JobRun
from engine.repo_config import RepoConfig
from engine.workspace.commands import RunOptions, TestResult
from engine.workspace.envs import EnvCache, SetupOutcome
from engine.workspace.git import Worktree
from engine.workspace.sandbox import CommandRunner
from engine.workspace.setup import find_setup
from engine.workspace.snapshot import base_files

log = logging.getLogger(__name__)

REASON_TAIL_LINES = 15


class SetupFailed(PermanentFailure):
    """The repository's setup failed: the tests cannot run. `result` is what a test run shows instead."""

    def __init__(self, outcome: SetupOutcome) -> None:
        why = f"setup failed ({outcome.reason}), so the tests did not run"
        super().__init__(
            f"{why}; `{outcome.plan.source}`'s setup log ends with:\n{outcome.tail(REASON_TAIL_LINES)}"
        )
        self.result = TestResult(
            f"setup ({outcome.plan.source})",
            passed=False,
            exit_code=None,
            output=f"{outcome.log.rstrip()}\n[autodev: {why}]",
            reason=why,
        )


class JobEnvironment:
    """What a job's test runs go through first: `ready()` → how the tests see the prepared environment."""

    def __init__(
        self,
        run: JobRun,
        tree: Worktree,
        config: RepoConfig,
        runner: CommandRunner,
        sandbox: dict[str, Any],
        repo: str,
    ) -> None:
        self.run, self.tree, self.config, self.sandbox = run, tree, config, sandbox
        self.cache = EnvCache(run.settings, runner, repo, run.job_id)
        self.outcome: SetupOutcome | None = None
        self.settled = False

    async def ready(self) -> RunOptions | None:
        """The options the tests run with (None: the repository has no setup); SetupFailed when it failed."""
        if not self.settled:
            self.outcome = await self._prepare()
            self.settled = True
        if self.outcome is None:
            return None
        if not self.outcome.ok:
            raise SetupFailed(self.outcome)
        return self.outcome.options

    async def _prepare(self) -> SetupOutcome | None:
        files = await base_files(self.tree.mirror, f"origin/{self.tree.base}")
        plan = find_setup(files, self.config)
        if plan is None:
            return None
        if not plan.commands:  # a setup file with nothing autodev can run: say what was skipped
            await self._record({"status": "skipped", "network": False, **plan.summary()})
            return None
        key = self.cache.key(plan, files)
        if not self.cache.is_ready(key):
            await self.run.emit(events.SETUP, {"status": "running", "network": True, **plan.summary()})
        outcome = await self.cache.prepare(plan, files, key, mirror=self.tree.mirror, worktree=self.tree.path)
        log.info("setup %s (%s)", outcome.status, outcome.key, extra={"job_id": self.run.job_id})
        await self._record(outcome.summary())
        return outcome

    async def _record(self, summary: dict[str, Any]) -> None:
        """The `setup` event, and the job's sandbox record (the job page, check run and Slack read it)."""
        self.sandbox["setup"] = summary
        data = {k: v for k, v in summary.items() if k != "tail"}
        if summary.get("status") == "failed":
            data["tail"] = "\n".join(str(summary.get("tail", "")).splitlines()[-30:])
        await self.run.emit(events.SETUP, data, fields={"sandbox": dict(self.sandbox)})

    async def aclose(self) -> None:
        await self.cache.close()
