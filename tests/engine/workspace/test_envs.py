"""Prepared environments with real bubblewrap: built once per key even by concurrent jobs, never seen half
built, read-only to the tests, evicted only when no job holds them; and a job's own one without a sandbox."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.settings import Settings
from engine.workspace.commands import command_runner, run_tests
from engine.workspace.envs import ENV_MOUNT, MARKER, EnvCache, SetupOutcome
from engine.workspace.sandbox import Mount, UnsandboxedRunner, sandbox_env
from engine.workspace.sandbox_fs import mount_args
from engine.workspace.setup import BaseFiles, SetupPlan
from engine.workspace.snapshot import base_files
from tests.conftest import BWRAP_PROBLEM, make_settings
from tests.support.skip_policy import MISSING

needs_bwrap = pytest.mark.skipif(BWRAP_PROBLEM is not None, reason=f"{MISSING}bubblewrap ({BWRAP_PROBLEM})")

HOLD_LOCK = """
import fcntl, sys
handle = open(sys.argv[1], "a")
fcntl.flock(handle, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""
# Stands for `npm ci`: it writes into the worktree's node_modules, which is the environment's.
NPM_CI = "mkdir -p node_modules/leftpad && echo 'module.exports = 1' > node_modules/leftpad/index.js"


@dataclass
class Repo:
    mirror: Path
    files: BaseFiles

    def worktree(self, path: Path) -> Path:
        """A job's worktree of main, as Workspace.worktree makes it."""
        git(self.mirror, "worktree", "add", "-q", "--detach", str(path), "origin/main")
        return path


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
async def repo(tmp_path: Path) -> Repo:
    source = tmp_path / "source"
    source.mkdir()
    (source / "package.json").write_text('{"name": "t"}\n')
    (source / "requirements.txt").write_text("\n")
    git(source, "init", "-q", "-b", "main")
    git(source, "add", "-A")
    git(source, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "initial")
    mirror = tmp_path / "work" / "mirrors" / "calc.git"
    git(tmp_path, "init", "-q", "--bare", str(mirror))
    git(mirror, "fetch", "-q", str(source), "+refs/heads/*:refs/remotes/origin/*")
    return Repo(mirror, await base_files(mirror, "origin/main"))


def cache(settings: Settings, job_id: str) -> EnvCache:
    return EnvCache(settings, command_runner(settings), "acme/calc", job_id)


async def prepare(jobs: EnvCache, plan: SetupPlan, repo: Repo, tree: Path) -> SetupOutcome:
    return await jobs.prepare(plan, repo.files, jobs.key(plan, repo.files), mirror=repo.mirror, worktree=tree)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, sandbox="bwrap")


@needs_bwrap
async def test_two_jobs_at_once_build_one_environment_from_the_base_which_the_tests_see_read_only(
    tmp_path: Path, settings: Settings, repo: Repo
) -> None:
    setup = f"echo built >> {ENV_MOUNT}/builds; pwd > {ENV_MOUNT}/pwd; git rev-parse HEAD > {ENV_MOUNT}/head"
    plan = SetupPlan(".github/autodev.yml", (setup, NPM_CI, "touch written-by-setup"))
    first, second = cache(settings, "job-1"), cache(settings, "job-2")
    trees = [repo.worktree(tmp_path / "one"), repo.worktree(tmp_path / "two")]
    (trees[0] / "requirements.txt").write_text("changed by the model\n")  # not what setup sees

    outcomes = await asyncio.gather(
        prepare(first, plan, repo, trees[0]), prepare(second, plan, repo, trees[1])
    )

    assert sorted(o.status for o in outcomes) == ["ran", "reused"]
    env = first.root / outcomes[0].key
    assert (env / "builds").read_text() == "built\n"
    assert (env / "pwd").read_text() == "/workspace/calc\n"  # the path the tests see their worktree at
    assert (env / "head").read_text().strip() == repo.files.commit  # a checkout of the base, git works
    assert (env / "venv" / "bin" / "python").exists() and (env / "node_modules" / "leftpad").is_dir()
    check = (
        'test -f node_modules/leftpad/index.js && test "$(command -v python)" = /autodev-env/venv/bin/python'
        " && touch node_modules/.cache/ok && ! touch node_modules/new 2>/dev/null"
        " && ! touch /autodev-env/new 2>/dev/null && test ! -e written-by-setup && pwd"
    )
    options = outcomes[1].options
    result = await run_tests(check, trees[1], runner=second.runner, settings=settings, options=options)
    assert result.passed, result.output
    assert result.output.strip() == "/workspace/calc"  # the same path in every job
    assert not (env / "node_modules" / ".cache" / "ok").exists()  # a tmpfs: nothing kept
    assert list((trees[1] / "node_modules").iterdir()) == []  # the worktree holds only the mount point
    assert [p.name for p in first.root.iterdir() if p.name.startswith(".")] == []  # no checkout left
    await first.close()
    await second.close()


