"""Git workspaces: a bare mirror per repository (fetched when reused), one worktree and branch per job.

Git here runs with the repository's code as an adversary (it ran in the worktree just before):
- credentials travel as `http.extraHeader` in the environment of the one git call that needs them
  (GIT_CONFIG_COUNT…), never on a command line (`/proc/*/cmdline`), in a URL or in a config file, and are
  scrubbed from any error text;
- hooks never run (`core.hooksPath` is an empty place) and no fsmonitor is started, for every call;
- a worktree's git directory is named on every call (`--git-dir`), never read from the worktree's `.git`
  file, which the repository's commands could have rewritten to point at a configuration of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import stat
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import PermanentFailure, TransientFailure
from engine.ports import GitRemote
from engine.settings import Settings

log = logging.getLogger(__name__)

AUTHOR = ("autodev", "autodev@users.noreply.localhost")
DIFF_MAX_CHARS = 200_000
SIZE_FILE = "autodev-size"
FETCH_REFSPEC = "+refs/heads/*:refs/remotes/origin/*"
GIT_TIMEOUT_S = 600.0
BRANCH_PREFIX = "autodev/"  # every branch autodev pushes: the GitHub App tells its own pull requests by it
# Set on every call, above any config file: no hook runs, no fsmonitor daemon starts, no `ext::` transport.
SAFE_CONFIG = (("core.hooksPath", os.devnull), ("core.fsmonitor", "false"), ("protocol.ext.allow", "never"))


class GitError(Exception):
    pass


def slugify(text: str, max_len: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_len].rstrip("-") or "task"


def branch_name(job_id: str, title: str, issue_number: int | None) -> str:
    prefix = str(issue_number) if issue_number is not None else job_id[:8]
    return f"{BRANCH_PREFIX}{prefix}-{slugify(title)}"


def git_environment(config: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """The environment of every git call: no GIT_* of the worker's, no prompt, hooks and fsmonitor off,
    and `config` (credentials) passed as GIT_CONFIG_KEY_n/VALUE_n, which outrank every config file."""
    pairs = [*SAFE_CONFIG, *config]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "LC_ALL": "C",
        "GIT_CONFIG_COUNT": str(len(pairs)),
    }
    for i, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


async def git(
    *args: str,
    cwd: Path | None = None,
    remote: GitRemote | None = None,
    secrets: tuple[str, ...] = (),
) -> str:
    """Run git; raise GitError with the output (credentials scrubbed) when it fails or hangs."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=git_environment(remote.git_config() if remote else []),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), GIT_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise GitError(f"git {_subcommand(args)} did not finish within {GIT_TIMEOUT_S:g} s") from None
    if proc.returncode != 0:
        text = f"git {_subcommand(args)} failed: {err.decode(errors='replace').strip()}"
        hidden = [*(remote.http_headers.values() if remote else []), *secrets]
        for value in hidden:
            for piece in (value, *value.split()):
                if len(piece) >= 6:
                    text = text.replace(piece, "[redacted]")
        raise GitError(text[:2000])
    return out.decode(errors="replace")


def _subcommand(args: Sequence[str]) -> str:
    """`commit` of `git --git-dir=… -c user.name=… commit …`, for messages."""
    rest = list(args)
    while rest and rest[0].startswith("-"):
        rest = rest[2:] if rest[0] == "-c" else rest[1:]
    return rest[0] if rest else "git"


