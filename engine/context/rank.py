"""Ranking: BM25 over files (fused with embeddings by reciprocal rank when there are any), strong boosts for
paths, identifiers and stack-trace frames the query names, then BM25 again over the best files' chunks."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.context.index import RepoIndex, bm25_from_counts
from engine.context.tokenize import counts_of, tokenize

PATH_BOOST = 4.0  # the query names this file by its path (or a frame in a traceback does)
BASENAME_BOOST = 2.0  # the query names a file by its base name only
IDENTIFIER_BOOST = 2.0  # the file (chunk) defines an identifier the query names
LINE_BOOST = 3.0  # the chunk holds a line a stack-trace frame points at
MAX_QUERY_TERMS = 64
RRF_K = 60

_FRAME_PY = re.compile(r'File "([^"]+)", line (\d+)(?:, in ([A-Za-z_]\w*))?')
_PATH_LINE = re.compile(r"([\w./\\-]+\.[A-Za-z]{1,5}):(\d+)")
_PATH = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.[A-Za-z][A-Za-z0-9]{0,4})(?![\w/])")
_IDENTIFIER = re.compile(
    r"`([^`\s]+)`|\b([A-Za-z_]\w*)\s*\(|\b([a-z]+(?:_[a-z0-9]+)+|_\w+|[a-z]+[A-Z]\w*|[A-Z][a-z0-9]+[A-Z]\w*)\b"
)
_DOTTED = re.compile(r"\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)\b")
_PROSE_EXTENSIONS = frozenset({"e.g", "i.e", "etc"})


@dataclass
class QueryHints:
    terms: list[str]
    paths: set[str] = field(default_factory=set)
    frames: list[tuple[str, int]] = field(default_factory=list)
    identifiers: set[str] = field(default_factory=set)


def parse_query(query: str) -> QueryHints:
    hints = QueryHints(terms=_query_terms(query))
    for match in _FRAME_PY.finditer(query):
        hints.frames.append((_normal(match.group(1)), int(match.group(2))))
        if match.group(3) and match.group(3) != "<module>":
            hints.identifiers.add(match.group(3).lower())
    for match in _PATH_LINE.finditer(query):
        hints.frames.append((_normal(match.group(1)), int(match.group(2))))
    for match in _PATH.finditer(query):
        if match.group(1).lower() not in _PROSE_EXTENSIONS:
            hints.paths.add(_normal(match.group(1)))
    for match in _IDENTIFIER.finditer(query):
        word = next(g for g in match.groups() if g)
        for part in re.split(r"[.:]+", word.strip("()")):
            if re.fullmatch(r"[A-Za-z_]\w*", part) and len(part) > 2:
                hints.identifiers.add(part.lower())
    for match in _DOTTED.finditer(query):
        parts = match.group(1).split(".")
        hints.paths.add("/".join(parts) + ".py")  # `engine.jobs` may be the module engine/jobs.py
        hints.identifiers.update(p.lower() for p in parts[1:] if len(p) > 2)
    return hints


def _normal(path: str) -> str:
    return path.replace("\\", "/").lstrip("./") if not path.startswith("/") else path.replace("\\", "/")


def _query_terms(query: str) -> list[str]:
    counts = Counter(tokenize(query))
    return [term for term, _ in counts.most_common(MAX_QUERY_TERMS)]


def match_path(index: RepoIndex, hint: str) -> list[tuple[str, float]]:
    """Indexed files a path in the query refers to, with the boost each earns."""
    base = hint.rsplit("/", 1)[-1].lower()
    found: list[tuple[str, float]] = []
    for path in index.by_basename.get(base, []):
        if hint == path or hint.endswith("/" + path) or ("/" in hint and path.endswith("/" + hint)):
            found.append((path, PATH_BOOST))
        elif "/" not in hint:
            found.append((path, BASENAME_BOOST))
    return found


@dataclass
class FileScore:
    path: str
    score: float
    lexical: float
    reasons: list[str] = field(default_factory=list)


def rank_files(
    index: RepoIndex, hints: QueryHints, vector_scores: np.ndarray | None = None
) -> list[FileScore]:
    """Every file with a positive score, best first."""
    bm25 = index.file_scores(hints.terms)
    base = _normalised(bm25)
    if vector_scores is not None and len(vector_scores) == len(index.paths):
        base = _normalised(_rrf(bm25) + _rrf(vector_scores))
    boosts: dict[str, float] = {}
    reasons: dict[str, list[str]] = {}

    def boost(path: str, amount: float, reason: str) -> None:
        boosts[path] = boosts.get(path, 0.0) + amount
        reasons.setdefault(path, []).append(reason)

    for hint in hints.paths | {f for f, _ in hints.frames}:
        for path, amount in match_path(index, hint):
            boost(path, amount, f"path {hint}")
    for name in hints.identifiers:
        defining = {path for path, _ in index.definitions.get(name, [])}
        for path in defining:
            # An identifier defined in many files (`__init__`, `run`) says little about which one is meant.
            boost(path, IDENTIFIER_BOOST * min(1.0, 3 / len(defining)), f"defines {name}")
    position = {path: i for i, path in enumerate(index.paths)}
    scores = [
        FileScore(path, float(base[i]) + boosts.get(path, 0.0), float(bm25[i]), reasons.get(path, []))
        for i, path in enumerate(index.paths)
        if base[i] > 0 or path in boosts
    ]
    scores.sort(key=lambda s: (-s.score, position[s.path]))
    return scores


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
    """The chunks of the given files, scored by file score + chunk BM25 + chunk-level boosts."""
    chunks: list[ChunkScore] = []
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
            chunks.append(ChunkScore(entry.path, start, end, text, file_score.score + bonus, reasons, focus))
    if chunks and hints.terms:
        wanted = set(hints.terms)
        counted = [counts_of(c.text, wanted) for c in chunks]
        model = bm25_from_counts([c for c, _ in counted], [n for _, n in counted])
        lexical = _normalised(np.asarray(model.get_scores(hints.terms), dtype=float))
        for chunk, value in zip(chunks, lexical, strict=True):
            chunk.score += float(value)
    chunks.sort(key=lambda c: -c.score)
    return chunks


def round_score(value: float) -> float:
    return math.floor(value * 1000 + 0.5) / 1000
