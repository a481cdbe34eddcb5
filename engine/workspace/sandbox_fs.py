"""What a sandboxed command sees: the allow-listed environment and bubblewrap's filesystem plan.

The filesystem is an allow-list. bwrap is started by the host's root here and in production, and a user
namespace only renames that uid: the command is still root to the kernel's permission checks on every file
it can see (it reads /etc/shadow if /etc/shadow is visible). So nothing is visible unless listed: system
directories read-only (with their files that are not world-readable masked), the toolchains the worker's
PATH leads to, the caller's read-only paths, the worktree. Paths the caller names as hidden (the data dir,
the autodev checkout and its venv) are never inside a mount. A caller may show the worktree at another path
(`at`: a prepared environment's editable installs point there) and add mounts of its own (`Mount`: a host
directory read-only or read-write at a target path, or an empty tmpfs); the same hidden-path check holds.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
MASKED_UNDER = ("/etc", "/opt")  # scanned once for entries that are not world-readable (/usr: too big)
TOOLS = ("python3", "node", "go", "cargo", "java", "ruby")
SANDBOX_HOME = "/tmp/home"


def default_hidden() -> tuple[Path, ...]:
    """autodev's venv (not a system python's /usr) and the checkout it runs from."""
    here = Path(__file__).resolve()
    checkout = next((p for p in here.parents if (p / "pyproject.toml").is_file()), here.parent)
    venv = [Path(sys.prefix)] if sys.prefix != sys.base_prefix else []
    return tuple(dict.fromkeys(p.resolve() for p in (*venv, checkout)))


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _check_mount(source: Path, hidden: Iterable[Path]) -> None:
    for h in hidden:
        if _within(h, source):
            raise ValueError(f"refusing to mount {source} in the sandbox: it contains the hidden path {h}")


def _toolchain_ok(prefix: Path, hidden: Sequence[Path]) -> bool:
    """A detected prefix is mounted only when it is not /, $HOME or inside/around a hidden path."""
    home = Path.home().resolve()
    if _within(home, prefix):
        return False
    return not any(_within(h, prefix) or _within(prefix, h) for h in hidden)


def _under_system(path: Path) -> bool:
    return any(_within(path, Path(d).resolve()) for d in SYSTEM_DIRS if os.path.isdir(d))


def _resolve_manager(real: Path, tool: str) -> Path | None:
    """The executable behind a version manager's shim (pyenv/rbenv/nodenv shims, rustup proxies)."""
    if real.name == "rustup":
        manager: str | None = str(real)
    else:
        root = real.parent.parent  # <root>/shims/<tool>
        name = root.name.lstrip(".")
        candidates = (root / "bin" / name, root / "libexec" / name)
        manager = next((str(c) for c in candidates if c.is_file()), None) or shutil.which(name)
    if manager is None:
        return None
    # cwd=/ so that no version file in the caller's directory steers the answer.
    done = subprocess.run([manager, "which", tool], cwd="/", capture_output=True, text=True, timeout=30)
    found = done.stdout.strip()
    return Path(os.path.realpath(found)) if done.returncode == 0 and found else None


@functools.cache
def _found_tools() -> tuple[tuple[Path, Path], ...]:
    """(the PATH dir a tool is found in, the real bin dir behind it) for TOOLS, autodev's venv skipped."""
    search = [
        d for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not any(_within(Path(d).resolve(), h) for h in default_hidden())
    ]  # fmt: skip
    found = []
    for tool in TOOLS:
        where = shutil.which(tool, path=os.pathsep.join(search))
        if where is None:
            continue
        real: Path | None = Path(os.path.realpath(where))
        if real and (real.parent.name == "shims" or real.name == "rustup"):
            real = _resolve_manager(real, tool)
        if real is not None:
            found.append((Path(where).parent, real.parent))
    return tuple(found)


