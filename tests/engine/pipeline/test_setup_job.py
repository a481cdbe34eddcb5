"""Jobs on a repository whose tests import a package only its setup installs (from a package index on
127.0.0.1: the tests have no internet), with real bubblewrap and real pip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import events
from engine.settings import Settings
from engine.store.jobs import JobStore
from engine.store.models import JobState
from engine.views import JobView
from tests.conftest import BWRAP_PROBLEM
from tests.engine.conftest import RecordingHost, git, llm_settings, make_project, plan, run, submit
from tests.support.fake_llm import FakeLLM
from tests.support.package_index import make_wheel, serve_directory
from tests.support.skip_policy import MISSING

pytestmark = pytest.mark.skipif(BWRAP_PROBLEM is not None, reason=f"{MISSING}bubblewrap ({BWRAP_PROBLEM})")

# `python` is the environment's venv (first on PATH), which has greetlib only when setup installed it; the
# second test checks that the index setup reached is out of the tests' reach.
TESTS = """\
import os
import socket
import unittest

import greetlib


class GreetTest(unittest.TestCase):
    def test_the_package_setup_installed_is_importable(self):
        self.assertTrue(greetlib.GREETING.startswith("hello"))
        self.assertEqual(os.environ["VIRTUAL_ENV"], "/autodev-env/venv")

    def test_the_index_setup_used_is_out_of_reach(self):
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
"""
TEST_COMMAND = "python -m unittest discover -s tests -v"


@pytest.fixture
def index(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "greetlib", "1.0", 'GREETING = "hello 1.0"\n')
    make_wheel(wheels, "greetlib", "1.1", 'GREETING = "hello 1.1"\n')
    with serve_directory(wheels) as served:
        yield served


def requirements(url: str, pin: str) -> str:
    return f"--no-index\n--find-links {url}\n{pin}\n"


def setup_project(tmp_path: Path, url: str, files: dict[str, str], config: str = "") -> Path:
    """A repository (its bare remote) whose tests need greetlib; `config` is added to its autodev.yml."""
    port = url.rstrip("/").rsplit(":", 1)[1]
    extra = {
        "tests/test_calc.py": TESTS.replace("{port}", port),
        "requirements.txt": requirements(url, "greetlib==1.0"),
        ".github/autodev.yml": f"test_command: {TEST_COMMAND!r}\n{config}",
        **files,
    }
    project = make_project(tmp_path / "project", extra=extra)
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(project), str(remote))
    return remote


async def one_job(settings: Settings, store: JobStore, llm: FakeLLM, remote: Path, **job: Any) -> JobView:
    llm.reply_json(plan("Look around"))
    llm.reply_text("Nothing to change.")
    job_id = await submit(store, **job)
    await run(job_id, settings, store, RecordingHost(remote))
    return await store.view(job_id)


def setups(view: JobView) -> list[dict[str, Any]]:
    return [e.data for e in view.events if e.type == events.SETUP]


def commit(project: Path, path: str, text: str) -> None:
    (project / path).write_text(text)
    git(project, "add", path)
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", f"change {path}")


async def test_setup_installs_the_package_once_per_lockfile_and_the_tests_run_without_network(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, index: tuple[str, list[str]]
) -> None:
    url, requested = index
    remote = setup_project(tmp_path, url, {}, "setup:\n  - pip install -r requirements.txt\n")
    settings = llm_settings(tmp_path, database_url, llm)

    first = await one_job(settings, store, llm, remote, title="first")

    assert first.state is JobState.SUCCEEDED, first.failure_reason
    assert [s["status"] for s in setups(first)] == ["running", "ran"]
    assert setups(first)[-1]["network"] is True
    assert first.sandbox["network"] is False  # the tests' network: none
    assert first.sandbox["setup"]["commands"] == ["pip install -r requirements.txt"]
    assert "Successfully installed greetlib-1.0" in first.sandbox["setup"]["tail"]
    output = first.steps[0].test_output or ""
    assert "Ran 2 tests" in output and output.rstrip().endswith("OK")  # both: installed, and offline
    assert any("greetlib-1.0" in path for path in requested)  # pip did fetch it from 127.0.0.1

    fetched = len(requested)
    second = await one_job(settings, store, llm, remote, title="second")

    assert second.state is JobState.SUCCEEDED, second.failure_reason
    assert [s["status"] for s in setups(second)] == ["reused"]
    assert second.sandbox["setup"]["status"] == "reused"
    assert len(requested) == fetched  # nothing installed again

    project = tmp_path / "project"
    commit(project, "requirements.txt", requirements(url, "greetlib==1.1"))
    git(project, "push", "-q", str(tmp_path / "remote.git"), "main")
    third = await one_job(settings, store, llm, remote, title="third")

    assert third.state is JobState.SUCCEEDED, third.failure_reason
    assert [s["status"] for s in setups(third)] == ["running", "ran"]
    assert "Successfully installed greetlib-1.1" in third.sandbox["setup"]["tail"]
    assert setups(third)[-1]["key"] != setups(first)[-1]["key"]


async def test_a_failing_setup_fails_the_test_round_with_its_log_and_a_clear_reason(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, index: tuple[str, list[str]]
) -> None:
    url, _ = index
    config = "setup:\n  - echo preparing the environment\n  - pip install -r requirements.txt\n"
    remote = setup_project(tmp_path, url, {"requirements.txt": requirements(url, "nosuchlib==9")}, config)
    settings = llm_settings(tmp_path, database_url, llm, repair_rounds=2)

    view = await one_job(settings, store, llm, remote)

    assert view.state is JobState.FAILED
    reason = view.failure_reason or ""
    assert reason.startswith("setup failed (exit code 1), so the tests did not run")
    assert "nosuchlib" in reason and "setup command 2 of 2 exited with 1" in reason
    step = view.steps[0]
    assert step.test_passed is False and step.test_command == "setup (.github/autodev.yml)"
    assert "+ echo preparing the environment" in (step.test_output or "")
    assert "No matching distribution found for nosuchlib==9" in (step.test_output or "")
    assert [s["status"] for s in setups(view)] == ["running", "failed"]
    assert "nosuchlib" in setups(view)[-1]["tail"]
    assert view.sandbox_notice is not None and view.sandbox_notice.startswith("setup failed (exit code 1)")
    tests = [e.data for e in view.events if e.type == events.TESTS]
    assert [t["passed"] for t in tests] == [False]  # one round: no repair was attempted
    assert llm.remaining == 0
    envs = settings.workspace_dir / "envs"  # type: ignore[operator]
    assert [p.name for p in next(envs.iterdir()).iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.parametrize(
    ("files", "source"),
    [
        (
            {
                ".github/workflows/copilot-setup-steps.yml": """\
