#!/usr/bin/env python3
"""The README's commands on a machine with only Python 3.11+ and git.

    python3 dev.py serve [--host H --port P]  # the service (web + worker), SQLite and an embedded Redis
    python3 dev.py test [PYTEST ARGS]         # the whole test suite (extra arguments go to pytest)
    python3 dev.py lint                       # ruff check, ruff format --check, mypy
    python3 dev.py autodev ARGS               # any autodev command: autodev run --repo PATH "<task>"
    python3 dev.py sync                       # only make ./.venv from uv.lock

It installs uv into ./.tools (unless uv is on PATH), makes ./.venv from uv.lock, then runs the command there,
in the project folder (where .env and ./data are). The command runs as dev.py's child: SIGINT or SIGTERM sent
to dev.py is passed on, dev.py waits for it to stop and exits with its code, and if dev.py itself is killed,
the child gets SIGTERM (Linux).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import venv
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".tools"
VENV = ROOT / ".venv"
UV_VERSION = "0.13.8"
FORWARDED = (signal.SIGINT, signal.SIGTERM)
SI_KERNEL = 0x80  # si_code of a signal the kernel sent itself, as a terminal's Ctrl-C to its foreground group
PR_SET_PDEATHSIG = 1
LINT = (("ruff", "check", "."), ("ruff", "format", "--check", "."), ("mypy",))
COMMANDS = ("serve", "test", "lint", "autodev", "sync", "run")  # run: `uv run ARGS`, for anything else


def uv() -> str:
    found = shutil.which("uv")
    if found:
        return found
    local = TOOLS / ("Scripts/uv.exe" if os.name == "nt" else "bin/uv")
    if not local.exists():
        print(f"dev.py: installing uv {UV_VERSION} into {TOOLS} (once)", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
        python = TOOLS / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"uv=={UV_VERSION}"], check=True)
    return str(local)


def venv_bin(name: str) -> str:
    return str(VENV / ("Scripts" if os.name == "nt" else "bin") / name)


def run_child(argv: list[str], env: dict[str, str] | None = None) -> int:
    """Run `argv` as our child until it exits, passing on SIGINT and SIGTERM; its exit code."""
    if not hasattr(signal, "sigwaitinfo"):  # not Linux: pass on every such signal
        return _run_with_handlers(argv, env)
    # Take the signals synchronously, with who sent them: a terminal's Ctrl-C already reached the child (it is
    # in our process group) and is not sent twice; a `kill` aimed at dev.py alone is passed on.
    watched = {*FORWARDED, signal.SIGCHLD}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        child = subprocess.Popen(argv, cwd=ROOT, env=env, preexec_fn=_child_setup(mask))
        while child.poll() is None:
            info = signal.sigwaitinfo(watched)
            if info.si_signo in FORWARDED and info.si_code != SI_KERNEL:
                child.send_signal(info.si_signo)
        return _exit_code(child.returncode)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _run_with_handlers(argv: list[str], env: dict[str, str] | None) -> int:
    child = subprocess.Popen(argv, cwd=ROOT, env=env)

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        return _exit_code(child.wait())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _child_setup(mask: set[signal.Signals]) -> Callable[[], None]:
    def setup() -> None:  # in the child, between fork and exec
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # dies with dev.py

    return setup


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode  # killed by signal N: 128+N, as a shell says


def lint() -> int:
    failed = [" ".join(cmd) for cmd in LINT if run_child([venv_bin(cmd[0]), *cmd[1:]]) != 0]
    if failed:
        print(f"dev.py: failed: {'; '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def test_environment() -> dict[str, str]:
    """As `uv run` would: the venv first on PATH, for the tests that start tools by name."""
    path = os.pathsep.join([str(Path(venv_bin("python")).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "VIRTUAL_ENV": str(VENV)}


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 a newcomer has
        print("dev.py: autodev needs Python 3.11 or newer", file=sys.stderr)
        return 2
    command, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if command == "help" or command not in COMMANDS:
        print(__doc__)
        return 0 if command == "help" else 2
    if subprocess.call([uv(), "sync", "--frozen", "--quiet"], cwd=ROOT) != 0:
        return 1
    if command == "sync":
        return 0
    if command == "serve":
        # autodev's own venv stays off PATH: the repositories' commands must not find its python and packages.
        return run_child([venv_bin("autodev"), "serve", *rest])
    if command == "autodev":
        return run_child([venv_bin("autodev"), *rest])
    if command == "test":
        return run_child([venv_bin("python"), "-m", "pytest", *rest], env=test_environment())
    if command == "lint":
        return lint()
    return run_child([uv(), "run", "--frozen", *rest])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