def toolchains(hidden: Sequence[Path]) -> list[tuple[Path | None, Path]]:
    """(prefix to mount read-only, or None when under a system dir; bin dir for PATH) per tool found."""
    chosen: dict[Path, Path | None] = {}
    for where, bindir in _found_tools():
        if _under_system(bindir):
            if str(where) not in SYSTEM_PATH and _under_system(where.resolve()):
                chosen.setdefault(where, None)
        elif _toolchain_ok(bindir.parent, hidden):
            chosen.setdefault(bindir, bindir.parent)
    return [(prefix, bindir) for bindir, prefix in chosen.items()]


def sandbox_env(extra: Mapping[str, str] | None = None, *, hidden: Sequence[Path] = ()) -> dict[str, str]:
    """The whole environment of a sandboxed command: the allow-list below plus what the caller names."""
    bins = [str(b) for _, b in toolchains([*default_hidden(), *hidden])]
    env = {
        "PATH": ":".join(dict.fromkeys([*bins, *SYSTEM_PATH])),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": SANDBOX_HOME,
        "TMPDIR": "/tmp",
        "CI": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra or {})
    return env


@functools.cache
def masked_paths() -> tuple[tuple[str, bool], ...]:
    """(path, is_dir) under MASKED_UNDER that others may not read: the sandbox, root to the kernel, could."""
    masked: list[tuple[str, bool]] = []
    for top in MASKED_UNDER:
        for dirpath, dirs, files in os.walk(top):
            for name in [*dirs, *files]:
                path = os.path.join(dirpath, name)
                try:
                    mode = os.lstat(path).st_mode
                except OSError:
                    continue
                closed = not mode & stat.S_IROTH or (stat.S_ISDIR(mode) and not mode & stat.S_IXOTH)
                if closed and not stat.S_ISLNK(mode):
                    masked.append((path, stat.S_ISDIR(mode)))
            dirs[:] = [d for d in dirs if (os.path.join(dirpath, d), True) not in masked]
    return tuple(masked)


@dataclass(frozen=True, slots=True)
class Mount:
    """`source` (a host directory) shown at `target`, read-only unless `writable`; no source: a tmpfs."""

    source: Path | None
    target: Path
    writable: bool = False

    def option(self) -> list[str]:
        if self.source is None:
            return ["--tmpfs", str(self.target)]
        return ["--bind" if self.writable else "--ro-bind", str(self.source.resolve()), str(self.target)]


def mount_args(
    workdir: Path, readonly: Sequence[Path], hidden: Sequence[Path], *,
    mounts: Sequence[Mount] = (), at: Path | None = None,
) -> list[str]:  # fmt: skip
    """bwrap's mount options: system dirs and toolchains read-only, `readonly`, the worktree read-write (at
    `at` when given), then `mounts`; a mount goes after every mount of a directory above its target."""
    hidden = tuple(Path(h).resolve() for h in hidden)
    args: list[str] = []
    mounted: list[Path] = []
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d) and not any(_within(h, Path(d)) for h in hidden):
            args += ["--ro-bind", d, d]
            mounted.append(Path(d))
    for masked, is_dir in masked_paths():
        if any(_within(Path(masked), m) for m in mounted):
            args += ["--tmpfs", masked] if is_dir else ["--ro-bind", "/dev/null", masked]
    for prefix, _ in toolchains(hidden):
        if prefix is not None:
            args += ["--ro-bind", str(prefix), str(prefix)]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", SANDBOX_HOME]
    work = workdir.resolve()
    where = at or work
    plan = [Mount(p.resolve(), p.resolve()) for p in readonly] + [Mount(work, where, writable=True)]
    if (work / ".git").exists():  # autodev's own git trusts it later: the command may read it, not change it
        plan.append(Mount(work / ".git", where / ".git"))
    for mount in sorted([*plan, *mounts], key=lambda m: len(m.target.parts)):  # stable: .git stays read-only
        args += mount.option()
    for source in mount_sources(args):
        _check_mount(source, hidden)
    return args


def mount_sources(args: Sequence[str]) -> list[Path]:
    """The host paths a list of bwrap options makes visible (for the callers' and tests' assertions)."""
    return [Path(args[i + 1]) for i, a in enumerate(args) if a in ("--bind", "--ro-bind")]
