"""Which setup a repository asks for (autodev.yml, Copilot's setup steps, OpenHands' script), and the key of
the environment it prepares."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import PermanentFailure
from engine.repo_config import RepoConfig, parse_repo_config
from engine.workspace.setup import COPILOT_PATH, OPENHANDS_PATH, SetupPlan, find_setup, fingerprint, lockfiles

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


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_setup_is_a_list_or_one_command_and_an_empty_command_is_refused() -> None:
    assert parse_repo_config("setup: pip install -e .\n").setup == ["pip install -e ."]
    assert parse_repo_config("setup:\n  - npm ci\n  - npm run build\n").setup == ["npm ci", "npm run build"]
    assert parse_repo_config("setup: []\n").setup == []
    assert parse_repo_config("test_command: make test\n").setup is None
    with pytest.raises(PermanentFailure, match="setup"):
        parse_repo_config("setup:\n  - ''\n")


def test_autodev_yml_wins_and_an_empty_list_turns_setup_off(tmp_path: Path) -> None:
    write(tmp_path, {COPILOT_PATH: COPILOT, OPENHANDS_PATH: "pip install .\n"})

    assert find_setup(tmp_path, RepoConfig(setup=["make deps"])) == SetupPlan(
        ".github/autodev.yml", ("make deps",)
    )
    assert find_setup(tmp_path, RepoConfig(setup=[])) is None
    assert find_setup(tmp_path, RepoConfig()).source == COPILOT_PATH  # type: ignore[union-attr]
    (tmp_path / COPILOT_PATH).unlink()
    assert find_setup(tmp_path, RepoConfig()) == SetupPlan(OPENHANDS_PATH, (f"sh {OPENHANDS_PATH}",))
    (tmp_path / OPENHANDS_PATH).unlink()
    assert find_setup(tmp_path, RepoConfig()) is None


def test_copilot_setup_steps_run_steps_in_order_and_what_was_skipped_is_said(tmp_path: Path) -> None:
    plan = find_setup(write(tmp_path, {COPILOT_PATH: COPILOT}), RepoConfig())

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


def test_a_copilot_file_without_the_job_is_a_plan_with_nothing_to_run_and_says_why(tmp_path: Path) -> None:
    plan = find_setup(write(tmp_path, {COPILOT_PATH: "jobs:\n  build:\n    steps: []\n"}), RepoConfig())

    assert plan is not None and plan.commands == ()
    assert plan.notes == ("not read: no jobs.copilot-setup-steps.steps (KeyError)",)


def test_setup_files_that_are_symlinks_out_of_the_worktree_are_not_read(tmp_path: Path) -> None:
    """The worktree is the attacker's: a symlink to the worker's files (or /dev/zero) is not followed."""
    worktree = tmp_path / "tree"
    secret = write(tmp_path, {"worker.env": "jobs:\n  copilot-setup-steps:\n    steps:\n      - run: x\n"})
    (worktree / ".github" / "workflows").mkdir(parents=True)
    (worktree / COPILOT_PATH).symlink_to(secret / "worker.env")
    (worktree / ".openhands").mkdir()
    (worktree / OPENHANDS_PATH).symlink_to("/dev/zero")
    (worktree / "poetry.lock").symlink_to(secret / "worker.env")

    assert find_setup(worktree, RepoConfig()) is None
    plan = SetupPlan(".github/autodev.yml", ("make deps",))
    before = fingerprint(worktree, plan)
    (secret / "worker.env").write_text("changed\n")
    assert fingerprint(worktree, plan) == before


def test_the_key_follows_the_lockfiles_and_the_commands_not_the_code(tmp_path: Path) -> None:
    tree = write(
        tmp_path, {"requirements.txt": "a==1\n", "requirements/dev.txt": "b==1\n", "app.py": "x = 1\n"}
    )
    plan = SetupPlan(".github/autodev.yml", ("pip install -r requirements.txt",))
    key = fingerprint(tree, plan)

    assert lockfiles(tree) == ["requirements.txt", "requirements/dev.txt"]
    write(tree, {"app.py": "x = 2\n"})
    assert fingerprint(tree, plan) == key
    write(tree, {"requirements/dev.txt": "b==2\n"})
    assert fingerprint(tree, plan) != key
    key = fingerprint(tree, plan)
    write(tree, {"package-lock.json": "{}\n"})
    assert fingerprint(tree, plan) != key
    key = fingerprint(tree, plan)
    assert fingerprint(tree, SetupPlan(".github/autodev.yml", ("pip install -e .",))) != key
    assert fingerprint(tree, plan, "another toolchain") != key
