"""Which names the model may use: a path's shape, the names git refuses, and the protected patterns.

Pure checks on names, no disk: engine/workspace/guard.py applies them to the name given and again to the
real path it reaches on disk (after any symlink it follows).
"""

from __future__ import annotations

import re
import unicodedata

import pathspec

# Never written by the model, whatever the repository's own config says: what runs with the repository's
# secrets on GitHub (workflows, and the local actions they use) and autodev's own settings for the repository.
DEFAULT_PROTECTED = ("/.github/workflows", "/.github/actions", "/.github/autodev.yml")
PATH_MAX_CHARS = 1024

# Code points HFS+ ignores when it compares names (git's is_hfs_dotgit): ".g\u200cit" is ".git" on a Mac.
_HFS_IGNORABLE = dict.fromkeys(
    [0x200C, 0x200D, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF]
)
# git's is_ntfs_dotgit: ".git" or its 8.3 short name "git~1", then only dots and spaces, up to the end or
# an NTFS stream (":"); Windows drops the trailing dots and spaces, so ".git. " *is* ".git" there.
_NTFS_DOTGIT = re.compile(r"(?:\.git|git~1)[. ]*(?::.*)?", re.IGNORECASE | re.DOTALL)


class EditRefused(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"edit refused for {path!r}: {reason}")
        self.path = path
        self.reason = reason


def split_path(path: object) -> list[str]:
    """The components of a relative path the model gave, or EditRefused saying what is wrong with it."""
    if not isinstance(path, str) or not path.strip():
        raise EditRefused(str(path), "empty path")
    if len(path) > PATH_MAX_CHARS:
        raise EditRefused(path[:80] + "…", f"path longer than {PATH_MAX_CHARS} characters")
    if "\x00" in path:
        raise EditRefused(path, "NUL byte in path")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in path):
        raise EditRefused(path, "control character or lone surrogate in path")
    if "\\" in path:
        # git for Windows reads "\" as a separator and refuses "a\.git"; a name with one is never needed.
        raise EditRefused(path, "backslash in path; git refuses such names on Windows — separate with '/'")
    if path.startswith(("/", "~")) or re.match(r"[A-Za-z]:", path):
        raise EditRefused(path, "absolute paths are not allowed; use a path relative to the repository")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise EditRefused(path, "'..' is not allowed in paths")
    if not parts:
        raise EditRefused(path, "the repository root is not a file")
    refusal = git_refusal(parts)
    if refusal:
        raise EditRefused(path, refusal)
    return parts


def git_refusal(parts: list[str]) -> str | None:
    """Why git would refuse (or treat as its own directory) a path with these components, else None.

    git's verify_path refuses ".git" as a component in any case, and with core.protectNTFS/protectHFS (on by
    default where they matter) the names Windows and macOS read as ".git". autodev refuses them on every
    platform: a clone of the branch on such a machine must not get a ".git" from it.
    """
    for part in parts:
        if part in (".", ".."):
            return f"{part!r} is not a valid path component"
        folded = part.translate(_HFS_IGNORABLE).casefold()
        if folded == ".git":
            return f"{part!r} is git's own directory; nothing under it may be touched"
        if _NTFS_DOTGIT.fullmatch(part):
            return f"{part!r} is the name '.git' on Windows (NTFS); git refuses it"
    return None


class ProtectedPaths:
    """gitignore-style patterns (the repository's `protected_paths`) plus the defaults no config removes.

    A path is protected when a pattern matches it or any directory above it (as in git, a `!pattern` cannot
    re-include a file whose directory is protected). The defaults are matched case-insensitively too.
    """

    def __init__(self, patterns: list[str] | tuple[str, ...] = ()) -> None:
        self.patterns = [p for p in patterns if p.strip() and not p.lstrip().startswith("#")]
        self._defaults = pathspec.GitIgnoreSpec.from_lines(DEFAULT_PROTECTED)
        self._repo = pathspec.GitIgnoreSpec.from_lines(self.patterns)

    def match(self, parts: list[str]) -> str | None:
        """The pattern protecting the path with these components, or None."""
        candidates = ["/".join(parts[:i]) + "/" for i in range(1, len(parts))] + ["/".join(parts)]
        for name in candidates:
            for spec, lines, text in (
                (self._defaults, DEFAULT_PROTECTED, name.lower()),
                (self._defaults, DEFAULT_PROTECTED, name),
                (self._repo, self.patterns, name),
            ):
                result = spec.check_file(text)
                if result.include and result.index is not None:
                    return lines[result.index]
        return None
