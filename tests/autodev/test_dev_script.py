"""`python3 dev.py …` as the README says: its commands work, and stopping dev.py stops all it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.autodev.test_serve import free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 45


def process_started(pid: int) -> str | None:
    """The start time of `pid` (tells a process from a later one with its number), or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def descendants(pid: int) -> dict[int, str]:
    """Every living process below `pid` (by parent, so also those in sessions of their own): start times."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        started = process_started(child)
        if started is not None:
            found[child] = started
            todo.extend(children.get(child, []))
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


@pytest.fixture
def dev_serve(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], dict[int, str]]]:
    """`python3 dev.py serve` on a free port and data dir of its own, up; its process tree from /proc."""
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'data' / 'autodev.db'}",
        "REDIS_URL": "",  # the embedded Redis: the grandchild that used to be orphaned
    }
    base = f"http://127.0.0.1:{port}"
    tree: dict[int, str] = {}
    with (tmp_path / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "dev.py"), "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # not in pytest's process group: only what the test sends reaches it
        )
        try:
            wait_until_up(base, process)
            tree = descendants(process.pid)
            yield base, process, tree
        finally:
            for pid, started in tree.items():  # a failing test leaves no orphans behind either
                if process_started(pid) == started:
                    os.kill(pid, signal.SIGKILL)
            process.kill()
            process.wait(timeout=10)
            print((tmp_path / "serve.log").read_text()[-3000:])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_dev_py_alone_stops_the_service_and_its_redis(
    dev_serve: tuple[str, subprocess.Popen[str], dict[int, str]], sig: signal.Signals
) -> None:
    """Regression: `kill <dev.py pid>` (what a process manager sends) left autodev serve and Redis running."""
    base, process, tree = dev_serve
    names = [command_line(pid) for pid in tree]
    assert any("autodev serve" in name for name in names), names
    assert any("redis-server" in name for name in names), names

    os.kill(process.pid, sig)  # dev.py's pid only, not its process group

    assert process.wait(timeout=STOP_TIMEOUT_S) == 0
    deadline = time.monotonic() + 10
    while (left := [pid for pid, started in tree.items() if process_started(pid) == started]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert left == [], [command_line(pid) for pid in left]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/healthz", timeout=1)


def test_dev_py_autodev_runs_the_cli_in_the_projects_venv() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), "autodev", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: autodev" in result.stdout
    for command in ("serve", "worker", "run", "migrate"):
        assert command in result.stdout