@needs_bwrap
async def test_a_half_built_environment_is_never_used_and_a_failed_one_leaves_nothing(
    tmp_path: Path, settings: Settings, repo: Repo
) -> None:
    jobs = cache(settings, "job-1")
    tree = repo.worktree(tmp_path / "tree")
    plan = SetupPlan(".github/autodev.yml", (f"test ! -e {ENV_MOUNT}/left-over",))
    key = jobs.key(plan, repo.files)
    for stale in (jobs.root / key, jobs.root / f".build-{key}-dead"):  # a crash mid-build; no marker
        stale.mkdir(parents=True)
        (stale / "left-over").write_text("half\n")

    outcome = await prepare(jobs, plan, repo, tree)

    assert outcome.status == "ran", outcome.log
    assert not (jobs.root / key / "left-over").exists() and not (jobs.root / f".build-{key}-dead").exists()
    await jobs.close()
    failed = await prepare(jobs, SetupPlan(".github/autodev.yml", ("echo half way; exit 7",)), repo, tree)
    assert failed.status == "failed" and failed.reason == "exit code 7" and failed.options is None
    assert "half way" in failed.log and "[autodev: setup command 1 of 1 exited with 7]" in failed.log
    assert sorted(p.name for p in jobs.root.iterdir() if not p.name.endswith(".lock")) == [key]


@needs_bwrap
async def test_a_job_waits_for_a_builder_in_another_process_and_then_reuses_its_environment(
    tmp_path: Path, settings: Settings, repo: Repo
) -> None:
    jobs = cache(settings, "job-1")
    plan = SetupPlan(".github/autodev.yml", ("exit 1",))  # would fail: it must not run
    key = jobs.key(plan, repo.files)
    jobs.root.mkdir(parents=True)
    builder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_LOCK, str(jobs.root / f"{key}.lock"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert builder.stdout is not None and builder.stdin is not None
    assert await builder.stdout.readline() == b"locked\n"

    waiting = asyncio.ensure_future(prepare(jobs, plan, repo, repo.worktree(tmp_path / "tree")))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    (jobs.root / key).mkdir()
    (jobs.root / key / MARKER).write_text(json.dumps({"log": "built elsewhere", "seconds": 3.0}))
    builder.stdin.close()  # the builder is done: its lock goes with it
    outcome = await asyncio.wait_for(waiting, 30)
    await builder.wait()

    assert outcome.status == "reused" and outcome.log == "built elsewhere"
    await jobs.close()


def test_eviction_keeps_the_newest_and_any_environment_a_job_holds(
    tmp_path: Path, settings: Settings
) -> None:
    jobs = cache(settings, "job-1")
    jobs.root.mkdir(parents=True)
    for age, key in enumerate(["new", "newer", "held", "old", "oldest"]):
        (jobs.root / key).mkdir()
        (jobs.root / key / MARKER).write_text("{}")
        os.utime(jobs.root / key / MARKER, (1e9 - age, 1e9 - age))
    (jobs.root / "newest").mkdir()
    (jobs.root / "newest" / MARKER).write_text("{}")
    with open(jobs.root / "held.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_SH)  # a job's tests use it
        jobs._evict(keep="newest")

    assert sorted(p.name for p in jobs.root.iterdir() if not p.name.endswith(".lock")) == [
        "held", "new", "newer", "newest",
    ]  # fmt: skip


async def test_without_a_sandbox_the_environment_is_the_job_s_own_at_its_real_path(
    tmp_path: Path, repo: Repo
) -> None:
    settings = make_settings(tmp_path, sandbox="none")
    jobs = EnvCache(settings, UnsandboxedRunner(), "acme/calc", "job-1")
    tree = repo.worktree(tmp_path / "tree")

    outcome = await prepare(jobs, SetupPlan(".github/autodev.yml", (NPM_CI,)), repo, tree)

    assert outcome.status == "ran", outcome.log
    assert outcome.options is not None and outcome.options.mounts == () and outcome.options.workdir_at is None
    own = jobs.root / "job-job-1"
    assert outcome.options.variables["VIRTUAL_ENV"] == str(own / "venv")
    result = await run_tests(
        "command -v python", tree, runner=jobs.runner, settings=settings, options=outcome.options
    )
    assert result.output.strip() == str(own / "venv" / "bin" / "python")
    assert (tree / "node_modules" / "leftpad").is_dir()  # in the worktree: nothing to mount it from
    await jobs.close()
    assert not own.exists()


async def test_the_unsandboxed_runner_refuses_mounts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="need a sandbox"):
        await UnsandboxedRunner().run("true", tmp_path, env=sandbox_env(), workdir_at=Path("/workspace/x"))


def test_added_mounts_go_after_the_directories_above_them_and_keep_the_hidden_path_check(
    tmp_path: Path,
) -> None:
    tree, env, data = tmp_path / "tree", tmp_path / "env", tmp_path / "data"
    for path in (tree / ".git", env / "node_modules", data):
        path.mkdir(parents=True)
    at = Path("/workspace/calc")
    mounts = [
        Mount(None, at / "node_modules" / ".cache"),
        Mount(env / "node_modules", at / "node_modules"),
        Mount(env, ENV_MOUNT, writable=True),
    ]
    args = mount_args(tree, [], [data], mounts=mounts, at=at)
    tail = args[args.index("--bind", args.index("/tmp/home")) :]

    assert tail == [
        "--bind", str(env), "/autodev-env",
        "--bind", str(tree), "/workspace/calc",
        "--ro-bind", str(tree / ".git"), "/workspace/calc/.git",
        "--ro-bind", str(env / "node_modules"), "/workspace/calc/node_modules",
        "--tmpfs", "/workspace/calc/node_modules/.cache",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="hidden"):
        mount_args(tree, [], [data], mounts=[Mount(tmp_path, Path("/x"))])
