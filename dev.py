#!/usr/bin/env python3
"""The README's commands on a machine with only Python 3.11+ and git.

    python3 dev.py serve   # start the service (web + worker) on SQLite and an embedded Redis under ./data/
    python3 dev.py test    # run the whole test suite (extra arguments go to pytest)

It installs uv into ./.tools (unless uv is on PATH), makes ./.venv from uv.lock, then runs the command there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".tools"
UV_VERSION = "0.13.8"


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


def run(*args: str) -> int:
    return subprocess.call([uv(), *args], cwd=ROOT)


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 a newcomer has
        print("dev.py: autodev needs Python 3.11 or newer", file=sys.stderr)
        return 2
    command, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if command == "help" or command not in {"serve", "test", "sync", "run"}:
        print(__doc__)
        return 0 if command == "help" else 2
    if run("sync", "--frozen", "--quiet") != 0:
        return 1
    if command == "sync":
        return 0
    if command == "serve":
        return run("run", "--frozen", "autodev", "serve", *rest)
    if command == "test":
        return run("run", "--frozen", "pytest", *rest)
    return run("run", "--frozen", *rest)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