@dataclass
class Worktree:
    path: Path
    mirror: Path
    branch: str
    base: str
    remote: GitRemote
    # The worktree's own git directory (inside the mirror), read when the worktree was made: every call
    # names it, so a `.git` file the repository's commands rewrote is never followed.
    gitdir: Path
    # What this object did, so that it need not ask git again: the last commit it made (with its diff)
    # and the last commit it pushed. Every git call is a process start, on the worker's event loop.
    _committed: tuple[str, str] | None = field(default=None, repr=False)
    _pushed: str | None = field(default=None, repr=False)

    async def _git(self, *args: str, remote: GitRemote | None = None) -> str:
        return await git(
            f"--git-dir={self.gitdir}", f"--work-tree={self.path}", *args, cwd=self.path, remote=remote
        )

    async def head(self) -> str:
        return (await self._git("rev-parse", "HEAD")).strip()

    async def contains(self, sha: str) -> bool:
        try:
            await self._git("merge-base", "--is-ancestor", sha, "HEAD")
        except GitError:
            return False
        return True

    async def commit(self, message: str, paths: list[str]) -> str:
        """One commit of exactly `paths` (what the edit guard wrote); empty when nothing changed."""
        if paths:
            # Not `git add`: it fails on a path that is gone and was never tracked (a file the model made and
            # removed in one step) and on an ignored one the model wrote; update-index stages exactly what
            # is on disk: new and changed files added, missing ones removed (or skipped when untracked).
            await self._git("update-index", "--add", "--remove", "--replace", "--", *paths)
        name, email = AUTHOR
        await self._git(
            "-c", f"user.name={name}", "-c", f"user.email={email}",
            "commit", "--allow-empty", "--no-verify", "-m", message,
        )  # fmt: skip
        # The new commit's id and its diff in one call (the caller stores the diff next).
        shown = await self._git("show", "--format=%H", "--no-color", "HEAD")
        sha, _, rest = shown.partition("\n")
        self._committed = (sha, rest[1:] if rest.startswith("\n") else rest)
        return sha

    async def diff(self, sha: str) -> str:
        if self._committed is not None and self._committed[0] == sha:
            text = self._committed[1]
        else:
            text = await self._git("show", "--format=", "--no-color", sha)
        return text if len(text) <= DIFF_MAX_CHARS else text[:DIFF_MAX_CHARS] + "\n[diff truncated]\n"

    async def push(self) -> str:
        """Push the branch up to the last commit made here (HEAD when none was); returns that commit.
        Pushing commits the remote already has is a no-op, and the commit this object pushed last is not
        pushed again."""
        sha = self._committed[0] if self._committed is not None else await self.head()
        if sha == self._pushed:
            return sha
        try:
            await self._git("push", "--porcelain", self.remote.url, f"{sha}:refs/heads/{self.branch}",
                      remote=self.remote)  # fmt: skip
        except GitError as exc:
            raise TransientFailure(f"pushing {self.branch} failed: {exc}") from exc
        self._pushed = sha
        return sha


