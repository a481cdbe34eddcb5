"""Workspace (mirror cache, worktrees, branches), the test runner, the repo config and AGENTS.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from engine.agents.rules import load_agent_rules, parse_agents_md
from engine.errors import PermanentFailure, TransientFailure
from engine.ports import GitRemote
from engine.repo_config import parse_repo_config
from engine.store.jobs import JobStore
from engine.store.models import JobState
from engine.workspace import git as workspace_module
from engine.workspace.commands import command_runner, detect_test_command, run_tests
from engine.workspace.git import Workspace, branch_name
from tests.conftest import make_settings
from tests.engine.conftest import (
    RecordingHost,
    branch_log,
    git,
    llm_settings,
    make_project,
    plan,
    run,
    submit,
)
from tests.support.fake_llm import FakeLLM


def test_branch_names_follow_the_issue_or_the_job_id() -> None:
    assert branch_name("abcdef0123", "Fix: the Login page!", 42) == "autodev/42-fix-the-login-page"
    assert branch_name("abcdef0123", "Fix it", None) == "autodev/abcdef01-fix-it"


async def test_a_reused_mirror_is_fetched_not_cloned_and_the_worktree_is_removed(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    workspace = Workspace(make_settings(tmp_path))
    remote = GitRemote(url=str(project))
    mirror = await workspace.sync("acme/p", remote)
    marker = mirror / "autodev-marker"
    marker.write_text("same directory")
    (project / "new.txt").write_text("new\n")
    git(project, "add", "new.txt")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "second")

    assert await workspace.sync("acme/p", remote) == mirror and marker.exists()
    async with workspace.worktree(mirror, "job1", branch="autodev/x", base="main", remote=remote) as tree:
        assert (tree.path / "new.txt").read_text() == "new\n"
        path = tree.path
    assert not path.exists()
    assert str(project) not in git(mirror, "config", "--list").replace(f"remote.origin.url={project}", "")


async def test_a_worktree_commit_gives_its_diff_and_is_pushed_once(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(project), str(bare))
    workspace = Workspace(make_settings(tmp_path))
    remote = GitRemote(url=str(bare))
    mirror = await workspace.sync("acme/p", remote)
    async with workspace.worktree(mirror, "job1", branch="autodev/x", base="main", remote=remote) as tree:
        (tree.path / "new.txt").write_text("new\n")
        sha = await tree.commit("Add new.txt", ["new.txt"])
        empty = await tree.commit("Nothing", [])

        assert empty == await tree.head() and sha != empty
        assert await tree.diff(empty) == ""
        assert await tree.diff(sha) == git(tree.path, "show", "--format=", "--no-color", sha)
        assert "+new" in await tree.diff(sha)
        assert await tree.push() == empty == await tree.push()
    assert git(bare, "rev-parse", "refs/heads/autodev/x").strip() == empty


async def test_a_worktree_left_registered_without_its_folder_does_not_block_the_branch(
    tmp_path: Path,
) -> None:
    import shutil

    project = make_project(tmp_path / "p")
    workspace = Workspace(make_settings(tmp_path))
    remote = GitRemote(url=str(project))
    mirror = await workspace.sync("acme/p", remote)
    gone = tmp_path / "gone"
    git(mirror, "worktree", "add", "--quiet", "-B", "autodev/y", str(gone), "origin/main")
    shutil.rmtree(gone)  # a worker died and its folder was cleaned away; git still lists the worktree

    async with workspace.worktree(mirror, "job2", branch="autodev/y", base="main", remote=remote) as tree:
        assert (tree.path / "calc.py").is_file()
    assert "gone" not in git(mirror, "worktree", "list")


async def test_the_mirror_cache_evicts_the_least_recently_used_repository(tmp_path: Path) -> None:
    one, two = make_project(tmp_path / "one"), make_project(tmp_path / "two")
    workspace = Workspace(make_settings(tmp_path, mirror_cache_max_bytes=1))
    first = await workspace.sync("acme/one", GitRemote(url=str(one)))
    second = await workspace.sync("acme/two", GitRemote(url=str(two)))
    assert second.exists() and not first.exists()


def test_measuring_a_mirror_skips_files_a_fetch_moved_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: evict() measured a mirror another job fetched into; a moved tmp_obj failed that job."""
    (tmp_path / "pack").write_bytes(b"x" * 10)
    listing: list[tuple[str, list[str], list[str]]] = [(str(tmp_path), [], ["pack", "tmp_obj_moved_away"])]
    monkeypatch.setattr(workspace_module.os, "walk", lambda path: iter(listing))
    assert workspace_module._size(tmp_path) == 10


async def test_git_errors_never_show_the_auth_header(
    tmp_path: Path, database_url: str, store: JobStore
) -> None:
    settings = make_settings(tmp_path, database_url=database_url, openai_api_key="sk-x-abcdef")
    host = RecordingHost(tmp_path / "missing.git")
    job_id = await submit(store)
    with pytest.raises(TransientFailure, match="fetching acme/calc failed") as caught:
        await run(job_id, settings, store, host)
    assert "does not appear to be a git repository" in caught.value.reason
    assert "ghs_secret_token_123" not in caught.value.reason


