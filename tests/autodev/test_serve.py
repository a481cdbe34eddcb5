"""`autodev serve` as a user runs it: a real process on SQLite and the embedded Redis; Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import ANY

import httpx
import pytest

from tests.conftest import BWRAP_PROBLEM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def wait_until_up(base: str, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"autodev exited early (exit {process.returncode}); see its log")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("autodev serve did not answer /healthz")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'data' / 'autodev.db'}",
    }
    with (tmp_path / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "autodev", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            yield f"http://127.0.0.1:{port}", process, tmp_path / "data"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            print((tmp_path / "serve.log").read_text()[-3000:])


def test_serve_starts_with_no_credentials_and_ctrl_c_leaves_no_process_behind(
    service: tuple[str, subprocess.Popen[str], Path],
) -> None:
    base, process, data = service
    wait_until_up(base, process)

    ready = httpx.get(f"{base}/readyz", timeout=5)
    home = httpx.get(f"{base}/", timeout=5)
    redis_pid = (
        int((data / "redis" / "redis.pid").read_text()) if (data / "redis" / "redis.pid").exists() else None
    )

    assert ready.status_code == 200
    body = ready.json()
    assert body.pop("sandbox") == (
        {"runner": "bwrap", "problem": None} if BWRAP_PROBLEM is None else {"runner": None, "problem": ANY}
    )
    assert body == {"ready": True, "checks": {"database": {"ok": True}, "redis": {"ok": True}}}
    assert (data / "autodev.db").exists()
    assert (data / "redis" / "redis.sock").exists()
    assert home.status_code == 200
    for surface in ("GitHub App", "Slack", "LLM"):
        assert surface in home.text
    assert home.text.count("not configured") == 3
    assert "OPENAI_BASE_URL" in home.text

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=45) == 0
    assert not (data / "redis" / "redis.sock").exists() or not _socket_answers(data / "redis" / "redis.sock")
    if redis_pid is not None:
        assert not alive(redis_pid)
    leftovers = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True).stdout.split()
    assert leftovers == []


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def test_the_embedded_redis_dies_with_a_killed_service(
    service: tuple[str, subprocess.Popen[str], Path],
) -> None:
    base, process, data = service
    wait_until_up(base, process)
    redis_pid = int((data / "redis" / "redis.pid").read_text())

    process.kill()
    process.wait()

    deadline = time.monotonic() + 10
    while alive(redis_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(redis_pid)


def test_queued_jobs_survive_a_restart_of_the_embedded_redis(tmp_path: Path) -> None:
    """The embedded Redis keeps an append-only file, so what was queued is there after a restart."""
    import redis

    from autodev.embedded_redis import EmbeddedRedis

    with EmbeddedRedis(tmp_path) as server:
        redis.Redis.from_url(server.url).zadd("arq:queue", {"job-1": 1})
    with EmbeddedRedis(tmp_path) as server:
        assert redis.Redis.from_url(server.url).zrange("arq:queue", 0, -1) == [b"job-1"]
