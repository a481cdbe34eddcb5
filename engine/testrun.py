"""Running a repository's tests: which command, in the worktree, bounded in time and output, no secrets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.redact import redact

SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.I)
SECRET_NAMES = {"DATABASE_URL", "REDIS_URL"}
SECRET_PREFIXES = ("OPENAI_", "GITHUB_", "SLACK_")


@dataclass(frozen=True, slots=True)
class TestResult:
    command: str
    passed: bool
    exit_code: int | None
    output: str  # the tail, bounded
    timed_out: bool = False

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def safe_environment(environ: Mapping[str, str], secrets: Iterable[str] = ()) -> dict[str, str]:
    """`environ` without anything that looks like a credential or holds a known secret value."""
    values = [s for s in secrets if s]
    env: dict[str, str] = {}
    for name, value in environ.items():
        upper = name.upper()
        if SECRET_NAME.search(upper) or upper in SECRET_NAMES or upper.startswith(SECRET_PREFIXES):
            continue
        if any(v in value for v in values):
            continue
        env[name] = value
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["CI"] = "true"
    return env


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
    timeout_seconds: float,
    max_bytes: int,
    secrets: Iterable[str] = (),
) -> TestResult:
    """Run `command` in a shell in `worktree`; the whole process group is killed on timeout."""
    proc = await asyncio.create_subprocess_shell(
        command,
        cwd=worktree,
        env=safe_environment(os.environ, secrets),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    tail = bytearray()

    async def pump() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            tail.extend(chunk)
            if len(tail) > max_bytes:
                del tail[: len(tail) - max_bytes]

    timed_out = False
    try:
        await asyncio.wait_for(asyncio.gather(pump(), proc.wait()), timeout_seconds)
    except TimeoutError:
        timed_out = True
    finally:
        if proc.returncode is None:
            _kill_group(proc.pid)
            await proc.wait()
    text = redact(tail.decode("utf-8", errors="replace"), secrets)
    if timed_out:
        text += f"\n[autodev: the test command was stopped after {timeout_seconds:g} seconds]"
    code = proc.returncode
    return TestResult(
        command, passed=code == 0 and not timed_out, exit_code=code, output=text, timed_out=timed_out
    )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
