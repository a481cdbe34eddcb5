"""Walking a path beneath a root through directory descriptors, one component at a time, without a race.

Each component is opened relative to its parent's descriptor with O_NOFOLLOW, so a symlink anywhere in the
path is met as an error from the open itself (ELOOP), never followed by the kernel: there is no window
between a check and a use for a directory to be swapped for a symlink. Where a walk may follow a symlink,
it reads the link's text and splices it into the walk, so `..` steps up the walk's own chain of
descriptors and can never climb above the root. The same holds on any POSIX system (no openat2 needed).

What to do about a symlink, a protected name or git's names is the guard's business (guard.py).
"""

from __future__ import annotations

import errno
import os
from collections import deque
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# O_NONBLOCK: opening a FIFO to read returns at once (a blocking open waits for a writer forever).
FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LINKS = 40  # symlinks followed in one path (the kernel's own limit)
MAX_DEPTH = 64  # directories deep a walk goes (each holds a descriptor while it is walked)


class Escape(Exception):
    """A followed symlink leads outside the root (an absolute target, or `..` above the root)."""


class TooManyLinks(Exception):
    pass


class SymlinkMet(Exception):
    """A walk that must not follow symlinks met one: component `index` of the path."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


@dataclass(frozen=True)
class Entry:
    rel: str
    kind: str  # file | link | other (a FIFO, socket or device) | truncated (the listing's last entry)
    target: str = ""  # a link's text


class Dirs:
    """The open directories from the root down to where a walk stands (close() when done)."""

    def __init__(self, root: Path) -> None:
        self.fds = [os.open(root, DIR)]
        self.names: list[str] = []

    @property
    def fd(self) -> int:
        return self.fds[-1]

    def enter(self, name: str, fd: int) -> None:
        if len(self.names) >= MAX_DEPTH:
            os.close(fd)
            raise OSError(errno.ENAMETOOLONG, f"more than {MAX_DEPTH} directories deep")
        self.fds.append(fd)
        self.names.append(name)

    def up(self) -> bool:
        if not self.names:
            return False
        os.close(self.fds.pop())
        self.names.pop()
        return True

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


def open_following(root: Path, parts: list[str], last_flags: int) -> tuple[int, list[str]]:
    """The last component opened with `last_flags`, and its real path under `root` (symlinks followed)."""
    dirs, todo, links = Dirs(root), deque(parts), 0
    try:
        while todo:
            name = todo.popleft()
            if name == "..":
                if not dirs.up():
                    raise Escape()
                continue
            try:
                fd = os.open(name, last_flags if not todo else DIR, dir_fd=dirs.fd)
            except OSError as exc:
                target = link_text(dirs.fd, name, exc)
                links += 1
                if links > MAX_LINKS:
                    raise TooManyLinks() from None
                if target.startswith("/"):
                    raise Escape() from None
                todo.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
                continue
            if not todo:
                return fd, [*dirs.names, name]
            dirs.enter(name, fd)
        raise IsADirectoryError(errno.EISDIR, "is a directory", "/".join(parts))
    finally:
        dirs.close()


def open_parent(root: Path, parts: list[str], *, create: bool) -> Dirs:
    """The directories down to the last component's, never through a symlink (SymlinkMet); `create`
    makes the missing ones."""
    dirs = Dirs(root)
    try:
        for i, name in enumerate(parts[:-1]):
            try:
                fd = open_at(dirs.fd, parts, i, DIR)
            except FileNotFoundError:
                if not create:
                    raise
                with suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=dirs.fd)
                fd = open_at(dirs.fd, parts, i, DIR)  # a symlink raced in after the mkdir: SymlinkMet
            dirs.enter(name, fd)
        return dirs
    except BaseException:
        dirs.close()
        raise


def open_at(dir_fd: int, parts: list[str], index: int, flags: int) -> int:
    try:
        return os.open(parts[index], flags, dir_fd=dir_fd)
    except OSError as exc:
        link_text(dir_fd, parts[index], exc)  # re-raises unless it is a symlink
        raise SymlinkMet(index) from None


def walk(fd: int, base: list[str], skip: frozenset[str], left: list[int]) -> Iterator[Entry]:
    """What lies under the directory `fd` (at `base`), depth first and sorted (a directory's own entries
    before its subdirectories), never entering a symlink; `left[0]` entries may still be looked at."""
    entries: list[tuple[str, str]] = []
    with os.scandir(fd) as scan:
        for entry in scan:
            left[0] -= 1
            if left[0] < 0:
                break
            if entry.is_dir(follow_symlinks=False):
                kind = "dir"
            elif entry.is_symlink():
                kind = "link"
            else:
                kind = "file" if entry.is_file(follow_symlinks=False) else "other"
            entries.append((entry.name, kind))
    entries.sort()
    for name, kind in entries:
        if kind != "dir":
            yield Entry("/".join([*base, name]), kind, readlink(fd, name) if kind == "link" else "")
    for name, kind in entries:
        if kind != "dir" or name in skip or len(base) >= MAX_DEPTH or left[0] < 0:
            continue
        try:
            sub = os.open(name, DIR, dir_fd=fd)  # a symlink swapped in since the scan: not entered
        except OSError:
            continue
        try:
            yield from walk(sub, [*base, name], skip, left)
        finally:
            os.close(sub)


def link_text(dir_fd: int, name: str, exc: OSError) -> str:
    """The text of the symlink `name` that made an O_NOFOLLOW open fail; re-raises `exc` if it is not one."""
    if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        raise exc
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        raise exc from None


def readlink(dir_fd: int, name: str) -> str:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return "?"
