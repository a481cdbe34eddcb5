"""The repository index: files, symbols and chunks, with a BM25 model (rank-bm25) over whole files."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from rank_bm25 import BM25Okapi

from engine.context.parse import FileEntry, Symbol, parse_file, parse_many

log = logging.getLogger(__name__)

INDEX_VERSION = 1
PARALLEL_MIN_FILES = 400  # below this, starting worker processes costs more than it saves
_BATCH = 64


@dataclass
class RepoIndex:
    repo: str
    commit: str | None
    files: dict[str, FileEntry] = field(default_factory=dict)
    version: int = INDEX_VERSION
    skipped: set[str] = field(default_factory=set)  # listed but not text (binary, too big): not parsed again
    # Derived from the fields above (finalize), never stored.
    paths: list[str] = field(default_factory=list, repr=False)
    bm25: BM25Okapi | None = field(default=None, repr=False)
    definitions: dict[str, list[tuple[str, Symbol]]] = field(default_factory=dict, repr=False)
    by_basename: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def finalize(self) -> RepoIndex:
        """Build the lookup tables and the BM25 model from the per-file term counts."""
        self.paths = sorted(self.files)
        definitions: dict[str, list[tuple[str, Symbol]]] = defaultdict(list)
        by_basename: dict[str, list[str]] = defaultdict(list)
        for path in self.paths:
            by_basename[path.rsplit("/", 1)[-1].lower()].append(path)
            for symbol in self.files[path].symbols:
                definitions[symbol.name.lower()].append((path, symbol))
        self.definitions = dict(definitions)
        self.by_basename = dict(by_basename)
        self.bm25 = _bm25_from_counts([self.files[p] for p in self.paths]) if self.paths else None
        return self

    def file_scores(self, terms: list[str]) -> np.ndarray:
        """BM25 score of every file (in `paths` order) for the query terms."""
        if self.bm25 is None or not terms:
            return np.zeros(len(self.paths))
        return np.asarray(self.bm25.get_scores(terms), dtype=float)


def _bm25_from_counts(entries: list[FileEntry]) -> BM25Okapi:
    return bm25_from_counts([entry.terms for entry in entries], [entry.length for entry in entries])


def bm25_from_counts(counts: Sequence[Mapping[str, int]], lengths: list[int]) -> BM25Okapi:
    """A rank-bm25 Okapi model over documents given as term counts.

    rank-bm25 counts terms itself from token lists, one Python step per token; the index already holds the
    counts (made in worker processes), so the model is filled from them and keeps rank-bm25's scoring.
    """
    model = BM25Okapi.__new__(BM25Okapi)
    model.k1, model.b, model.epsilon = 1.5, 0.75, 0.25
    model.tokenizer = None
    model.corpus_size = len(counts)
    model.doc_freqs = counts
    model.doc_len = lengths
    model.avgdl = (sum(lengths) / len(counts)) or 1.0
    model.idf = {}
    document_counts: dict[str, int] = defaultdict(int)
    for terms in counts:
        for term in terms:
            document_counts[term] += 1
    if document_counts:  # rank-bm25 divides by the vocabulary size
        model._calc_idf(document_counts)
    return with_positive_idf(model)


IDF_FLOOR = 0.05


def with_positive_idf(model: BM25Okapi) -> BM25Okapi:
    # Okapi's idf turns negative for a term in more than half the documents, and rank-bm25's epsilon floor is
    # negative too when the corpus is tiny (one file, a few chunks): such a term would push its documents
    # below those without it. A small positive floor keeps "mentions it" above "does not".
    for term, value in model.idf.items():
        if value < IDF_FLOOR:
            model.idf[term] = IDF_FLOOR
    return model


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
