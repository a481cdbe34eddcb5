"""Which setup a repository asks for, and what its environment depends on.

In order: `setup:` in `.github/autodev.yml` (`setup: []` turns setup off); else the `run:` steps of the
`copilot-setup-steps` job in `.github/workflows/copilot-setup-steps.yml` (GitHub Copilot's convention; `uses:`
steps, steps with an `if:`, a `${{ … }}` expression or a non-POSIX shell are skipped, and the plan says so);
else `.openhands/setup.sh` (OpenHands'), run with sh.

The worktree is the repository's, so an attacker's: every file is read only when it is a regular file inside
the worktree (a symlink to the worker's `.env` or to `/dev/zero` is not followed), and only so much of it.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.repo_config import CONFIG_PATH, RepoConfig

COPILOT_PATH = ".github/workflows/copilot-setup-steps.yml"
COPILOT_JOB = "copilot-setup-steps"
OPENHANDS_PATH = ".openhands/setup.sh"
MAX_READ_BYTES = 1 << 20  # a setup file bigger than this is not read
MAX_HASHED_BYTES = 64 << 20  # a lockfile bigger than this counts by its size alone
# The files whose change means the dependencies changed: lockfiles and the manifests they come from.
LOCKFILES = (
    "pyproject.toml", "setup.py", "setup.cfg", "poetry.lock", "uv.lock", "pdm.lock", "Pipfile",
    "Pipfile.lock", "package.json", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock",
    "pnpm-lock.yaml", "bun.lockb", "go.mod", "go.sum", "Cargo.toml", "Cargo.lock", "Gemfile",
    "Gemfile.lock", "composer.json", "composer.lock", ".python-version", ".nvmrc", ".tool-versions",
)  # fmt: skip
LOCKFILE_GLOBS = ("requirements*.txt", "requirements/*.txt", "constraints*.txt")
SHELLS = {None, "bash", "sh"}
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class SetupPlan:
    source: str  # the file the commands come from
    commands: tuple[str, ...]
    notes: tuple[str, ...] = ()  # what was skipped, and why

    def summary(self) -> dict[str, Any]:
        return {"source": self.source, "commands": list(self.commands), "notes": list(self.notes)}


def read_inside(worktree: Path, relative: str, limit: int = MAX_READ_BYTES) -> bytes | None:
    """The file's bytes when it is a regular file inside the worktree of at most `limit` bytes, else None."""
    root = worktree.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    return data if len(data) <= limit else None


def find_setup(worktree: Path, config: RepoConfig) -> SetupPlan | None:
    """The repository's setup, or None when it has none."""
    if config.setup is not None:
        return SetupPlan(CONFIG_PATH, tuple(config.setup)) if config.setup else None
    workflow = read_inside(worktree, COPILOT_PATH)
    if workflow is not None:
        return copilot_setup(workflow.decode(errors="replace"))
    if read_inside(worktree, OPENHANDS_PATH) is not None:
        return SetupPlan(OPENHANDS_PATH, (f"sh {OPENHANDS_PATH}",))
    return None


def copilot_setup(text: str) -> SetupPlan:
    """The `run:` steps of the `copilot-setup-steps` job, in order, each with its `env:` and directory."""
    import yaml

    try:
        steps = (yaml.safe_load(text) or {})["jobs"][COPILOT_JOB]["steps"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        return SetupPlan(COPILOT_PATH, (), (f"not read: no jobs.{COPILOT_JOB}.steps ({type(exc).__name__})",))
    if not isinstance(steps, list):
        return SetupPlan(COPILOT_PATH, (), (f"not read: jobs.{COPILOT_JOB}.steps is not a list",))
    commands, notes = [], []
    for number, step in enumerate(steps, 1):
        if not isinstance(step, dict):
            notes.append(f"step {number}: skipped, not a mapping")
            continue
        name = f"step {number}" + (f" ({step['name']})" if step.get("name") else "")
        command, why = _step_command(step)
        if command is None:
            notes.append(f"{name}: skipped, {why}")
        else:
            commands.append(command)
    return SetupPlan(COPILOT_PATH, tuple(commands), tuple(notes))


def _step_command(step: dict[str, Any]) -> tuple[str | None, str]:
    """The shell text of a `run:` step, or None and why autodev does not run it."""
    if "uses" in step:
        return (
            None,
            f"`uses: {step['uses']}` (autodev runs only `run:` steps; the sandbox's toolchains stand in)",
        )
    run = step.get("run")
    if not isinstance(run, str) or not run.strip():
        return None, "no `run:`"
    if "if" in step:
        return None, f"it has a condition (`if: {step['if']}`) autodev does not evaluate"
    env = step.get("env") or {}
    values = [
        run,
        str(step.get("working-directory", "")),
        *map(str, env.values() if isinstance(env, dict) else []),
    ]
    if any("${{" in v for v in values):
        return None, "it uses a `${{ … }}` expression (secrets and contexts are not available)"
    shell = step.get("shell")
    if shell not in SHELLS:
        return None, f"`shell: {shell}` (bash and sh only)"
    if not isinstance(env, dict) or not all(ENV_NAME.fullmatch(str(k)) for k in env):
        return None, "its `env:` is not a mapping of variable names"
    lines = [f"export {k}={shlex.quote(str(v))}" for k, v in env.items()]
    if step.get("working-directory"):
        lines.append(f"cd {shlex.quote(str(step['working-directory']))}")
    return "\n".join([*lines, run.strip()]), ""


def lockfiles(worktree: Path) -> list[str]:
    """The lockfiles and manifests the worktree has (relative paths, sorted)."""
    root = worktree.resolve()
    found = {name for name in LOCKFILES if (root / name).is_file()}
    for pattern in LOCKFILE_GLOBS:
        found.update(str(p.relative_to(root)) for p in root.glob(pattern) if p.is_file())
    return sorted(found)


def fingerprint(worktree: Path, plan: SetupPlan, *extra: str) -> str:
    """What the prepared environment depends on: the setup commands, the lockfiles' contents, `extra`."""
    digest = hashlib.sha256()
    for part in (plan.source, *plan.commands, *extra):
        digest.update(b"\0" + part.encode())
    if plan.source == OPENHANDS_PATH:
        digest.update(b"\0script\0" + (read_inside(worktree, OPENHANDS_PATH) or b""))
    for name in lockfiles(worktree):
        data = read_inside(worktree, name, MAX_HASHED_BYTES)
        content = hashlib.sha256(data).hexdigest() if data is not None else "unread"
        digest.update(f"\0{name}\0{content}".encode())
    return digest.hexdigest()[:20]
