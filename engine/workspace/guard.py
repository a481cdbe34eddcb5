"""The edit guard: every edit the model makes stays inside the worktree and off protected ground."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path, PurePosixPath

DEFAULT_PROTECTED = (".github/workflows/**",)


class EditRefused(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"edit refused for {path!r}: {reason}")
        self.path = path
        self.reason = reason


class EditGuard:
    """Reads and writes under `root` only; remembers which paths it changed (for the step's commit)."""

    def __init__(self, root: Path, protected: tuple[str, ...] | list[str] = ()) -> None:
        self.root = root.resolve()
        self.protected = tuple(DEFAULT_PROTECTED) + tuple(protected)
        self.changed: set[str] = set()

    def resolve(self, path: str, *, for_write: bool) -> tuple[Path, str]:
        """The absolute path and the normalised relative name, or EditRefused."""
        if not isinstance(path, str) or not path.strip():
            raise EditRefused(str(path), "empty path")
        if "\x00" in path:
            raise EditRefused(path, "NUL byte in path")
        pure = PurePosixPath(path.replace("\\", "/"))
        if pure.is_absolute() or path.startswith("~") or (len(path) > 1 and path[1] == ":"):
            raise EditRefused(path, "absolute paths are not allowed; use a path relative to the repository")
        if ".." in pure.parts:
            raise EditRefused(path, "'..' is not allowed in paths")
        parts = [p for p in pure.parts if p not in ("", ".")]
        if not parts:
            raise EditRefused(path, "the repository root is not a file")
        if parts[0] == ".git" or ".git" in parts:
            raise EditRefused(path, "nothing under .git/ may be touched")
        rel = "/".join(parts)
        if for_write:
            for pattern in self.protected:
                if _matches(rel, pattern):
                    raise EditRefused(path, f"protected path (matches {pattern!r})")
        target = self.root.joinpath(*parts)
        # Resolve symlinks (in the file and every parent) and check the real target is still inside.
        real = Path(os.path.realpath(target))
        if real != self.root and self.root not in real.parents:
            raise EditRefused(path, "the path leads outside the repository (through a symlink)")
        if for_write and target.is_symlink():
            raise EditRefused(path, "writing through a symlink is not allowed")
        return real, rel

    def write(self, path: str, content: str) -> str:
        real, rel = self.resolve(path, for_write=True)
        if real.is_dir():
            raise EditRefused(path, "is a directory")
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_text(content, encoding="utf-8")
        self.changed.add(rel)
        return rel

    def delete(self, path: str) -> str:
        real, rel = self.resolve(path, for_write=True)
        if not real.is_file():
            raise FileNotFoundError(rel)
        real.unlink()
        self.changed.add(rel)
        return rel

    def read(self, path: str) -> str:
        real, _ = self.resolve(path, for_write=False)
        return real.read_text(encoding="utf-8", errors="replace")


def _matches(rel: str, pattern: str) -> bool:
    if pattern.endswith("/**"):
        prefix = pattern[:-3].rstrip("/")
        return rel == prefix or rel.startswith(prefix + "/")
    return fnmatch.fnmatchcase(rel, pattern)
