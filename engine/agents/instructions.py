"""What a repository tells agents about itself: its instruction files, read in a stated order, bounded.

The order (earlier files first in the prompt, and first to use the budget):

1. `AGENTS.md`: the one nearest to the files the work is about (the AGENTS.md convention: a file in a
   subdirectory governs that subtree), else the repository's root one;
2. `CLAUDE.md`, 3. `.github/copilot-instructions.md`, 4. `.cursor/rules/*` (in name order), then
   `.cursorrules`, 5. `CONTRIBUTING.md` (or `.github/CONTRIBUTING.md`).

Each file is read only when it is a regular file inside the worktree (no symlink leads out), at most
FILE_MAX_CHARS of it, and all of them at most TOTAL_MAX_CHARS. What was read is listed on the job page.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

FILE_MAX_CHARS = 4000
TOTAL_MAX_CHARS = 8000
FIXED = ("CLAUDE.md", ".github/copilot-instructions.md")
CURSOR_RULES_DIR = ".cursor/rules"
CURSOR_RULES_FILE = ".cursorrules"
CONTRIBUTING = ("CONTRIBUTING.md", ".github/CONTRIBUTING.md")


@dataclass(frozen=True, slots=True)
class Instruction:
    path: str
    text: str
    truncated: bool

    def summary(self) -> dict[str, object]:
        return {"path": self.path, "chars": len(self.text), "truncated": self.truncated}


def nearest_agents_md(worktree: Path, near: list[str]) -> str | None:
    """The AGENTS.md nearest to `near` (deepest directory wins, first file breaks ties), else the root's."""
    best: tuple[int, str] | None = None
    for name in near:
        folder = PurePosixPath(name).parent
        for depth in range(len(folder.parts), -1, -1):
            candidate = "/".join([*folder.parts[:depth], "AGENTS.md"])
            if _readable(worktree, candidate):
                if best is None or depth > best[0]:
                    best = (depth, candidate)
                break
    if best is not None:
        return best[1]
    return "AGENTS.md" if _readable(worktree, "AGENTS.md") else None


def instruction_files(worktree: Path, near: list[str] | None = None) -> list[Instruction]:
    """The repository's instruction files for work on `near` (paths relative to the worktree)."""
    names: list[str] = []
    if (agents := nearest_agents_md(worktree, near or [])) is not None:
        names.append(agents)
    names += [n for n in FIXED if _readable(worktree, n)]
    rules_dir = worktree / CURSOR_RULES_DIR
    if _inside(worktree, rules_dir) and rules_dir.is_dir() and not rules_dir.is_symlink():
        names += sorted(
            f"{CURSOR_RULES_DIR}/{p.name}"
            for p in rules_dir.iterdir()
            if _readable(worktree, f"{CURSOR_RULES_DIR}/{p.name}")
        )
    if _readable(worktree, CURSOR_RULES_FILE):
        names.append(CURSOR_RULES_FILE)
    names += [n for n in CONTRIBUTING if _readable(worktree, n)][:1]
    found: list[Instruction] = []
    budget = TOTAL_MAX_CHARS
    for name in names:
        if budget <= 0:
            break
        text = _read(worktree / name, min(FILE_MAX_CHARS, budget))
        if text is None:
            continue
        limit = min(FILE_MAX_CHARS, budget)
        found.append(Instruction(name, text[:limit], truncated=len(text) > limit))
        budget -= min(len(text), limit)
    return found


def as_prompt(found: list[Instruction]) -> str:
    return "\n\n".join(f"## {i.path}\n{i.text}" + ("\n[… cut to fit]" if i.truncated else "") for i in found)


def _inside(worktree: Path, path: Path) -> bool:
    real = Path(os.path.realpath(path))
    root = Path(os.path.realpath(worktree))
    return real == root or root in real.parents


def _readable(worktree: Path, name: str) -> bool:
    path = worktree / name
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and _inside(worktree, path)


def _read(path: Path, limit: int) -> str | None:
    """Up to `limit` characters and one more (to tell a cut), never following a symlink at the end."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        data = handle.read(4 * (limit + 1))
    return data.decode("utf-8", errors="replace")[: limit + 1]