class Workspace:
    def __init__(self, settings: Settings) -> None:
        self.root = settings.workspace_dir or settings.data_dir / "work"
        self.max_bytes = settings.mirror_cache_max_bytes

    def mirror_path(self, repo: str) -> Path:
        digest = hashlib.sha256(repo.encode()).hexdigest()[:12]
        return self.root / "mirrors" / f"{slugify(repo, 60)}-{digest}.git"

    async def sync(self, repo: str, remote: GitRemote) -> Path:
        """The repo's bare mirror, created once and fetched when reused."""
        mirror = self.mirror_path(repo)
        mirror.parent.mkdir(parents=True, exist_ok=True)
        async with _locked(mirror):
            try:
                if not (mirror / "HEAD").exists():
                    await git("init", "--bare", "--quiet", str(mirror))
                # From the URL with origin's refspec: no remote to configure (or re-point) first.
                await git("fetch", "--prune", "--quiet", remote.url, FETCH_REFSPEC, cwd=mirror, remote=remote)
            except GitError as exc:
                raise TransientFailure(f"fetching {repo} failed: {exc}") from exc
            (mirror / "autodev-last-used").write_text(str(time.time()))
            # Measured once per fetch, under the lock; evict() reads it instead of walking every mirror.
            (mirror / SIZE_FILE).write_text(str(_size(mirror)))
        self.evict(keep=mirror)
        return mirror

    async def remote_has_branch(self, mirror: Path, branch: str) -> bool:
        return branch in await self.remote_branches(mirror, branch)

    async def remote_branches(self, mirror: Path, *names: str) -> set[str]:
        """Which of the branches `names` the mirror holds from the remote (one git call for all)."""
        refs = [f"refs/remotes/origin/{name}" for name in names]
        listed = set((await git("for-each-ref", "--format=%(refname)", *refs, cwd=mirror)).split())
        return {name for name, ref in zip(names, refs, strict=True) if ref in listed}

    async def read_file(self, mirror: Path, branch: str, path: str) -> str | None:
        try:
            return await git("show", f"origin/{branch}:{path}", cwd=mirror)
        except GitError:
            return None

    @asynccontextmanager
    async def worktree(
        self, mirror: Path, job_id: str, *, branch: str, base: str, remote: GitRemote
    ) -> AsyncIterator[Worktree]:
        """A fresh worktree on `branch`: continued from the remote's branch when it exists, else from base."""
        found = await self.remote_branches(mirror, branch, base)
        start = branch if branch in found else base
        if start not in found:
            raise PermanentFailure(f"the base branch {start!r} does not exist in the repository")
        path = self.root / "jobs" / job_id
        add = ("worktree", "add", "--quiet", "-B", branch, str(path), f"origin/{start}")
        async with _locked(mirror):
            if path.exists():  # a previous attempt of this job died here
                await _remove_worktree(mirror, path)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                await git(*add, cwd=mirror)
            except GitError:
                # A worktree whose folder is gone may still hold the branch or the path: forget those, again.
                await git("worktree", "prune", cwd=mirror)
                await git(*add, cwd=mirror)
            gitdir = Path((path / ".git").read_text().removeprefix("gitdir:").strip())
        try:
            yield Worktree(path, mirror, branch, base, remote, gitdir)
        finally:
            async with _locked(mirror):
                await _remove_worktree(mirror, path)

    def evict(self, *, keep: Path) -> None:
        """Drop least recently used mirrors (not in use) until the cache fits its size limit."""
        mirrors = [p for p in (self.root / "mirrors").glob("*.git") if p.is_dir()]
        sizes = {p: _recorded_size(p) for p in mirrors}
        total = sum(sizes.values())
        for mirror in sorted(mirrors, key=_last_used):
            if total <= self.max_bytes:
                break
            if mirror == keep or any((mirror / "worktrees").glob("*")):
                continue
            log.info("evicting mirror %s (%d bytes)", mirror.name, sizes[mirror])
            shutil.rmtree(mirror, ignore_errors=True)
            total -= sizes[mirror]


async def _remove_worktree(mirror: Path, path: Path) -> None:
    try:
        await git("worktree", "remove", "--force", str(path), cwd=mirror)
    except GitError:
        shutil.rmtree(path, ignore_errors=True)
        await git("worktree", "prune", cwd=mirror)


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            # Another job may be fetching into this mirror: its temporary objects vanish as we walk.
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(dirpath, name))
                total += info.st_size if stat.S_ISREG(info.st_mode) else 0
    return total


def _recorded_size(mirror: Path) -> int:
    """The size written at the mirror's last fetch (walking 60 mirrors on every sync costs ~30 ms a job)."""
    try:
        return int((mirror / SIZE_FILE).read_text())
    except (OSError, ValueError):
        return _size(mirror)


def _last_used(mirror: Path) -> float:
    try:
        return float((mirror / "autodev-last-used").read_text())
    except (OSError, ValueError):
        return 0.0


_LOCKS: dict[Path, asyncio.Lock] = {}


@asynccontextmanager
async def _locked(mirror: Path) -> AsyncIterator[None]:
    # Jobs in this worker and in others may share the mirror; git's own ref locks fail rather than wait.
    # The asyncio lock serialises this process's jobs, so the file lock only ever waits for other processes.
    async with _LOCKS.setdefault(mirror, asyncio.Lock()):
        with open(mirror.with_suffix(".lock"), "a") as handle:  # noqa: ASYNC230 - a tiny local file
            await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
