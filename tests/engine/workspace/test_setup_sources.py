"""Which setup a repository asks for (autodev.yml, Copilot's setup steps, OpenHands' script), and the key of
the environment it prepares."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from engine.errors import PermanentFailure
from engine.repo_config import RepoConfig, parse_repo_config
from engine.workspace.setup import COPILOT_PATH, OPENHANDS_PATH, BaseFiles, SetupPlan, find_setup, fingerprint
from engine.workspace.snapshot import base_files

COPILOT = """\
on: workflow_dispatch
jobs:
  copilot-setup-steps:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: Python deps
        run: pip install -e .[test]
      - name: Frontend
        working-directory: web ui
        env:
          NODE_ENV: test
        run: |
          npm ci
          npm run build
      - name: Private registry
        run: npm config set //registry/:_authToken ${{ secrets.NPM_TOKEN }}
      - name: Only on Windows
        if: runner.os == 'Windows'
        run: choco install thing
      - name: A Python step
        shell: python
        run: print("hi")
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def repository(tmp_path: Path, files: dict[str, str], symlinks: dict[str, str] | None = None) -> Path:
    """A bare mirror whose main holds `files` (and `symlinks`: name → target), as Workspace.sync makes it."""
    source = tmp_path / "source"
    for name, text in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    for name, target in (symlinks or {}).items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).symlink_to(target)
    git(source, "init", "-q", "-b", "main")
    git(source, "add", "-A")
    git(source, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "files")
    mirror = tmp_path / "mirror.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(mirror))
    git(mirror, "fetch", "-q", str(source), "+refs/heads/*:refs/remotes/origin/*")
    return mirror


def files(tmp_path: Path, contents: dict[str, str], symlinks: dict[str, str] | None = None) -> BaseFiles:
    return asyncio.run(base_files(repository(tmp_path, contents, symlinks), "origin/main"))


def test_setup_is_a_list_or_one_command_and_an_empty_command_is_refused() -> None:
    assert parse_repo_config("setup: pip install -e .\n").setup == ["pip install -e ."]
    assert parse_repo_config("setup:\n  - npm ci\n  - npm run build\n").setup == ["npm ci", "npm run build"]
    assert parse_repo_config("setup: []\n").setup == []
    assert parse_repo_config("test_command: make test\n").setup is None
    with pytest.raises(PermanentFailure, match="setup"):
        parse_repo_config("setup:\n  - ''\n")


def test_autodev_yml_wins_and_an_empty_list_turns_setup_off() -> None:
    both = BaseFiles("c", {COPILOT_PATH: "1", OPENHANDS_PATH: "2"}, {COPILOT_PATH: COPILOT})

    assert find_setup(both, RepoConfig(setup=["make deps"])) == SetupPlan(
        ".github/autodev.yml", ("make deps",)
    )
    assert find_setup(both, RepoConfig(setup=[])) is None
    assert find_setup(both, RepoConfig()).source == COPILOT_PATH  # type: ignore[union-attr]
    openhands = BaseFiles("c", {OPENHANDS_PATH: "2"}, {})
    assert find_setup(openhands, RepoConfig()) == SetupPlan(OPENHANDS_PATH, (f"sh {OPENHANDS_PATH}",))
    assert find_setup(BaseFiles("c", {"uv.lock": "3"}, {}), RepoConfig()) is None


def test_copilot_setup_steps_run_steps_in_order_and_what_was_skipped_is_said(tmp_path: Path) -> None:
    plan = find_setup(files(tmp_path, {COPILOT_PATH: COPILOT}), RepoConfig())

    assert plan is not None
    assert plan.commands == (
        "pip install -e .[test]",
        "export NODE_ENV=test\ncd 'web ui'\nnpm ci\nnpm run build",
    )
    assert [n.split(",")[0] for n in plan.notes] == [
        "step 1: skipped",
        "step 4 (Private registry): skipped",
        "step 5 (Only on Windows): skipped",
        "step 6 (A Python step): skipped",
    ]
    assert "`uses: actions/checkout@v4`" in plan.notes[0] and "${{" in plan.notes[1]
    assert "if: runner.os == 'Windows'" in plan.notes[2] and "shell: python" in plan.notes[3]


def test_a_copilot_file_without_the_job_is_a_plan_with_nothing_to_run_and_says_why() -> None:
    text = "jobs:\n  build:\n    steps: []\n"
    plan = find_setup(BaseFiles("c", {COPILOT_PATH: "1"}, {COPILOT_PATH: text}), RepoConfig())

    assert plan is not None and plan.commands == ()
    assert plan.notes == ("not read: no jobs.copilot-setup-steps.steps (KeyError)",)


def test_the_base_commit_s_files_are_read_from_git_and_symlinks_are_not_followed(tmp_path: Path) -> None:
    """A symlink is a blob holding a path: the worker's files (or /dev/zero) are never read through one."""
    outside = tmp_path / "worker.env"
    outside.write_text("jobs:\n  copilot-setup-steps:\n    steps:\n      - run: cat /etc/shadow\n")
    found = files(
        tmp_path,
        {
            "requirements.txt": "a==1\n",
            "requirements/dev.txt": "b==1\n",
            "app.py": "x = 1\n",
            "src/uv.lock": "",
        },
        {COPILOT_PATH: str(outside), OPENHANDS_PATH: "/dev/zero", "poetry.lock": str(outside)},
    )

    assert sorted(found.blobs) == ["requirements.txt", "requirements/dev.txt"]
    assert found.texts == {} and len(found.commit) == 40
    assert find_setup(found, RepoConfig()) is None


def test_the_key_follows_the_lockfiles_and_the_commands_not_the_code() -> None:
    plan = SetupPlan(".github/autodev.yml", ("pip install -r requirements.txt",))
    base = BaseFiles("commit-1", {"requirements.txt": "blob-1"}, {})
    key = fingerprint(base, plan)

    assert fingerprint(BaseFiles("commit-2", {"requirements.txt": "blob-1"}, {}), plan) == key
    assert fingerprint(BaseFiles("commit-2", {"requirements.txt": "blob-2"}, {}), plan) != key
    assert (
        fingerprint(BaseFiles("c", {"requirements.txt": "blob-1", "package-lock.json": "x"}, {}), plan) != key
    )
    assert fingerprint(base, SetupPlan(".github/autodev.yml", ("pip install -e .",))) != key
    assert fingerprint(base, plan, "another toolchain") != key
