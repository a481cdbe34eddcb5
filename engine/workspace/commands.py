"""Running a repository's commands (its tests): which command, in the sandbox, bounded, with no secrets.

The runner comes from SANDBOX (engine/workspace/sandbox.py): bubblewrap by default, and when bubblewrap
cannot start, no runner at all (SandboxUnavailable): the job goes on without running the repository's code
and says so. `SANDBOX=none` is the operator's explicit choice to run it unsandboxed.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.redact import redact
from engine.settings import Settings
from engine.workspace.sandbox import (
    CommandRunner,
    Limits,
    Mount,
    SandboxUnavailable,
    make_runner,
    sandbox_env,
)

__all__ = [
    "RunOptions", "TestResult", "command_env", "command_runner", "detect_test_command", "hidden_paths",
    "run_tests", "sandbox_status",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class TestResult:
    command: str
    passed: bool
    exit_code: int | None
    output: str  # the tail, bounded
    timed_out: bool = False
    reason: str | None = None  # why autodev stopped the command (time, memory, processes, output)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What a prepared environment (engine/workspace/envs.py) adds to a command: its mounts, the path the
    worktree is shown at, directories put first on PATH and variables."""

    mounts: tuple[Mount, ...] = ()
    workdir_at: Path | None = None
    path_first: tuple[str, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)


def command_env(settings: Settings, options: RunOptions | None = None) -> dict[str, str]:
    """The allow-listed environment of a repository's command, with `options`' PATH and variables."""
    options = options or RunOptions()
    exposed_bins = [str(p / "bin") for p in settings.sandbox_readonly_paths if (p / "bin").is_dir()]
    env = sandbox_env(options.variables)
    env["PATH"] = ":".join([*options.path_first, *exposed_bins, sandbox_env()["PATH"]])
    return env


def hidden_paths(settings: Settings) -> list[Path]:
    """What no mount of the sandbox may hold: autodev's data, its working copies, its key and .env."""
    paths = [settings.data_dir, Path.cwd() / ".env"]
    if settings.workspace_dir is not None:
        paths.append(settings.workspace_dir)
    key = settings.github_private_key.get_secret_value() if settings.github_private_key else ""
    if key and "-----BEGIN" not in key:
        paths.append(Path(key).expanduser().absolute())
    return paths


def command_runner(settings: Settings) -> CommandRunner:
    """The runner for this process's settings, made once; SandboxUnavailable when none can start."""
    hidden, exposed = tuple(hidden_paths(settings)), tuple(settings.sandbox_readonly_paths)
    return _runner(settings.sandbox, settings.bwrap_path, hidden, exposed)


def sandbox_status(settings: Settings) -> dict[str, str | None]:
    """For the home page and /readyz: which runner the repository's commands get, and what is wrong."""
    try:
        runner = command_runner(settings)
    except SandboxUnavailable as exc:
        return {"runner": None, "problem": f"the repository's commands do not run: {exc}"}
    if runner.name == "none":
        return {"runner": "none", "problem": "the repository's commands run without a sandbox (SANDBOX=none)"}
    return {"runner": runner.name, "problem": None}


@functools.cache
def _runner(mode: str, bwrap: str, hidden: tuple[Path, ...], exposed: tuple[Path, ...]) -> CommandRunner:
    return make_runner(mode, bwrap=bwrap, hidden=hidden, exposed=exposed)


def detect_test_command(worktree: Path, agents_md: str | None = None) -> str | None:
    """The command the repository's own files point to, in order: AGENTS.md, then the usual tools."""
    if agents_md:
        match = re.search(r"(?im)^\s*[-*]?\s*test[ _]command\s*:\s*`([^`]+)`", agents_md)
        if match:
            return match.group(1).strip()
    if (worktree / "package.json").is_file():
        try:
            scripts = json.loads((worktree / "package.json").read_text()).get("scripts", {})
        except ValueError:
            scripts = {}
        if "test" in scripts:
            return "npm test"
    if (worktree / "go.mod").is_file():
        return "go test ./..."
    if (worktree / "Cargo.toml").is_file():
        return "cargo test"
    python_markers = ("pytest.ini", "pyproject.toml", "setup.cfg", "tox.ini", "setup.py")
    if any((worktree / m).is_file() for m in python_markers) or (worktree / "tests").is_dir():
        return "python -m pytest -q"
    makefile = worktree / "Makefile"
    if makefile.is_file() and re.search(r"(?m)^test\s*:", makefile.read_text(errors="replace")):
        return "make test"
    return None


async def run_tests(
    command: str,
    worktree: Path,
    *,
    runner: CommandRunner,
    settings: Settings,
    network: bool = False,
    readonly: Sequence[Path] = (),
    secrets: Iterable[str] = (),
    options: RunOptions | None = None,
) -> TestResult:
    """Run `command` in a shell in `worktree` through `runner`; nothing it started outlives it."""
    options = options or RunOptions()
    env = command_env(settings, options)
    limits = Limits(
        timeout_s=settings.test_timeout_seconds,
        memory_bytes=settings.test_memory_mb * 1024 * 1024,
        max_processes=settings.test_max_processes,
        output_bytes=settings.test_output_max_bytes,
    )
    result = await runner.run(
        command, worktree, env=env, network=network, limits=limits, readonly=readonly,
        mounts=options.mounts, workdir_at=options.workdir_at,
    )  # fmt: skip
    return TestResult(
        command,
        passed=result.exit_code == 0 and not result.timed_out,
        exit_code=result.exit_code,
        output=redact(result.output, secrets),
        timed_out=result.timed_out,
        reason=result.reason,
    )
