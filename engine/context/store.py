"""Where an index comes from: the disk cache per (repository, commit), updated from the changed files only.

The index always describes the working tree. A cache entry is saved for the HEAD commit together with the
paths whose content on disk differed from that commit (uncommitted edits); those are parsed again whenever
the entry is reused, as are the files `git diff --name-only` names between the cached commit and HEAD. A tree
that is not a git repository is cached by its files' content hash instead (tree.py).

Entries are JSON (serial.py): loading one runs no code, whatever wrote the file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.context.index import INDEX_VERSION, RepoIndex, build_index, update_index
from engine.context.parse import is_indexable
from engine.context.roles import PRIORS, role_of
from engine.context.serial import index_from_json, index_to_json
from engine.context.tree import Stats, load_or_build_tree, stats_key, walk

log = logging.getLogger(__name__)

KEEP_PER_REPO = 4
# An index costs ~80 KB of memory a file (12,000 files: 980 MB at peak, docs/benchmarks.md): a tree with
# more files than this is indexed in part, source first, so a monorepo (or a repository made to exhaust the
# worker) cannot take the worker's memory. The files left out are counted in the job's diagnostics.
MAX_FILES = 20_000


@dataclass
class Snapshot:
    """What the working tree looks like now: HEAD, the files to index, the uncommitted paths."""

    root: Path
    commit: str | None
    present: set[str]
    dirty: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (mtime_ns, size)
    stats: Stats | None = None  # every file's, when the tree is not a git repository
    left_out: int = 0  # files beyond MAX_FILES, not indexed

    @property
    def key(self) -> tuple[str, str | None, tuple[tuple[str, int, int], ...]]:
        if self.stats is not None:
            return str(self.root), "stats:" + stats_key(self.stats), ()
        return str(self.root), self.commit, tuple(sorted((p, m, s) for p, (m, s) in self.dirty.items()))


def _git(root: Path, *args: str) -> str | None:
    return _git_many(root, [list(args)])[0]


def _git_many(root: Path, commands: list[list[str]]) -> list[str | None]:
    """Run git commands side by side (each is mostly process start-up); None for one that failed."""
    try:
        running = [
            subprocess.Popen(
                ["git", "-C", str(root), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=_git_env(),
            )
            for args in commands
        ]
    except OSError as error:
        log.warning("git failed in %s: %s", root, error)
        return [None] * len(commands)
    outputs: list[str | None] = []
    for process in running:
        try:
            stdout, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            outputs.append(None)
            continue
        ok = process.returncode == 0
        outputs.append(stdout.decode("utf-8", errors="replace") if ok else None)
    return outputs


def _git_env() -> dict[str, str]:
    # Only what git needs: the index work never needs credentials, so none are passed on.
    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}


def snapshot(root: Path) -> Snapshot:
    if not root.is_dir():
        raise FileNotFoundError(f"repository directory {root} does not exist")
    commit, listing, status = _git_many(
        root,
        [
            ["rev-parse", "--verify", "-q", "HEAD"],
            ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            ["status", "--porcelain", "-z", "--untracked-files=all"],
        ],
    )
    if listing is None:
        stats = walk(root)
        kept = within_cap(set(stats))
        left_out = len(stats) - len(kept)
        if left_out:
            stats = {p: stats[p] for p in kept}
        return Snapshot(root, None, kept, stats=stats, left_out=left_out)
    # Sizes are checked when a file is parsed; a stat per file here would cost every query.
    listed = {p for p in listing.split("\0") if p and is_indexable(p, 0)}
    present = within_cap(listed)
    dirty: dict[str, tuple[int, int]] = {}
    status = status or ""
    entries = iter(status.split("\0"))
    for entry in entries:
        if len(entry) < 4:
            continue
        path = entry[3:]
        if entry[0] in "RC":
            next(entries, None)  # a rename's second field is the old path
        try:
            stat = (root / path).stat()
            dirty[path] = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            dirty[path] = (0, -1)
    commit = commit.strip() if commit else None
    return Snapshot(root, commit, present, dirty, left_out=len(listed) - len(present))


def within_cap(paths: set[str], limit: int | None = None) -> set[str]:
    """`paths`, or the `limit` (MAX_FILES) a fix is likeliest to need: by role (source, config, tests…,
    vendored and generated last), then the shallowest, then by name, so the choice is the same every time."""
    limit = MAX_FILES if limit is None else limit
    if len(paths) <= limit:
        return paths
    ranked = sorted(paths, key=lambda p: (-PRIORS[role_of(p)], p.count("/"), p))
    return set(ranked[:limit])


class IndexCache:
    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir

    def folder(self, repo: str) -> Path:
        return self.cache_dir / "index" / re.sub(r"[^A-Za-z0-9_.-]+", "__", repo)

    def load_latest(self, repo: str) -> tuple[RepoIndex, set[str]] | None:
        folder = self.folder(repo)
        candidates = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for path in candidates:
            try:
                stored = json.loads(path.read_bytes())
                if stored.get("version") == INDEX_VERSION and stored.get("repo") == repo:
                    return index_from_json(stored), set(stored["dirty"])
            except Exception as error:  # a torn or foreign file is a cache miss, not a failure
                log.warning("ignoring unreadable index cache %s: %s", path, error)
        return None

    def save(self, repo: str, index: RepoIndex, dirty: set[str]) -> None:
        folder = self.folder(repo)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{index.commit}.json"
        temporary = target.with_suffix(f".{os.getpid()}.tmp")
        stored = {**index_to_json(index), "dirty": sorted(dirty)}
        temporary.write_text(json.dumps(stored, separators=(",", ":")))
        os.replace(temporary, target)
        for old in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)[
            KEEP_PER_REPO:
        ]:
            old.unlink(missing_ok=True)


def load_or_build(cache: IndexCache, snap: Snapshot, repo: str) -> tuple[RepoIndex, dict[str, object]]:
    """The index for the snapshot, and how it was obtained (for diagnostics)."""
    started = time.perf_counter()
    if snap.stats is not None:
        return load_or_build_tree(cache.folder(repo), snap.root, repo, snap.stats)
    if snap.commit is None:  # a repository with no commit yet
        index = build_index(snap.root, repo, None, sorted(snap.present))
        return index, {"index": "built (no commit yet)", "files_parsed": len(index.files)}
    cached = cache.load_latest(repo)
    changed: set[str] | None = None
    if cached is not None:
        base, stale = cached
        if base.commit == snap.commit:
            changed = set()
        else:
            diff = _git(snap.root, "diff", "--name-only", "-z", f"{base.commit}", snap.commit)
            changed = set(filter(None, diff.split("\0"))) if diff is not None else None
        if changed is not None:
            known = set(base.files) | base.skipped
            changed |= stale | set(snap.dirty) | (snap.present - known) | (set(base.files) - snap.present)
    if cached is None or changed is None:
        index = build_index(snap.root, repo, snap.commit, sorted(snap.present))
        cache.save(repo, index, set(snap.dirty))
        how = {"index": "built", "files_parsed": len(index.files)}
    elif not changed and cached[0].commit == snap.commit:
        index, how = cached[0], {"index": "cached", "files_parsed": 0}
    else:
        index = update_index(cached[0], snap.root, snap.commit, sorted(changed), snap.present)
        if cached[0].commit != snap.commit or stale != set(snap.dirty):
            cache.save(repo, index, set(snap.dirty))
        how = {"index": f"updated from {cached[0].commit}", "files_parsed": len(changed)}
    how["index_seconds"] = round(time.perf_counter() - started, 3)
    return index, how
