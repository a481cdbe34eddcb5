"""Optional embeddings: an OpenAI-compatible `/v1/embeddings` client, per-file vectors kept with the index.

Everything works without them; when the endpoint fails the build goes on with BM25 alone and says so in
its diagnostics.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import httpx
import numpy as np

from engine.context.index import RepoIndex

log = logging.getLogger(__name__)

BATCH = 64
FILE_TEXT_CHARS = 1500


class EmbeddingError(RuntimeError):
    pass


class Embedder(Protocol):
    model: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class OpenAIEmbedder:
    """`POST {base_url}/embeddings` as OpenAI, Azure-compatible gateways, Ollama and vLLM serve it."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        model: str = "text-embedding-3-small",
        timeout: float = 30.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        try:
            response = await self._client.post(
                f"{self.base_url}/embeddings",
                json={"model": self.model, "input": list(texts)},
                headers=self._headers,
            )
        except httpx.HTTPError as error:
            raise EmbeddingError(f"embeddings endpoint unreachable: {error.__class__.__name__}") from error
        if response.status_code != 200:
            raise EmbeddingError(f"embeddings endpoint answered HTTP {response.status_code}")
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = [[float(x) for x in item["embedding"]] for item in data]
        except (ValueError, KeyError, TypeError) as error:
            raise EmbeddingError("embeddings endpoint answered with an unexpected body") from error
        if len(vectors) != len(texts):
            raise EmbeddingError(f"asked for {len(texts)} embeddings, got {len(vectors)}")
        return vectors

    async def aclose(self) -> None:
        await self._client.aclose()


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
