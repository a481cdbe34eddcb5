"""Optional embeddings: per-file vectors kept with the index, asked of EMBEDDING_MODEL by the job's client.

Embedding requests go through the same budget guard, cost ledger, retries and connection pool as chat
(engine.llm.client). Everything works without them; when the endpoint fails (or the budget cannot take
another request) the build goes on with BM25 alone and says so in its diagnostics.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from engine.context.index import RepoIndex
from engine.errors import JobCancelled, JobStopped, TransientFailure

if TYPE_CHECKING:  # the parse workers import this package: openai's import alone costs them ~1.2 s each
    from engine.llm.client import LLMClient

log = logging.getLogger(__name__)

BATCH = 64
FILE_TEXT_CHARS = 1500


class EmbeddingError(RuntimeError):
    pass


class Embedder(Protocol):
    model: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class LLMEmbedder:
    """`/embeddings` of the LLM endpoint as one job sees it: each request checked, retried and billed."""

    def __init__(self, llm: LLMClient, model: str, *, step_index: int | None = None) -> None:
        self.llm = llm
        self.model = model
        self.step_index = step_index

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        try:
            return await self.llm.embed(texts, step_index=self.step_index)
        except JobCancelled:
            raise
        except (JobStopped, TransientFailure) as error:
            # A limit reached here is met again by the next chat request, which stops the job; until then
            # retrieval goes on without vectors.
            raise EmbeddingError(error.reason) from error


def file_text(index: RepoIndex, path: str, root: Path) -> str:
    """What stands for a file in embedding space: its path, its definitions and its opening."""
    entry = index.files[path]
    names = " ".join(s.name for s in entry.symbols[:60])
    try:
        head = (root / path).read_text(encoding="utf-8", errors="replace")[:FILE_TEXT_CHARS]
    except OSError:
        head = ""
    return f"{path}\n{names}\n{head}"


class VectorStore:
    """File vectors keyed by content digest, one `.npz` per (repository, model) next to the index cache."""

    def __init__(self, folder: Path, model: str) -> None:
        self.path = folder / f"vectors-{re.sub(r'[^A-Za-z0-9_.-]+', '_', model)}.npz"
        self.vectors: dict[str, np.ndarray] = {}
        if self.path.exists():
            try:
                with np.load(self.path) as stored:
                    self.vectors = dict(zip(stored["digests"].tolist(), stored["matrix"], strict=True))
            except Exception as error:  # a torn file costs a re-embedding, nothing more
                log.warning("ignoring unreadable vectors %s: %s", self.path, error)

    async def ensure(self, index: RepoIndex, root: Path, embedder: Embedder) -> int:
        """Embed the files whose content has no vector yet; returns how many were embedded."""
        missing = [p for p in index.paths if index.files[p].digest not in self.vectors]
        for start in range(0, len(missing), BATCH):
            batch = missing[start : start + BATCH]
            vectors = await embedder.embed([file_text(index, p, root) for p in batch])
            for path, vector in zip(batch, vectors, strict=True):
                self.vectors[index.files[path].digest] = _unit(np.asarray(vector, dtype=np.float32))
        if missing:
            self._save()
        return len(missing)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        digests = list(self.vectors)
        temporary = self.path.with_name(f"{self.path.stem}.{os.getpid()}.tmp.npz")
        np.savez(temporary, digests=np.array(digests), matrix=np.stack([self.vectors[d] for d in digests]))
        os.replace(temporary, self.path)

    def similarities(self, index: RepoIndex, query_vector: Sequence[float]) -> np.ndarray:
        """Cosine similarity of the query with every file, in `index.paths` order (0 where no vector)."""
        query = _unit(np.asarray(query_vector, dtype=np.float32))
        out = np.zeros(len(index.paths))
        for i, path in enumerate(index.paths):
            vector = self.vectors.get(index.files[path].digest)
            if vector is not None and vector.shape == query.shape:
                out[i] = float(vector @ query)
        return out


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector
