"""The repository index: files, symbols and chunks, with BM25 models over three fields of every file:
its content, its path and the names it defines."""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from engine.context.bm25 import Bm25
from engine.context.graph import import_edges
from engine.context.parse import FileEntry, Symbol, parse_file, parse_many
from engine.context.tokenize import path_terms, split_identifier

log = logging.getLogger(__name__)

INDEX_VERSION = 4  # 2: the path is a field, not content words; 3: tree-sitter symbols; 4: Python imports
PARALLEL_MIN_FILES = 400  # below this, starting worker processes costs more than it saves
_BATCH = 64
FIELDS = ("content", "path", "symbols")


@dataclass
class RepoIndex:
    repo: str
    commit: str | None
    files: dict[str, FileEntry] = field(default_factory=dict)
    version: int = INDEX_VERSION
    skipped: set[str] = field(default_factory=set)  # listed but not text (binary, too big): not parsed again
    # Derived from the fields above (finalize), never stored.
    paths: list[str] = field(default_factory=list, repr=False)
    fields: dict[str, Bm25] = field(default_factory=dict, repr=False)
    definitions: dict[str, list[tuple[str, Symbol]]] = field(default_factory=dict, repr=False)
    by_basename: dict[str, list[str]] = field(default_factory=dict, repr=False)
    by_stem: dict[str, list[str]] = field(default_factory=dict, repr=False)
    imports: dict[str, list[str]] = field(default_factory=dict, repr=False)  # path -> paths it imports

    def finalize(self) -> RepoIndex:
        """Build the lookup tables and the BM25 models from the per-file term counts."""
        self.paths = sorted(self.files)
        definitions: dict[str, list[tuple[str, Symbol]]] = defaultdict(list)
        by_basename: dict[str, list[str]] = defaultdict(list)
        by_stem: dict[str, list[str]] = defaultdict(list)
        for path in self.paths:
            base = path.rsplit("/", 1)[-1].lower()
            by_basename[base].append(path)
            by_stem[base.split(".", 1)[0]].append(path)
            for symbol in self.files[path].symbols:
                definitions[symbol.name.lower()].append((path, symbol))
        self.definitions = dict(definitions)
        self.by_basename = dict(by_basename)
        self.by_stem = dict(by_stem)
        entries = [self.files[p] for p in self.paths]
        self.imports = import_edges({e.path: e.imports for e in entries if e.imports}, self.paths)
        self.fields = {
            "content": Bm25([e.terms for e in entries], [e.length for e in entries]),
            "path": Bm25([Counter(path_terms(p)) for p in self.paths], b=0.3),
            "symbols": Bm25([_symbol_terms(e) for e in entries], b=0.3),
        }
        return self

    def field_scores(
        self, name: str, terms: list[str], weights: list[float] | None = None, *, b: float | None = None
    ) -> np.ndarray:
        """BM25 score of every file (in `paths` order) for the query terms, on one field."""
        model = self.fields.get(name)
        if model is None or not terms:
            return np.zeros(len(self.paths))
        return model.scores(terms, weights, b=b)

    def file_scores(self, terms: list[str]) -> np.ndarray:
        return self.field_scores("content", terms)


def _symbol_terms(entry: FileEntry) -> Counter[str]:
    return Counter(term for symbol in entry.symbols for term in _name_terms(symbol.name))


@lru_cache(maxsize=100_000)
def _name_terms(name: str) -> tuple[str, ...]:
    return tuple(t for t in split_identifier(name) if len(t) > 1)


def parse_files(root: Path, paths: list[str]) -> list[FileEntry]:
    """Parse many files, in worker processes when there are enough of them to pay off."""
    workers = min(os.cpu_count() or 1, 8)
    if len(paths) < PARALLEL_MIN_FILES or workers < 2:
        return [entry for entry in (parse_file(root, p) for p in paths) if entry is not None]
    batches = [paths[i : i + _BATCH] for i in range(0, len(paths), _BATCH)]
    # spawn, not fork: the caller is a thread of an asyncio process, and forking threads is unsafe.
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            results = pool.map(parse_many, [str(root)] * len(batches), batches)
            return [entry for batch in results for entry in batch]
    except (BrokenProcessPool, OSError) as error:
        # E.g. a __main__ that cannot be imported again in a spawned child: slower, but still an index.
        log.warning("parallel indexing failed (%s); parsing %d files in this process", error, len(paths))
        return [entry for entry in (parse_file(root, p) for p in paths) if entry is not None]


def build_index(root: Path, repo: str, commit: str | None, paths: list[str]) -> RepoIndex:
    files = {e.path: e for e in parse_files(root, paths)}
    return RepoIndex(repo=repo, commit=commit, files=files, skipped=set(paths) - set(files)).finalize()


def update_index(
    base: RepoIndex, root: Path, commit: str | None, changed: list[str], present: set[str]
) -> RepoIndex:
    """A copy of `base` with the changed paths parsed again (or dropped when no longer present)."""
    files = dict(base.files)
    skipped = base.skipped - set(changed)
    for path in changed:
        files.pop(path, None)
    wanted = [p for p in changed if p in present]
    for entry in parse_files(root, wanted):
        files[entry.path] = entry
    skipped |= set(wanted) - set(files)
    return RepoIndex(repo=base.repo, commit=commit, files=files, skipped=skipped).finalize()