on: workflow_dispatch
jobs:
  copilot-setup-steps:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: Install the dependencies
        run: |
          echo "from $SETUP_FROM"
          pip install -r requirements.txt
        env:
          SETUP_FROM: copilot
""",
            },
            ".github/workflows/copilot-setup-steps.yml",
        ),
        (
            {".openhands/setup.sh": "echo from openhands\npip install -r requirements.txt\n"},
            ".openhands/setup.sh",
        ),
    ],
)
async def test_copilot_setup_steps_and_openhands_setup_sh_are_the_setup_when_autodev_yml_has_none(
    tmp_path: Path,
    database_url: str,
    store: JobStore,
    llm: FakeLLM,
    index: tuple[str, list[str]],
    files: dict[str, str],
    source: str,
) -> None:
    url, _ = index
    remote = setup_project(tmp_path, url, files)
    settings = llm_settings(tmp_path, database_url, llm)

    view = await one_job(settings, store, llm, remote)

    assert view.state is JobState.SUCCEEDED, view.failure_reason
    setup = view.sandbox["setup"]
    assert setup["source"] == source and setup["status"] == "ran"
    assert ("from copilot" if "copilot" in source else "from openhands") in setup["tail"]
    if source.endswith(".yml"):
        assert setup["notes"] == [
            "step 1: skipped, `uses: actions/checkout@v4` (autodev runs only `run:` steps; the sandbox's "
            "toolchains stand in)"
        ]


async def test_a_dependency_the_model_adds_is_not_installed_setup_runs_only_the_base_s_lockfiles(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, index: tuple[str, list[str]]
) -> None:
    """The model's edits never run with setup's network: the tests get the base branch's environment."""
    url, requested = index
    remote = setup_project(tmp_path, url, {}, "setup: pip install -r requirements.txt\n")
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_json(plan("Upgrade greetlib"))
    edit = {"path": "requirements.txt", "old_text": "greetlib==1.0", "new_text": "greetlib==1.1"}
    llm.reply_tool_calls(("edit_file", edit))
    llm.reply_tool_calls(("run_tests", {}))
    llm.reply_text("Upgraded.")
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.SUCCEEDED

    view = await store.view(job_id)
    assert [s["status"] for s in setups(view)] == ["running", "ran"]  # once, before the tool's test run
    assert not any("greetlib-1.1" in path for path in requested)
    assert "+greetlib==1.1" in (view.steps[0].diff or "")
