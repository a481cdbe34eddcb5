"""The edit guard: every read and write the model asks for stays inside the worktree and off protected ground.

A name is refused before the disk is touched when it is malformed, one git refuses, or protected
(paths.py). Then the walk beneath the root (beneath.py) opens it without a race, and the read or write goes
through the descriptor the walk ended on. Reads may follow a symlink whose target stays inside the tree, and
the real path is checked again; writes and deletes never go through one, and a write met by a symlink says
where it leads (a protected target is named as such). A write goes to a new file in the same directory,
renamed over the name: an existing file (or a hard link, or whatever was swapped in) is replaced, never
written through.

Only regular files are read or written: a FIFO, device or socket is refused, and it is opened with
O_NONBLOCK first, so opening one never blocks. Everything here blocks on the disk: callers on the event loop
run it in a thread (asyncio.to_thread).
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engine.workspace import beneath
from engine.workspace.beneath import Entry
from engine.workspace.paths import EditRefused, ProtectedPaths, git_refusal, split_path

__all__ = ["EditGuard", "EditRefused", "Entry", "FileTooLarge", "Opened"]

WRITE_MAX_BYTES = 4 * 1024 * 1024
READ_MAX_BYTES = 4 * 1024 * 1024  # read() whole; open_file() lets a caller read a larger file in ranges
OUTSIDE = "the path leads outside the repository (through a symlink)"


class FileTooLarge(ValueError):
    def __init__(self, rel: str, size: int, limit: int) -> None:
        super().__init__(f"{rel} is {size:,} bytes, over the limit of {limit:,}")
        self.rel, self.size, self.limit = rel, size, limit


@dataclass
class Opened:
    file: BinaryIO
    rel: str  # the real path under the root (after the symlinks a read followed)
    size: int


class EditGuard:
    """Reads and writes under `root` only; remembers which paths it changed (for the step's commit)."""

    def __init__(self, root: Path, protected: tuple[str, ...] | list[str] = ()) -> None:
        self.root = Path(root).resolve()
        self.protected = ProtectedPaths(list(protected))
        self.changed: set[str] = set()

    def check(self, path: str) -> str:
        """The normalised name of a path the model may write, else EditRefused (the disk is not touched)."""
        parts = split_path(path)
        pattern = self.protected.match(parts)
        if pattern:
            raise EditRefused(path, f"protected path (matches {pattern!r})")
        return "/".join(parts)

    def write(self, path: str, content: str) -> str:
        rel = self.check(path)
        parts = rel.split("/")
        data = content.encode("utf-8")
        if len(data) > WRITE_MAX_BYTES:
            raise FileTooLarge(rel, len(data), WRITE_MAX_BYTES)
        dirs = self._parent(path, parts, create=True)
        try:
            old = _lstat(dirs.fd, parts[-1])
            if old is not None:
                self._refuse_unless_regular(path, parts, old)
            tmp = f".autodev-{secrets.token_hex(8)}.tmp"
            fd = os.open(tmp, beneath.NEW, 0o666, dir_fd=dirs.fd)
            try:
                with open(fd, "wb") as out:
                    out.write(data)
                    if old is not None:
                        os.fchmod(out.fileno(), stat.S_IMODE(old.st_mode) & 0o777)
                os.rename(tmp, parts[-1], src_dir_fd=dirs.fd, dst_dir_fd=dirs.fd)
            except BaseException:
                with suppress(OSError):
                    os.unlink(tmp, dir_fd=dirs.fd)
                raise
        finally:
            dirs.close()
        self.changed.add(rel)
        return rel

    def delete(self, path: str) -> str:
        """Removes a file (or a symlink itself, never what it points to)."""
        rel = self.check(path)
        parts = rel.split("/")
        dirs = self._parent(path, parts, create=False)
        try:
            old = _lstat(dirs.fd, parts[-1])
            if old is None:
                raise FileNotFoundError(rel)
            if not stat.S_ISLNK(old.st_mode):
                self._refuse_unless_regular(path, parts, old)
            os.unlink(parts[-1], dir_fd=dirs.fd)
        finally:
            dirs.close()
        self.changed.add(rel)
        return rel

    @contextmanager
    def open_file(self, path: str, *, for_write: bool = False) -> Iterator[Opened]:
        """A regular file opened for reading. `for_write`: the file an edit is about to replace (protected
        paths refused, no symlink followed), so an edit never reads what it may not write."""
        if for_write:
            real = self.check(path).split("/")
            dirs = self._parent(path, real, create=False)
            try:
                fd = beneath.open_at(dirs.fd, real, len(real) - 1, beneath.FILE)
            except beneath.SymlinkMet as met:
                raise self._link_refusal(path, real, met.index) from None
            finally:
                dirs.close()
        else:
            fd, real = self._open_following(path, split_path(path), beneath.FILE)
        try:
            info = os.fstat(fd)
            self._refuse_unless_regular(path, real, info)
        except BaseException:
            os.close(fd)
            raise
        with open(fd, "rb") as file:
            yield Opened(file, "/".join(real), info.st_size)

    def read(self, path: str, *, max_bytes: int = READ_MAX_BYTES) -> str:
        with self.open_file(path) as opened:
            if opened.size > max_bytes:
                raise FileTooLarge(opened.rel, opened.size, max_bytes)
            return opened.file.read(max_bytes).decode("utf-8", errors="replace")

    def walk(
        self, path: str = "", *, skip: frozenset[str] = frozenset(), limit: int = 10_000
    ) -> Iterator[Entry]:
        """What lies under the directory `path` (see beneath.walk); at most `limit` entries are looked at,
        and an Entry of kind "truncated" ends a listing that stopped there."""
        base: list[str] = []
        if path.strip() in ("", ".", "/", "./"):
            fd = os.open(self.root, beneath.DIR)
        else:
            fd, base = self._open_following(path, split_path(path), beneath.DIR)
        left = [limit]
        try:
            yield from beneath.walk(fd, base, skip, left)
        finally:
            os.close(fd)
        if left[0] < 0:
            yield Entry("/".join(base), "truncated")

    def _open_following(self, given: str, parts: list[str], last_flags: int) -> tuple[int, list[str]]:
        try:
            fd, real = beneath.open_following(self.root, parts, last_flags)
        except beneath.Escape:
            raise EditRefused(given, OUTSIDE) from None
        except beneath.TooManyLinks:
            raise EditRefused(given, "too many symlinks in the path") from None
        if git_refusal(real):
            os.close(fd)
            raise EditRefused(given, f"it leads to {'/'.join(real)!r}, under git's own directory")
        return fd, real

    def _parent(self, given: str, parts: list[str], *, create: bool) -> beneath.Dirs:
        try:
            return beneath.open_parent(self.root, parts, create=create)
        except beneath.SymlinkMet as met:
            raise self._link_refusal(given, parts, met.index) from None

    def _refuse_unless_regular(self, given: str, parts: list[str], info: os.stat_result) -> None:
        mode = info.st_mode
        if stat.S_ISREG(mode):
            return
        if stat.S_ISLNK(mode):
            raise self._link_refusal(given, parts, len(parts) - 1)
        if stat.S_ISDIR(mode):
            raise EditRefused(given, "it is a directory")
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise EditRefused(given, f"it is {kind}, not a regular file")

    def _link_refusal(self, given: str, parts: list[str], i: int) -> EditRefused:
        """Why a write meeting the symlink parts[i] is refused: where it leads, and if that is protected."""
        link = "/".join(parts[: i + 1])
        try:
            fd, real = self._open_following(given, parts[: i + 1], beneath.FILE)
            os.close(fd)
        except EditRefused as refused:
            return refused
        except OSError:
            return EditRefused(given, f"{link!r} is a symlink; writes never go through one")
        target = [*real, *parts[i + 1 :]]
        pattern = self.protected.match(target)
        if pattern:
            where = "/".join(real)
            return EditRefused(given, f"protected path: {link!r} is a symlink to {where!r} ({pattern!r})")
        return EditRefused(
            given, f"{link!r} is a symlink; writes never go through one — use {'/'.join(target)!r}"
        )


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
