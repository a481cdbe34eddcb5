"""The commit a prepared environment is built from: its dependency files read from the mirror's objects, and
a throwaway checkout of it for the setup to run in.

Reading git's objects rather than a worktree's files means a symlink is a blob holding a path (never
followed) and nothing the model wrote in a job can be read by mistake.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

# The mirror's lock, which git.py's worktrees take too: adding and removing worktrees must not interleave.
from engine.workspace.git import _locked as mirror_locked
from engine.workspace.git import _remove_worktree, git
from engine.workspace.setup import LOCKFILE_DIRS, MAX_READ_BYTES, SETUP_FILES, BaseFiles, is_lockfile

REGULAR = ("100644", "100755")


async def base_files(mirror: Path, ref: str) -> BaseFiles:
    """The dependency and setup files of `ref` in `mirror`, as blob ids, and the setup files' text."""
    commit = (await git("rev-parse", "--verify", f"{ref}^{{commit}}", cwd=mirror)).strip()
    top = await git("ls-tree", "-l", "-z", commit, cwd=mirror)
    below = await git("ls-tree", "-r", "-l", "-z", commit, "--", *LOCKFILE_DIRS, *SETUP_FILES, cwd=mirror)
    blobs: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for entry in filter(None, (top + below).split("\0")):
        meta, _, path = entry.partition("\t")
        mode, kind, blob, size = meta.split()
        if kind == "blob" and mode in REGULAR and (is_lockfile(path) or path in SETUP_FILES):
            blobs[path], sizes[path] = blob, int(size)
    texts = {
        path: await git("cat-file", "blob", blobs[path], cwd=mirror)
        for path in SETUP_FILES
        if path in blobs and sizes[path] <= MAX_READ_BYTES
    }
    return BaseFiles(commit, blobs, texts)


@asynccontextmanager
async def checkout(mirror: Path, commit: str, path: Path) -> AsyncIterator[Path]:
    """A detached worktree of `commit` at `path` (a new directory), removed afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    async with mirror_locked(mirror):
        await git("worktree", "add", "--detach", "--quiet", str(path), commit, cwd=mirror)
    try:
        yield path
    finally:
        async with mirror_locked(mirror):
            await _remove_worktree(mirror, path)