async def test_the_test_runner_keeps_the_tail_and_stops_at_the_timeout(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, test_output_max_bytes=100, test_timeout_seconds=30)
    repo = tmp_path / "repo"
    repo.mkdir()
    loud = f"{sys.executable} -c \"print('x' * 1000); print('END')\""
    result = await run_tests(loud, repo, runner=command_runner(settings), settings=settings)
    assert result.passed and "END\n" in result.output and len(result.output) <= 200
    assert result.reason == "output over 100 bytes, kept the last 100"
    settings = make_settings(tmp_path, test_timeout_seconds=0.5)
    slow = await run_tests("sleep 30", repo, runner=command_runner(settings), settings=settings)
    assert not slow.passed and slow.timed_out and "stopped after 0.5 s: timed out" in slow.output


async def test_the_test_command_sees_no_secret_of_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"GITHUB_TOKEN": "ghs_a1", "AWS_SECRET_ACCESS_KEY": "b2", "DATABASE_URL": "c3",
                        "DB_PASSWORD": "g7", "INNOCENT": "has sk-live-secret inside"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    settings = make_settings(tmp_path, sandbox_readonly_paths=[])  # autodev's venv shown to nothing

    repo = tmp_path / "repo"
    repo.mkdir()
    result = await run_tests("env", repo, runner=command_runner(settings), settings=settings)

    names = {line.split("=", 1)[0] for line in result.output.splitlines() if "=" in line}
    assert names <= {
        "PATH",
        "PYTHONDONTWRITEBYTECODE",
        "CI",
        "LANG",
        "LC_ALL",
        "HOME",
        "TMPDIR",
        "PWD",
        "SHLVL",
        "_",
    }
    assert str(Path(sys.prefix) / "bin") not in result.output.split("PATH=")[1].split()[0].split(":")


def test_the_test_command_is_detected_from_the_repository(tmp_path: Path) -> None:
    assert detect_test_command(tmp_path) is None
    assert detect_test_command(tmp_path, "Test command: `make check`\n") == "make check"
    (tmp_path / "go.mod").write_text("module x\n")
    assert detect_test_command(tmp_path) == "go test ./..."
    (tmp_path / "package.json").write_text('{"scripts": {"test": "jest"}}')
    assert detect_test_command(tmp_path) == "npm test"


def test_a_malformed_repo_config_names_the_file_and_the_problem() -> None:
    assert parse_repo_config("test_command: make t\nbudget_usd: 2\n").budget_usd == 2
    with pytest.raises(PermanentFailure, match=r"\.github/autodev\.yml is not valid YAML"):
        parse_repo_config("test_command: [unclosed")
    with pytest.raises(PermanentFailure, match=r"autodev\.yml is invalid: budget_usd"):
        parse_repo_config("budget_usd: -1\n")
    with pytest.raises(PermanentFailure, match="testcommand"):
        parse_repo_config("testcommand: x\n")


def test_agents_md_has_the_roles_and_policies_and_a_stable_hash() -> None:
    rules = load_agent_rules()
    assert {"planner", "coder"} <= set(rules.roles) and "secrets" in rules.policies
    assert "Policies" in rules.system_prompt("coder", "use tabs") and "use tabs" in rules.system_prompt(
        "coder", "use tabs"
    )
    assert len(rules.sha256) == 64
    with pytest.raises(ValueError, match="## Coder"):
        parse_agents_md("## Policies\nx\n## Planner\ny\n")


async def test_a_resumed_job_skips_its_done_steps_and_reuses_the_pr(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_json(plan("First", "Second"))
    llm.reply_tool_calls(("create_file", {"path": "one.txt", "content": "1\n"}))
    llm.reply_text("one")
    llm.reply_status(400, error="the worker died here")  # ends the first attempt during step 2
    host = RecordingHost(remote)
    job_id = await submit(store)
    assert await run(job_id, settings, store, host) is JobState.FAILED

    # Put the job back to running as a worker crash would have left it, and run it again.
    from sqlalchemy import update

    from engine.store.db import session_scope
    from engine.store.models import Job

    async with session_scope(store.sessions) as session:
        await session.execute(update(Job).where(Job.id == job_id).values(state="running", finished_at=None))
    llm.reply_tool_calls(("create_file", {"path": "two.txt", "content": "2\n"}))
    llm.reply_text("two")
    assert await run(job_id, settings, store, host) is JobState.SUCCEEDED

    view = await store.view(job_id)
    assert branch_log(remote, view.branch or "") == ["Second", "First"]
    assert [c[0] for c in host.calls].count("open") == 1 and len(host.prs) == 1
    assert "resumed" in [e.type for e in view.events]
    assert (await store.get(job_id)).agents_md_hash == load_agent_rules().sha256
