"""Which setup a repository asks for, and what its environment depends on.

In order: `setup:` in `.github/autodev.yml` (`setup: []` turns setup off); else the `run:` steps of the
`copilot-setup-steps` job in `.github/workflows/copilot-setup-steps.yml` (GitHub Copilot's convention; `uses:`
steps, steps with an `if:`, a `${{ … }}` expression or a non-POSIX shell are skipped, and the plan says so);
else `.openhands/setup.sh` (OpenHands'), run with sh.

Both are read from the commit the environment is built from, the job's base (engine/workspace/snapshot.py),
never from the worktree: what the model writes during a job never runs with setup's network.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.repo_config import CONFIG_PATH, RepoConfig

COPILOT_PATH = ".github/workflows/copilot-setup-steps.yml"
COPILOT_JOB = "copilot-setup-steps"
OPENHANDS_PATH = ".openhands/setup.sh"
SETUP_FILES = (COPILOT_PATH, OPENHANDS_PATH)
MAX_READ_BYTES = 1 << 20  # a setup file bigger than this is not read
# The files whose change means the dependencies changed: lockfiles and the manifests they come from.
LOCKFILES = (
    "pyproject.toml", "setup.py", "setup.cfg", "poetry.lock", "uv.lock", "pdm.lock", "Pipfile",
    "Pipfile.lock", "package.json", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock",
    "pnpm-lock.yaml", "bun.lockb", "go.mod", "go.sum", "Cargo.toml", "Cargo.lock", "Gemfile",
    "Gemfile.lock", "composer.json", "composer.lock", ".python-version", ".nvmrc", ".tool-versions",
)  # fmt: skip
LOCKFILE_PATTERNS = ("requirements*.txt", "requirements/*.txt", "constraints*.txt")
LOCKFILE_DIRS = ("requirements",)  # beyond the top level, where LOCKFILE_PATTERNS look
SHELLS = {None, "bash", "sh"}
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class BaseFiles:
    """What setup depends on in the commit an environment is built from."""

    commit: str
    blobs: Mapping[str, str]  # dependency and setup files (regular files only) → their git blob ids
    texts: Mapping[str, str]  # the setup files' text (when not over MAX_READ_BYTES)


@dataclass(frozen=True, slots=True)
class SetupPlan:
    source: str  # the file the commands come from
    commands: tuple[str, ...]
    notes: tuple[str, ...] = ()  # what was skipped, and why

    def summary(self) -> dict[str, Any]:
        return {"source": self.source, "commands": list(self.commands), "notes": list(self.notes)}


def is_lockfile(path: str) -> bool:
    return path in LOCKFILES or any(fnmatch.fnmatchcase(path, p) for p in LOCKFILE_PATTERNS)


def find_setup(files: BaseFiles, config: RepoConfig) -> SetupPlan | None:
    """The repository's setup, or None when it has none."""
    if config.setup is not None:
        return SetupPlan(CONFIG_PATH, tuple(config.setup)) if config.setup else None
    if COPILOT_PATH in files.blobs:
        if COPILOT_PATH not in files.texts:
            return SetupPlan(COPILOT_PATH, (), (f"not read: over {MAX_READ_BYTES} bytes",))
        return copilot_setup(files.texts[COPILOT_PATH])
    if OPENHANDS_PATH in files.blobs:
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
        why = "autodev runs only `run:` steps; the sandbox's toolchains stand in"
        return None, f"`uses: {step['uses']}` ({why})"
    run = step.get("run")
    if not isinstance(run, str) or not run.strip():
        return None, "no `run:`"
    if "if" in step:
        return None, f"it has a condition (`if: {step['if']}`) autodev does not evaluate"
    env = step.get("env") or {}
    values = [run, str(step.get("working-directory", ""))]
    values += [str(v) for v in env.values()] if isinstance(env, dict) else []
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


def fingerprint(files: BaseFiles, plan: SetupPlan, *extra: str) -> str:
    """What a prepared environment depends on: the setup, the lockfiles' and setup files' contents, `extra`
    (the toolchains). Not the commit: a change elsewhere in the repository keeps the environment."""
    digest = hashlib.sha256()
    for part in (plan.source, *plan.commands, *extra):
        digest.update(b"\0" + part.encode())
    for path in sorted(files.blobs):
        digest.update(f"\0{path}\0{files.blobs[path]}".encode())
    return digest.hexdigest()[:20]


def setup_script(plan: SetupPlan, venv: str) -> str:
    """One shell script: make the venv, then each command in its own bash (sh without bash) from the
    worktree, stopping at the first that fails and saying which."""
    total = len(plan.commands)
    lines = [
        "shell=$(command -v bash || echo sh)",
        "if command -v python3 >/dev/null 2>&1; then",
        f"  printf '%s\\n' {shlex.quote(f'+ python3 -m venv {venv}')}",
        f"  python3 -m venv {shlex.quote(venv)} ||",
        "    { echo '[autodev: could not make the virtualenv]'; exit 1; }",
        "fi",
    ]
    for number, command in enumerate(plan.commands, 1):
        shown = "\n".join(f"+ {line}" for line in command.splitlines())
        lines += [
            f"printf '%s\\n' {shlex.quote(shown)}",
            f'"$shell" -e -c {shlex.quote(command)} || {{ code=$?; '
            f'echo "[autodev: setup command {number} of {total} exited with $code]"; exit $code; }}',
        ]
    return "\n".join(lines)
