"""Ranking: every file scored by BM25 on three fields (content, path, defined names), each query word counted
together with the other forms of it the code uses (`retried` → retry, retries), fused with embeddings by
reciprocal rank when there are any, boosted for the paths, frames and identifiers the query names, and
weighted by how likely a fix is to touch a file of its kind (roles.py); then BM25 again over the best files'
chunks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.context.bm25 import Bm25
from engine.context.index import RepoIndex
from engine.context.query import QueryHints, parse_query
from engine.context.roles import DEFAULT_POLICY, RolePolicy
from engine.context.tokenize import counts_of

__all__ = ["ChunkScore", "FileScore", "QueryHints", "Weights", "parse_query", "rank_chunks", "rank_files"]

LINE_BOOST = 3.0  # the chunk holds a line a stack-trace frame points at
RRF_K = 60


@dataclass(frozen=True)
class Weights:
    """How the parts of a file's score add up (tuned on bench/localization's suite, docs/benchmarks.md)."""

    content: float = 1.0
    path: float = 0.3
    symbols: float = 0.3
    path_boost: float = 4.0  # the query names this file by its path (or a frame in a traceback does)
    basename_boost: float = 2.0  # the query names a file by its base name only
    identifier_boost: float = 2.0  # the file defines an identifier the query names
    priors: bool = True  # weigh files by their role (tests, docs, vendored…)
    title: float = 1.0  # extra weight of the terms of the query's first line (an issue's title)
    content_b: float = 0.75  # BM25's length normalisation on content
    hop: float = 0.0  # a file the best hits import gets this share of the importer's score
    hop_from: int = 5  # how many of the best hits lend their score along their imports
    variants: float = 0.5  # a query word's other forms in the code count this share (parsing → parse, parser)


DEFAULT_WEIGHTS = Weights()
PATH_BOOST = DEFAULT_WEIGHTS.path_boost
IDENTIFIER_BOOST = DEFAULT_WEIGHTS.identifier_boost


def match_path(index: RepoIndex, hint: str, weights: Weights = DEFAULT_WEIGHTS) -> list[tuple[str, float]]:
    """Indexed files a path in the query refers to, with the boost each earns."""
    base = hint.rsplit("/", 1)[-1].lower()
    found: list[tuple[str, float]] = []
    for path in index.by_basename.get(base, []):
        if hint == path or hint.endswith("/" + path) or ("/" in hint and path.endswith("/" + hint)):
            found.append((path, weights.path_boost))
        elif "/" not in hint:
            found.append((path, weights.basename_boost))
    return found


@dataclass
class FileScore:
    path: str
    score: float
    lexical: float
    reasons: list[str] = field(default_factory=list)
    prior: float = 1.0  # the role's weight (roles.py), which its chunks' own scores get too


def rank_files(
    index: RepoIndex,
    hints: QueryHints,
    vector_scores: np.ndarray | None = None,
    *,
    weights: Weights = DEFAULT_WEIGHTS,
    policy: RolePolicy = DEFAULT_POLICY,
) -> list[FileScore]:
    """Every file with a positive score, best first."""
    term_weights = [1.0 + weights.title * (t in hints.title_terms) for t in hints.terms]
    groups = [[(term, 1.0)] for term in hints.terms]
    if weights.variants and "content" in index.fields:
        position = {term: i for i, term in enumerate(hints.terms)}
        for term, variant in word_variants(hints.terms, index.fields["content"].vocabulary):
            groups[position[term]].append((variant, weights.variants))
    content = _field_scores(index, "content", groups, term_weights, b=weights.content_b)
    base = weights.content * _normalised(content)
    if weights.path:
        base += weights.path * _normalised(_field_scores(index, "path", groups, term_weights))
    if weights.symbols:
        base += weights.symbols * _normalised(_field_scores(index, "symbols", groups, term_weights))
    base = _normalised(base)
    if vector_scores is not None and len(vector_scores) == len(index.paths):
        base = _normalised(_rrf(base) + _rrf(vector_scores))
    boosts: dict[str, float] = {}
    reasons: dict[str, list[str]] = {}

    def boost(path: str, amount: float, reason: str) -> None:
        boosts[path] = boosts.get(path, 0.0) + amount
        reasons.setdefault(path, []).append(reason)

    for hint in hints.paths | {f for f, _ in hints.frames}:
        for path, amount in match_path(index, hint, weights):
            boost(path, amount, f"path {hint}")
    for name in hints.identifiers:
        defining = {path for path, _ in index.definitions.get(name, [])}
        for path in defining:
            # An identifier defined in many files (`__init__`, `run`) says little about which one is meant.
            boost(path, weights.identifier_boost * min(1.0, 3 / len(defining)), f"defines {name}")
    position = {path: i for i, path in enumerate(index.paths)}
    scores = []
    for i, path in enumerate(index.paths):
        if base[i] <= 0 and path not in boosts:
            continue
        prior = policy.prior(path) if weights.priors else 1.0
        if prior <= 0:
            continue
        scores.append(
            FileScore(
                path,
                prior * (float(base[i]) + boosts.get(path, 0.0)),
                float(content[i]),
                reasons.get(path, []),
                prior,
            )
        )
    scores.sort(key=lambda s: (-s.score, position[s.path]))
    if weights.hop and scores:
        scores = _second_hop(index, scores, weights, policy, content, position)
    return scores


_SUFFIXES = ("ations", "ation", "ings", "ing", "ers", "er", "ies", "ied", "es", "ed", "s", "d", "ly")
_ENDINGS = ("", "e", "s", "es", "ed", "d", "ing", "er", "ers", "ion", "ions", "y", "ies", "ied")


def word_variants(terms: list[str], vocabulary: Mapping[str, int]) -> list[tuple[str, str]]:
    """Other forms of the query's words that the code uses (`parsing` → `parse`, `parser`; `requireds` →
    `required`): an issue's prose inflects what the code names. Each (term, variant) once; a variant that
    is itself a query term is left out."""
    wanted = set(terms)
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for term in terms:
        if len(term) < 4 or not term.isalpha():
            continue
        stems = {term}
        for suffix in _SUFFIXES:
            if term.endswith(suffix) and len(term) - len(suffix) >= 3:
                stem = term[: -len(suffix)]
                stems.add(stem)
                if suffix in ("ies", "ied"):
                    stems.add(stem + "y")
                if len(stem) > 3 and stem[-1] == stem[-2]:  # running → run
                    stems.add(stem[:-1])
        for stem in stems:
            for ending in _ENDINGS:
                variant = stem + ending
                if variant in vocabulary and variant not in wanted and variant not in seen:
                    seen.add(variant)
                    found.append((term, variant))
    return found


def _field_scores(
    index: RepoIndex,
    name: str,
    groups: list[list[tuple[str, float]]],
    weights: list[float],
    *,
    b: float | None = None,
) -> np.ndarray:
    model = index.fields.get(name)
    if model is None or not groups:
        return np.zeros(len(index.paths))
    return model.grouped_scores(groups, weights, b=b)


def _second_hop(
    index: RepoIndex,
    scores: list[FileScore],
    weights: Weights,
    policy: RolePolicy,
    content: np.ndarray,
    position: dict[str, int],
) -> list[FileScore]:
    """Files the best hits import get a share of the importer's score: the bug is often one call away."""
    lent: dict[str, tuple[float, str]] = {}
    for hit in scores[: weights.hop_from]:
        for target in index.imports.get(hit.path, []):
            amount = weights.hop * hit.score
            if amount > lent.get(target, (0.0, ""))[0]:
                lent[target] = (amount, hit.path)
    by_path = {s.path: s for s in scores}
    for target, (amount, source) in lent.items():
        prior = policy.prior(target) if weights.priors else 1.0
        if prior <= 0:
            continue
        found = by_path.get(target)
        if found is None:
            found = by_path[target] = FileScore(target, 0.0, float(content[position[target]]), [], prior)
        found.score += prior * amount
        found.reasons.append(f"imported by {source}")
    return sorted(by_path.values(), key=lambda s: (-s.score, position[s.path]))


