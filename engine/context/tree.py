"""A tree that is not a git repository: cached by the content hash of its files, as a commit would be.

Every query lists the tree with one stat per file; a file whose size and modification time match the cached
entry keeps it, any other is read and parsed again (and a file that only was touched parses to the same
digest). The index is named by a hash over the files' paths and content digests, so two identical trees
share it; the cache entry remembers the stats that make the next look cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from engine.context.index import INDEX_VERSION, RepoIndex, update_index
from engine.context.parse import is_indexable
from engine.context.serial import index_from_json, index_to_json

log = logging.getLogger(__name__)

SKIP_DIRS = frozenset({".git", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".mypy_cache", "dist"})
Stats = dict[str, tuple[int, int]]  # path -> (mtime_ns, size)


def walk(root: Path) -> Stats:
    """The indexable files under root with their stats, hidden and tool folders left out."""
    found: Stats = {}
    pending = [("", str(root))]
    while pending:
        prefix, folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if name not in SKIP_DIRS and not name.startswith("."):
                        pending.append((prefix + name + "/", entry.path))
                    continue
                if entry.is_symlink() or not entry.is_file() or name.startswith("."):
                    continue
                stat = entry.stat()
            except OSError:
                continue
            path = prefix + name
            if is_indexable(path, stat.st_size):
                found[path] = (stat.st_mtime_ns, stat.st_size)
    return found


def stats_key(stats: Stats) -> str:
    """What the tree looks like now, cheaply: a hash over paths and stats (the in-memory cache's key)."""
    digest = hashlib.sha1()
    for path in sorted(stats):
        mtime, size = stats[path]
        digest.update(f"{path}\0{mtime}\0{size}\n".encode())
    return digest.hexdigest()


def content_key(index: RepoIndex) -> str:
    digest = hashlib.sha1()
    for path in index.paths:
        digest.update(f"{path}\0{index.files[path].digest}\n".encode())
    return "tree:" + digest.hexdigest()[:20]


def _cache_file(folder: Path) -> Path:
    return folder / "tree" / "index.json"


def _load(folder: Path, repo: str) -> tuple[RepoIndex, Stats] | None:
    try:
        stored = json.loads(_cache_file(folder).read_bytes())
        if stored.get("version") != INDEX_VERSION or stored.get("repo") != repo:
            return None
        stats = {str(p): (int(m), int(s)) for p, (m, s) in stored["stats"].items()}
        return index_from_json(stored), stats
    except FileNotFoundError:
        return None
    except Exception as error:  # a torn or foreign file is a cache miss, not a failure
        log.warning("ignoring unreadable tree index cache in %s: %s", folder, error)
        return None


def _save(folder: Path, index: RepoIndex, stats: Stats) -> None:
    target = _cache_file(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(f".{os.getpid()}.tmp")
    stored = {**index_to_json(index), "stats": {p: list(stat) for p, stat in stats.items()}}
    temporary.write_text(json.dumps(stored, separators=(",", ":")))
    os.replace(temporary, target)


def load_or_build_tree(
    folder: Path, root: Path, repo: str, stats: Stats
) -> tuple[RepoIndex, dict[str, object]]:
    """The index of a plain tree: the cached one with the files whose stats changed parsed again."""
    started = time.perf_counter()
    cached = _load(folder, repo)
    base, old_stats = cached if cached is not None else (RepoIndex(repo=repo, commit=None).finalize(), {})
    known = set(base.files) | base.skipped
    changed = {p for p in stats if p not in known or old_stats.get(p) != stats[p]}
    changed |= known - set(stats)
    if cached is not None and not changed:
        index, how = base, "cached (not a git repository)"
    else:
        index = update_index(base, root, None, sorted(changed), set(stats))
        index.commit = content_key(index)
        how = "updated (not a git repository)" if cached is not None else "built (not a git repository)"
        if cached is None or index.commit != base.commit or old_stats != stats:
            _save(folder, index, stats)
    seconds = round(time.perf_counter() - started, 3)
    return index, {"index": how, "files_parsed": len(changed), "index_seconds": seconds}
