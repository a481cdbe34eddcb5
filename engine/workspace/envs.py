"""Prepared environments: the repository's setup run once per lockfile change, reused by later jobs.

An environment is a directory `<workspace>/envs/<repo>/<key>`, the key a hash of the setup commands, the
base commit's lockfiles and the toolchains (engine/workspace/setup.py). Setup runs in a checkout of that
commit (engine/workspace/snapshot.py), with network; the tests run in the job's worktree without it (unless
the repository allows it). The sandbox shows the environment at ENV_MOUNT, read-write to setup and read-only
to the tests, and shows both the checkout and the worktree at WORKTREE_MOUNT/<name>, the same path for every
job, so what setup wrote (a venv's scripts, an editable install's path) holds for each of them. In it:

- `venv/`: a Python virtualenv made before the setup commands, first on PATH with VIRTUAL_ENV set, so that
  `pip install -e .[test]` and then `python -m pytest` work without the repository knowing;
- `node_modules/`: shown at `<worktree>/node_modules` (npm ci writes there), read-only to the tests with an
  empty tmpfs over its `.cache` and `.vite`, where test runners write; kept here rather than copied into each
  worktree: nothing to copy, and no job can change what the next one gets;
- `npm-cache/`, `go/` (GOPATH), `cargo/` (CARGO_HOME), `bundle/` (BUNDLE_PATH).

An environment is built in a temporary directory beside it and renamed into place with its marker written
last, so no job sees half of one. A lock file per key: the builder holds it exclusively, every job using the
environment holds it shared until the job ends, and eviction (the oldest beyond KEEP_PER_REPO per repository)
takes only what it can lock exclusively without waiting. Without a sandbox (SANDBOX=none) nothing can be shown
at a fixed path: the environment is the job's own, built at its real path from the job's worktree and removed
after the job (nothing is isolated then anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from engine.redact import redact
from engine.settings import Settings
from engine.workspace.commands import RunOptions, command_env
from engine.workspace.sandbox import CommandRunner, Limits, Mount
from engine.workspace.setup import BaseFiles, SetupPlan, fingerprint, setup_script
from engine.workspace.snapshot import checkout

log = logging.getLogger(__name__)

ENV_MOUNT = Path("/autodev-env")
WORKTREE_MOUNT = Path("/workspace")
MARKER = ".autodev-ready"
KEEP_PER_REPO = 3
LOG_TAIL_LINES = 60
NODE_WRITABLE = (".cache", ".vite")  # under node_modules: where test runners keep their caches
FORMAT = "env-v1"  # bump when the layout changes: every environment is built again


@dataclass
class SetupOutcome:
    status: str  # "ran" | "reused" | "failed"
    key: str
    plan: SetupPlan
    log: str  # the tail of the setup's output (of the run that built it, when reused)
    seconds: float
    reason: str | None = None  # why it failed
    options: RunOptions | None = None  # how the tests see the environment; None when it failed

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log.splitlines()[-lines:])

    def summary(self) -> dict[str, Any]:
        """For the `setup` event and the job page."""
        found = {"status": self.status, "key": self.key, "network": True, "seconds": round(self.seconds, 1)}
        return {**found, **self.plan.summary(), "tail": self.tail(), "reason": self.reason}


@dataclass
class EnvCache:
    """One job's way to the repository's prepared environments; `close()` lets go of the one it holds."""

    settings: Settings
    runner: CommandRunner
    repo: str
    job_id: str
    _held: tuple[str, IO[str]] | None = field(default=None, repr=False)
    _own: Path | None = field(default=None, repr=False)  # SANDBOX=none: this job's own environment

    @property
    def cached(self) -> bool:
        return self.runner.name != "none"

    @property
    def root(self) -> Path:
        workspace = self.settings.workspace_dir or self.settings.data_dir / "work"
        digest = hashlib.sha256(self.repo.encode()).hexdigest()[:12]
        return workspace / "envs" / f"{_slug(self.repo)}-{digest}"

    @property
    def worktree_at(self) -> Path | None:
        return WORKTREE_MOUNT / _slug(self.repo.rsplit("/", 1)[-1]) if self.cached else None

    def key(self, plan: SetupPlan, files: BaseFiles) -> str:
        extra = (FORMAT, self.runner.name, str(self.worktree_at), command_env(self.settings)["PATH"])
        return fingerprint(files, plan, *extra)

    def is_ready(self, key: str) -> bool:
        """Whether an environment for `key` is ready (a hint: prepare() decides under its lock)."""
        return self.cached and (self.root / key / MARKER).is_file()

    async def prepare(
        self, plan: SetupPlan, files: BaseFiles, key: str, *, mirror: Path, worktree: Path
    ) -> SetupOutcome:
        """The environment for `key`: reused when one is ready, else built now by running `plan` in a
        checkout of `files.commit` (with SANDBOX=none: in `worktree`, for this job alone)."""
        node = "package.json" in files.blobs
        if not self.cached:
            return await self._prepare_own(plan, worktree, key, node)
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / key
        async with _process_lock(final):
            await self.close()
            handle = open(self.root / f"{key}.lock", "a")  # noqa: SIM115, ASYNC230 - a tiny file, held until close()
            try:
                await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_SH)
                if not (final / MARKER).is_file():
                    fcntl.flock(handle, fcntl.LOCK_UN)
                    await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
                    if not (final / MARKER).is_file():
                        outcome = await self._build(plan, files, key, mirror, node)
                        if not outcome.ok:
                            handle.close()
                            return outcome
                    fcntl.flock(handle, fcntl.LOCK_SH)  # others may use it now; eviction may not
                    built = True
                else:
                    built = False
            except BaseException:
                handle.close()
                raise
            self._held = (key, handle)
        marker = json.loads((final / MARKER).read_text())
        os.utime(final / MARKER)  # last used: eviction keeps the newest
        if built:
            await asyncio.to_thread(self._evict, keep=key)
        return SetupOutcome(
            "ran" if built else "reused", key, plan, marker.get("log", ""), marker.get("seconds", 0.0),
            options=self._options(final, node, writable=False),
        )  # fmt: skip

    async def _build(
        self, plan: SetupPlan, files: BaseFiles, key: str, mirror: Path, node: bool
    ) -> SetupOutcome:
        """Run the setup into a new directory; rename it into place with its marker only when it succeeded."""
        # A builder of this key that died left its directories (we hold the key's lock).
        for stale in await asyncio.to_thread(lambda: list(self.root.glob(f".*-{key}-*"))):
            await _remove(stale)
        building, final = self.root / f".build-{key}-{uuid.uuid4().hex[:8]}", self.root / key
        try:
            async with checkout(
                mirror, files.commit, self.root / f".src-{key}-{uuid.uuid4().hex[:8]}"
            ) as source:
                outcome = await self._run(plan, source, key, building, node, readonly=[mirror])
            if outcome.ok:
                _seal(building, outcome)
                await _remove(final)  # were it there, without a marker: not an environment
                os.rename(building, final)
            return outcome
        finally:
            await _remove(building)

    async def _prepare_own(self, plan: SetupPlan, worktree: Path, key: str, node: bool) -> SetupOutcome:
        await self.close()
        own = self.root / f"job-{self.job_id}"
        await _remove(own)
        self._own = own
        outcome = await self._run(plan, worktree, key, own, node)
        if outcome.ok:
            outcome.options = self._options(own, node, writable=False)
        return outcome

    async def _run(
        self,
        plan: SetupPlan,
        workdir: Path,
        key: str,
        env_dir: Path,
        node: bool,
        readonly: Sequence[Path] = (),
    ) -> SetupOutcome:
        for part in ("npm-cache", "go", "cargo", "bundle", *(["node_modules"] if self.cached else [])):
            (env_dir / part).mkdir(parents=True, exist_ok=True)
        options = self._options(env_dir, node, writable=True)
        settings = self.settings
        limits = Limits(
            timeout_s=settings.setup_timeout_seconds,
            memory_bytes=settings.test_memory_mb * 1024 * 1024,
            max_processes=settings.test_max_processes,
            output_bytes=settings.setup_output_max_bytes,
        )
        started = time.monotonic()
        result = await self.runner.run(
            setup_script(plan, options.variables["VIRTUAL_ENV"]), workdir,
            env=command_env(settings, options), network=True, limits=limits, readonly=readonly,
            mounts=options.mounts, workdir_at=options.workdir_at,
        )  # fmt: skip
        seconds = time.monotonic() - started
        output = redact(result.output, settings.secret_values())
        if result.exit_code == 0 and not result.timed_out:
            return SetupOutcome("ran", key, plan, output, seconds)
        reason = result.reason or f"exit code {result.exit_code}"
        return SetupOutcome("failed", key, plan, output, seconds, reason=reason)

    def _options(self, env_dir: Path, node: bool, *, writable: bool) -> RunOptions:
        """How a command sees the environment: mounted at ENV_MOUNT (cached) or at its own path."""
        seen = ENV_MOUNT if self.cached else env_dir
        mounts: list[Mount] = []
        if self.cached:
            assert self.worktree_at is not None
            mounts.append(Mount(env_dir, ENV_MOUNT, writable=writable))
            if node:
                modules = self.worktree_at / "node_modules"
                mounts.append(Mount(env_dir / "node_modules", modules, writable=writable))
                if not writable:
                    caches = [d for d in NODE_WRITABLE if (env_dir / "node_modules" / d).is_dir()]
                    mounts += [Mount(None, modules / d) for d in caches]
        variables = {
            "VIRTUAL_ENV": str(seen / "venv"),
            "GOPATH": str(seen / "go"),
            "CARGO_HOME": str(seen / "cargo"),
            "BUNDLE_PATH": str(seen / "bundle"),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
        if writable:
            variables |= {"npm_config_cache": str(seen / "npm-cache"), "npm_config_update_notifier": "false"}
        bins = tuple(str(seen / p) for p in ("venv/bin", "go/bin", "cargo/bin"))
        return RunOptions(tuple(mounts), self.worktree_at, bins, variables)

    def _evict(self, *, keep: str) -> None:
        """Remove the least recently used environments beyond KEEP_PER_REPO that no job holds."""
        ready = [p for p in self.root.iterdir() if (p / MARKER).is_file() and p.name != keep]
        ready.sort(key=lambda p: (p / MARKER).stat().st_mtime, reverse=True)
        for old in ready[KEEP_PER_REPO - 1 :]:
            with open(self.root / f"{old.name}.lock", "a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a job uses it
                trash = self.root / f".trash-{old.name}-{uuid.uuid4().hex[:8]}"
                os.rename(old, trash)  # gone at once for everyone, then removed at leisure
            log.info("evicting the environment %s of %s", old.name, self.repo)
            shutil.rmtree(trash, ignore_errors=True)

    async def close(self) -> None:
        """Let go of the environment this job holds (a shared lock), or remove its own."""
        if self._held is not None:
            self._held[1].close()
            self._held = None
        if self._own is not None:
            await _remove(self._own)
            self._own = None


def _seal(env_dir: Path, outcome: SetupOutcome) -> None:
    """The marker, written last: from here on the environment is reused."""
    modules = env_dir / "node_modules"
    for name in NODE_WRITABLE:
        with contextlib.suppress(OSError):
            (modules / name).mkdir(exist_ok=True)
    record = {"key": outcome.key, "seconds": outcome.seconds, "log": outcome.tail(), "at": time.time()}
    (env_dir / f"{MARKER}.tmp").write_text(json.dumps(record))
    os.rename(env_dir / f"{MARKER}.tmp", env_dir / MARKER)


def _slug(text: str) -> str:
    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in text).strip(".-")
    return slug[:60] or "repo"


_LOCKS: dict[Path, asyncio.Lock] = {}


async def _remove(path: Path) -> None:
    await asyncio.to_thread(shutil.rmtree, path, True)


@contextlib.asynccontextmanager
async def _process_lock(path: Path) -> AsyncIterator[None]:
    """One job of this process at a time per environment: the file lock then waits only for others."""
    async with _LOCKS.setdefault(path, asyncio.Lock()):
        yield


__all__: Sequence[str] = ["ENV_MOUNT", "WORKTREE_MOUNT", "EnvCache", "SetupOutcome"]