def _normalised(values: np.ndarray) -> np.ndarray:
    top = float(values.max()) if len(values) else 0.0
    return values / top if top > 0 else np.zeros(len(values))


def _rrf(values: np.ndarray) -> np.ndarray:
    order = np.argsort(-values, kind="stable")
    fused = np.zeros(len(values))
    fused[order] = 1.0 / (RRF_K + np.arange(1, len(values) + 1))
    fused[values <= 0] = 0.0
    return fused


@dataclass
class ChunkScore:
    path: str
    start: int
    end: int
    text: str
    score: float
    reasons: list[str]
    focus: set[int]


def rank_chunks(index: RepoIndex, root: Path, files: list[FileScore], hints: QueryHints) -> list[ChunkScore]:
    """The chunks of the given files, scored by file score + chunk BM25 + chunk-level boosts (the latter two
    weighted by the file's role prior: ten chunks of a benchmark must not crowd out the source)."""
    chunks: list[ChunkScore] = []
    priors: list[float] = []
    for file_score in files:
        entry = index.files[file_score.path]
        try:
            lines = (root / entry.path).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        frame_lines = {line for f, line in hints.frames for p, _ in match_path(index, f) if p == entry.path}
        for start, end in entry.chunks:
            text = "\n".join(lines[start - 1 : end])
            if not text.strip():
                continue
            focus = {n for n in frame_lines if start <= n <= end}
            reasons = list(file_score.reasons)
            bonus = LINE_BOOST if focus else 0.0
            if focus:
                reasons.append(f"frame line {min(focus)}")
            for symbol in entry.symbols:
                if start <= symbol.line <= end and symbol.name.lower() in hints.identifiers:
                    bonus += IDENTIFIER_BOOST
                    reasons.append(f"defines {symbol.name.lower()}")
            reasons = list(dict.fromkeys(reasons))
            score = file_score.score + file_score.prior * bonus
            chunks.append(ChunkScore(entry.path, start, end, text, score, reasons, focus))
            priors.append(file_score.prior)
    if chunks and hints.terms:
        wanted = set(hints.terms)
        counted = [counts_of(c.text, wanted) for c in chunks]
        model = Bm25([c for c, _ in counted], [n for _, n in counted], k1=1.5)
        lexical = _normalised(model.scores(hints.terms))
        for chunk, value, prior in zip(chunks, lexical, priors, strict=True):
            chunk.score += prior * float(value)
    chunks.sort(key=lambda c: -c.score)
    return chunks


def round_score(value: float) -> float:
    return math.floor(value * 1000 + 0.5) / 1000
