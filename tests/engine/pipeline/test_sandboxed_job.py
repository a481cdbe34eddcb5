"""A job whose repository's test command is hostile: in the sandbox it reaches nothing of autodev's, and
without one (SANDBOX=none, the operator's explicit choice) the same command reaches it all."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.store.jobs import JobStore
from engine.store.models import JobState
from tests.conftest import BWRAP_PROBLEM
from tests.engine.conftest import RecordingHost, git, llm_settings, make_project, plan, run, submit
from tests.support.fake_llm import FakeLLM
from tests.support.skip_policy import MISSING

PROBE = Path(__file__).resolve().parents[2] / "fixtures" / "sandbox_probe.py"
SECRET = "sk-worker-secret-for-the-probe-0123"


def command_lines() -> list[tuple[str, bytes]]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            found.append((pid, Path(f"/proc/{pid}/cmdline").read_bytes()))
    return found


@pytest.fixture
def worker_with_a_secret() -> Iterator[None]:
    """A process of autodev's user whose environment holds a secret, as a worker's holds its keys (a
    variable set in this test process would not show: /proc/<pid>/environ is the environment at exec)."""
    process = subprocess.Popen(["sleep", "120"], env={"OPENAI_API_KEY": SECRET})
    yield
    process.kill()
    process.wait()


@pytest.fixture
def listener() -> Iterator[int]:
    """A port on 127.0.0.1 standing for autodev's Redis, PostgreSQL and web ports."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


async def probe_job(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, port: int, **sandbox: object
) -> list[str]:
    settings = llm_settings(tmp_path, database_url, llm, **sandbox)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    for name in ("autodev.db", "github-app.pem"):
        (settings.data_dir / name).write_text("autodev's own\n")
    internet = " internet" if sandbox.get("sandbox") == "bwrap" else ""
    encoded = base64.b64encode(SECRET.encode()).decode()
    command = f"{sys.executable} probe.py {encoded} {settings.data_dir} {port}{internet}"
    project = make_project(tmp_path / "project", test_command=command)
    shutil.copy(PROBE, project / "probe.py")
    git(project, "add", "probe.py")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "probe")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(project), str(remote))
    llm.reply_json(plan("Look around"))
    llm.reply_text("Nothing to change.")
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.SUCCEEDED

    view = await store.view(job_id)
    output = view.steps[0].test_output or ""
    line = next(line for line in output.splitlines() if line.startswith("PROBE "))
    assert view.sandbox["runner"] == sandbox["sandbox"]
    return list(json.loads(line.removeprefix("PROBE ")))


@pytest.mark.skipif(BWRAP_PROBLEM is not None, reason=f"{MISSING}bubblewrap ({BWRAP_PROBLEM})")
async def test_in_the_sandbox_the_repository_s_tests_reach_nothing_of_autodev_s(
    tmp_path: Path,
    database_url: str,
    store: JobStore,
    llm: FakeLLM,
    listener: int,
    worker_with_a_secret: None,
) -> None:
    reached = await probe_job(tmp_path, database_url, store, llm, listener, sandbox="bwrap")

    assert reached == []


async def test_without_a_sandbox_the_same_tests_reach_autodev_s_secrets_files_ports_and_mirror(
    tmp_path: Path,
    database_url: str,
    store: JobStore,
    llm: FakeLLM,
    listener: int,
    worker_with_a_secret: None,
) -> None:
    reached = await probe_job(tmp_path, database_url, store, llm, listener, sandbox="none")

    assert any(r.startswith("secret in /proc/") for r in reached)
    assert {"read autodev.db", "read github-app.pem", f"connected to 127.0.0.1:{listener}"} <= set(reached)
    assert "wrote a hook into the mirror" in reached


async def test_with_no_sandbox_to_be_had_the_job_goes_on_without_running_the_tests_and_says_so(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    settings = llm_settings(
        tmp_path, database_url, llm, sandbox="bwrap", bwrap_path=str(tmp_path / "no-bwrap")
    )
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(make_project(tmp_path / "project")), str(remote))
    llm.reply_json(plan("Add a readme"))
    llm.reply_tool_calls(("create_file", {"path": "README.md", "content": "# calc\n"}))
    llm.reply_text("Added.")
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.SUCCEEDED

    view = await store.view(job_id)
    assert view.steps[0].test_passed is None and view.steps[0].test_output is None
    assert view.sandbox["runner"] is None
    assert view.sandbox_notice is not None
    assert view.sandbox_notice.startswith("tests not run: no sandbox — bwrap not found")
    assert "install bubblewrap" in view.sandbox_notice and "SANDBOX=none" in view.sandbox_notice


@pytest.mark.skipif(BWRAP_PROBLEM is not None, reason=f"{MISSING}bubblewrap ({BWRAP_PROBLEM})")
async def test_a_test_command_that_hangs_with_a_setsid_grandchild_ends_its_job_soon_after_the_timeout(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    """Regression: a `setsid` child holding stdout kept a 3 s timeout waiting 300 s."""
    seconds = random.randint(100_000, 999_999)  # this run's own: other test runs may share the machine
    hang = f"setsid sh -c 'sleep {seconds}' & sleep {seconds}"
    settings = llm_settings(tmp_path, database_url, llm, test_timeout_seconds=2, repair_rounds=0)
    remote = tmp_path / "remote.git"
    git(
        tmp_path,
        "clone",
        "-q",
        "--bare",
        str(make_project(tmp_path / "project", test_command=hang)),
        str(remote),
    )
    llm.reply_json(plan("Wait"))
    llm.reply_text("Nothing to change.")
    job_id = await submit(store)
    started = time.monotonic()

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.FAILED

    assert time.monotonic() - started < 20
    view = await store.view(job_id)
    assert "timed out" in (view.steps[0].test_output or "")
    assert not [pid for pid, args in command_lines() if args == f"sleep\x00{seconds}\x00".encode()]
