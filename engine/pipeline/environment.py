"""A job's prepared environment: the repository's setup, before the first test run and again when the
lockfiles change, reused across jobs (engine/workspace/envs.py); each outcome is an event and on the job.

A setup that fails ends the job's test rounds: the round's result is the setup's log with the reason, and
the step fails with it (SetupFailed). The coder's own `run_tests` tool gets the same result as an answer, so
that a model that broke the lockfile can mend it; the same key is not set up twice in one job.
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
        self.current: SetupOutcome | None = None
        self.failed: dict[str, SetupOutcome] = {}
        self.told_skipped = False

    async def ready(self) -> RunOptions | None:
        """The options the tests run with (None: the repository has no setup); SetupFailed when it fails."""
        plan = find_setup(self.tree.path, self.config)
        if plan is None or not plan.commands:
            if plan is not None and not self.told_skipped:  # a setup file with nothing autodev can run
                self.told_skipped = True
                await self._record({"status": "skipped", "network": False, **plan.summary()})
            return None
        key = self.cache.key(plan, self.tree.path)
        if self.current is not None and self.current.key == key:
            return self.current.options
        if key in self.failed:
            raise SetupFailed(self.failed[key])
        if not self.cache.is_ready(key):
            await self.run.emit(events.SETUP, {"status": "running", "network": True, **plan.summary()})
        outcome = await self.cache.prepare(plan, self.tree.path, key)
        log.info("setup %s (%s)", outcome.status, outcome.key, extra={"job_id": self.run.job_id})
        await self._record(outcome.summary())
        if not outcome.ok:
            self.failed[key] = outcome
            raise SetupFailed(outcome)
        self.current = outcome
        return outcome.options

    async def _record(self, summary: dict[str, Any]) -> None:
        """The `setup` event, and the job's sandbox record (the job page, check run and Slack read it)."""
        self.sandbox["setup"] = summary
        data = {k: v for k, v in summary.items() if k != "tail"}
        if summary.get("status") == "failed":
            data["tail"] = "\n".join(str(summary.get("tail", "")).splitlines()[-30:])
        await self.run.emit(events.SETUP, data, fields={"sandbox": dict(self.sandbox)})

    async def aclose(self) -> None:
        await self.cache.close()
