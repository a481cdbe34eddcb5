"""The context engine: candidates from code, memory and the caller's extras, ranked, compacted and fitted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.context.budget import Candidate, fit
from engine.context.embeddings import Embedder, EmbeddingError, VectorStore
from engine.context.index import RepoIndex
from engine.context.memory import MemoryStore
from engine.context.parse import FileEntry, Symbol
from engine.context.rank import FileScore, QueryHints, parse_query, rank_chunks, rank_files
from engine.context.roles import policy_for
from engine.context.store import IndexCache, load_or_build, snapshot

log = logging.getLogger(__name__)

OUTPUT_RESERVE_TOKENS = 1024  # of a pack's budget, left for the model's answer
CHUNK_FILES = 15  # files whose chunks are scored one by one, at the least
# More files' chunks are scored for a larger budget, so that the pack can fill it: a file's chunks that
# make the pack average about this many (estimated) tokens.
TOKENS_PER_CHUNK_FILE = 800
MAP_FILES = 30
MAP_OUTLINE_LINES = 6
# Loaded indexes, shared by every ContextEngine in the process: callers may make an engine per build.
_LOADED: OrderedDict[tuple[Any, ...], RepoIndex] = OrderedDict()
_LOADED_MAX = 3
_LANGUAGES = {
    "py": "python",
    "js": "javascript",
    "ts": "typescript",
    "go": "go",
    "rs": "rust",
    "md": "markdown",
}


@dataclass
class ContextPack:
    text: str
    tokens: int
    diagnostics: dict[str, Any] = field(default_factory=dict)


class ContextEngine:
    def __init__(
        self,
        cache_dir: Path,
        sessions: async_sessionmaker[AsyncSession] | None = None,
        embedder: Embedder | None = None,
        *,
        output_reserve_tokens: int = OUTPUT_RESERVE_TOKENS,
        top_k: int | None = None,  # code chunks considered at most; None: as many as the budget takes
        min_score: float = 0.15,
    ) -> None:
        self.cache = IndexCache(Path(cache_dir))
        self.memory = MemoryStore(sessions) if sessions is not None else None
        self.embedder = embedder
        self.output_reserve_tokens = output_reserve_tokens
        self.top_k = top_k
        self.min_score = min_score
        self._locks: dict[str, asyncio.Lock] = {}

    async def index(self, repo_dir: Path, repo: str) -> tuple[RepoIndex, dict[str, Any]]:
        """The repository's index for its working tree now, from memory, the disk cache or parsing."""
        root = await asyncio.to_thread(Path(repo_dir).resolve)
        async with self._locks.setdefault(str(root), asyncio.Lock()):
            snap = await asyncio.to_thread(snapshot, root)
            key = (str(self.cache.cache_dir), repo, *snap.key)
            if key in _LOADED:
                _LOADED.move_to_end(key)
                index, how = _LOADED[key], {"index": "in memory", "files_parsed": 0}
            else:
                index, how = await asyncio.to_thread(load_or_build, self.cache, snap, repo)
                _LOADED[key] = index
                while len(_LOADED) > _LOADED_MAX:
                    _LOADED.popitem(last=False)
            if snap.left_out:  # beyond MAX_FILES: said on the job page, and in the log when parsing
                how["files_left_out"] = snap.left_out
                if how.get("files_parsed"):
                    log.warning("%s: %d files indexed, %d left out", repo, len(index.files), snap.left_out)
            return index, how

    async def rank_files(self, repo_dir: Path, repo: str, query: str) -> list[FileScore]:
        root = await asyncio.to_thread(Path(repo_dir).resolve)
        index, _ = await self.index(root, repo)
        hints = parse_query(query)
        vectors, _ = await self._vector_scores(index, root, repo, query)
        return rank_files(index, hints, vectors, policy=await asyncio.to_thread(policy_for, root))

    async def outlines(self, repo_dir: Path, repo: str, paths: Sequence[str]) -> list[tuple[str, str]]:
        """Each path with the outline of what it defines (for a shortlist: far fewer tokens than the file)."""
        index, _ = await self.index(Path(repo_dir), repo)
        return [(path, outline(index.files[path])) for path in paths if path in index.files]

    async def build(
        self,
        repo_dir: Path,
        repo: str,
        query: str,
        budget_tokens: int,
        job_id: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
        named: Sequence[str] = (),
    ) -> ContextPack:
        """The pack for `query`; `named` are paths the planner chose for this step, ranked as if the query
        named them."""
        if budget_tokens < 0:
            raise ValueError(f"budget_tokens must be ≥ 0, got {budget_tokens}")
        started = time.perf_counter()
        root = await asyncio.to_thread(Path(repo_dir).resolve)
        index, how = await self.index(root, repo)
        hints = parse_query(query)
        hints.paths.update(path.strip().lstrip("./") for path in named if path.strip())
        vectors, embedding_note = await self._vector_scores(index, root, repo, query)
        files = rank_files(index, hints, vectors, policy=await asyncio.to_thread(policy_for, root))
        reserve = min(self.output_reserve_tokens, budget_tokens // 4)
        chunk_files = max(CHUNK_FILES, (budget_tokens - reserve) // TOKENS_PER_CHUNK_FILE)
        chunks = await asyncio.to_thread(rank_chunks, index, root, files[:chunk_files], hints)
        candidates = [
            Candidate(
                source="code",
                title=f"{c.path} (lines {c.start}-{c.end})",
                text=c.text,
                score=c.score,
                reasons=c.reasons,
                focus={n - c.start + 1 for n in c.focus},
                first_line=c.start,
                language=_LANGUAGES.get(c.path.rsplit(".", 1)[-1], ""),
            )
            for c in chunks[: self.top_k]
            if c.score >= self.min_score
        ]
        candidates += self._repo_map(index, files)
        candidates += [
            Candidate(source=name, title=name, text=text, score=5.0) for name, text in extra if text
        ]
        if self.memory is not None:
            notes = await self.memory.for_prompt(repo=repo, job_id=job_id)
            if notes:
                candidates.append(Candidate(source="memory", title="memory notes", text=notes, score=10.0))
        fitted = fit(candidates, set(hints.terms), budget_tokens - reserve)
        diagnostics = {
            "repo": repo,
            "commit": index.commit,
            **how,
            "files_indexed": len(index.files),
            "embeddings": embedding_note,
            "budget_tokens": budget_tokens,
            "output_reserve_tokens": reserve,
            "tokens": fitted.tokens,
            "tokens_clipped": fitted.clipped_tokens,
            "candidates_considered": len(candidates),
            "chunks_scored": len(chunks),
            "chosen": fitted.chosen,
            "dropped": fitted.dropped[:20],
            "top_files": [
                {"path": f.path, "score": round(f.score, 3), "reasons": f.reasons} for f in files[:10]
            ],
            "query_hints": _describe_hints(hints),
            "seconds": round(time.perf_counter() - started, 3),
        }
        log.info(
            "context built: %d tokens from %d of %d candidates",
            fitted.tokens,
            len(fitted.chosen),
            len(candidates),
            extra={"job_id": job_id, "repo": repo},
        )
        return ContextPack(text=fitted.text, tokens=fitted.tokens, diagnostics=diagnostics)

    async def _vector_scores(
        self, index: RepoIndex, root: Path, repo: str, query: str
    ) -> tuple[np.ndarray | None, str]:
        if self.embedder is None:
            return None, "off"
        try:
            store = await asyncio.to_thread(VectorStore, self.cache.folder(repo), self.embedder.model)
            embedded = await store.ensure(index, root, self.embedder)
            (query_vector,) = await self.embedder.embed([query])
        except EmbeddingError as error:
            log.warning("embeddings unavailable, ranking with BM25 only: %s", error)
            return None, f"failed: {error}"
        return store.similarities(index, query_vector), f"on ({embedded} files embedded now)"

    def _repo_map(self, index: RepoIndex, files: list[FileScore]) -> list[Candidate]:
        """The best files with an outline of their definitions (and lines): the planner's shortlist."""
        lines = []
        for file_score in files[:MAP_FILES]:
            lines.append(file_score.path)
            shape = outline(index.files[file_score.path], max_lines=MAP_OUTLINE_LINES)
            if shape:
                lines.append(shape)
        if not lines:
            return []
        return [
            Candidate(
                source="repo-map",
                title="repository map (most relevant files, what they define)",
                text="\n".join(lines),
                score=1.0,
            )
        ]


def outline(entry: FileEntry, max_lines: int = 12) -> str:
    """`  class Name (lines a-b): method, method…` and `  function name (lines a-b)`, at most max_lines."""
    classes = [s for s in entry.symbols if s.kind == "class"]
    members: dict[Symbol, list[str]] = {c: [] for c in classes}
    shown: list[Symbol] = []
    for symbol in entry.symbols:
        if symbol.kind == "variable":
            continue
        owner = next((c for c in reversed(classes) if c.line <= symbol.line <= c.end_line), None)
        if symbol.kind == "method" and owner is not None:
            members[owner].append(symbol.name)
        else:
            shown.append(symbol)
    lines = []
    for symbol in shown[:max_lines]:
        line = f"  {symbol.kind} {symbol.name} (lines {symbol.line}-{symbol.end_line})"
        names = members.get(symbol, [])
        if names:
            line += ": " + ", ".join(names[:15]) + (" …" if len(names) > 15 else "")
        lines.append(line)
    if len(shown) > max_lines:
        lines.append(f"  … and {len(shown) - max_lines} more")
    return "\n".join(lines)


def _describe_hints(hints: QueryHints) -> dict[str, Any]:
    return {
        "terms": hints.terms[:20],
        "paths": sorted(hints.paths)[:20],
        "frames": [f"{path}:{line}" for path, line in hints.frames[:20]],
        "identifiers": sorted(hints.identifiers)[:20],
    }
