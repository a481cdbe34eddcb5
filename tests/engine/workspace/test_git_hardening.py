"""Git run by autodev after the repository's code has run in the worktree: no hook runs, no configuration
the repository planted is obeyed, and the token never stands on a command line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.ports import GitRemote
from engine.workspace.git import Workspace
from tests.conftest import make_settings
from tests.engine.conftest import git, make_project

TOKEN = "ghs_hardeningTestToken0123456789"


def executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def planted(marker: Path) -> str:
    return f"#!/bin/sh\necho ran >> {marker}\n"


async def test_hooks_in_the_mirror_never_run_on_commit_or_push(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(project), str(bare))
    workspace = Workspace(make_settings(tmp_path))
    remote = GitRemote(url=str(bare))
    mirror = await workspace.sync("acme/p", remote)
    marker = tmp_path / "hook-ran"
    for hook in ("pre-commit", "commit-msg", "post-commit", "pre-push", "reference-transaction"):
        executable(mirror / "hooks" / hook, planted(marker))

    async with workspace.worktree(mirror, "job1", branch="autodev/x", base="main", remote=remote) as tree:
        (tree.path / "a.txt").write_text("a\n")
        await tree.commit("add a", ["a.txt"])
        await tree.push()

    assert not marker.exists()
    assert git(bare, "log", "--format=%s", "-1", "autodev/x").strip() == "add a"


async def test_a_rewritten_dot_git_file_is_not_followed(tmp_path: Path) -> None:
    """The repository's tests could point the worktree's `.git` at a git directory of their own whose
    config runs a program (core.fsmonitor, hooks): autodev names its git directory on every call."""
    project = make_project(tmp_path / "p")
    workspace = Workspace(make_settings(tmp_path))
    remote = GitRemote(url=str(project))
    mirror = await workspace.sync("acme/p", remote)
    marker = tmp_path / "planted-ran"

    async with workspace.worktree(mirror, "job1", branch="autodev/x", base="main", remote=remote) as tree:
        evil = tree.path / "evil-git"
        git(tmp_path, "init", "-q", str(evil))
        executable(evil / ".git" / "hooks" / "pre-commit", planted(marker))
        executable(tree.path / "fsmonitor.sh", planted(marker))
        git(evil, "config", "core.fsmonitor", str(tree.path / "fsmonitor.sh"))
        git(evil, "config", "core.hooksPath", str(evil / ".git" / "hooks"))
        (tree.path / ".git").write_text(f"gitdir: {evil / '.git'}\n")
        (tree.path / "b.txt").write_text("b\n")

        sha = await tree.commit("add b", ["b.txt"])

        assert not marker.exists()
        assert git(mirror, "log", "--format=%s", "-1", sha).strip() == "add b"


async def test_the_token_travels_in_git_s_environment_never_on_its_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every process on the machine can read /proc/<pid>/cmdline; only its owner reads its environment."""
    project = make_project(tmp_path / "p")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(project), str(bare))
    calls = tmp_path / "calls"
    real_git = next(
        Path(d) / "git" for d in os.environ["PATH"].split(os.pathsep) if (Path(d) / "git").is_file()
    )
    # A `git` first on PATH that records how it was called, then runs the real one.
    executable(
        tmp_path / "bin" / "git",
        f'#!/bin/sh\nprintf "%s\\n" "ARGV $*" >> {calls}\n'
        f'env | grep "^GIT_CONFIG_VALUE" >> {calls}\nexec {real_git} "$@"\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    workspace = Workspace(make_settings(tmp_path))
    remote = GitRemote(url=str(bare), http_headers={"Authorization": f"Basic {TOKEN}"})

    mirror = await workspace.sync("acme/p", remote)
    async with workspace.worktree(mirror, "job1", branch="autodev/x", base="main", remote=remote) as tree:
        (tree.path / "c.txt").write_text("c\n")
        await tree.commit("add c", ["c.txt"])
        await tree.push()

    lines = calls.read_text().splitlines()
    argv = [line for line in lines if line.startswith("ARGV")]
    assert any(" fetch " in line for line in argv) and any(" push " in line for line in argv)
    assert not [line for line in argv if TOKEN in line]
    assert f"Authorization: Basic {TOKEN}" in "\n".join(lines)  # it did reach git, through the environment
