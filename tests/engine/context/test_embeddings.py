"""Embeddings: fused with BM25 in ranking, kept per file, and asked for through the job's LLM client (the
same guard, ledger, retries and connection pool as chat), falling back to BM25 when they fail."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from engine.context import ContextEngine, LLMEmbedder
from engine.errors import JobCancelled
from engine.store.jobs import JobStore
from tests.engine.llm.conftest import client_for, new_job, settings_for
from tests.support.fake_llm import FakeLLM

from .conftest import make_repo

FILES = {
    "app/weather.py": "def forecast(city):\n    return fetch(city)\n",
    "app/money.py": "def convert(amount, rate):\n    return amount * rate\n",
    "app/sky.py": "def sunshine_hours(day):\n    return day.hours\n",
}


class TinySpace:
    """A tiny "semantic" space: weather-ish texts point one way, money-ish texts the other."""

    model = "tiny"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        weather = ("rain", "sunshine", "forecast", "sky")
        return [[1.0, 0.0] if any(w in t for w in weather) else [0.0, 1.0] for t in texts]


async def test_embeddings_fuse_with_bm25_and_find_a_file_with_no_shared_words(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    query = "will it rain tomorrow"  # no word of it appears in any file
    plain = await ContextEngine(tmp_path / "cache").rank_files(repo, "acme/w", query)
    assert plain == []
    space = TinySpace()
    engine = ContextEngine(tmp_path / "cache", embedder=space)
    ranked = [f.path for f in await engine.rank_files(repo, "acme/w", query)]
    assert set(ranked) == {"app/weather.py", "app/sky.py"}  # money.py is no nearer than orthogonal
    assert len(space.calls[0]) == 3 and space.calls[1] == [query]


async def test_file_vectors_are_stored_and_not_asked_for_again(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    space = TinySpace()
    await ContextEngine(tmp_path / "cache", embedder=space).rank_files(repo, "acme/w", "rain")
    pack = await ContextEngine(tmp_path / "cache", embedder=space).build(repo, "acme/w", "rain", 1000)
    assert pack.diagnostics["embeddings"] == "on (0 files embedded now)"
    assert [len(c) for c in space.calls] == [3, 1, 1]  # files once, then only the queries


async def test_embeddings_go_through_the_guard_and_ledger_with_retries(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    """Regression: embedding calls bypassed the guard and the ledger, with no retries."""
    repo = make_repo(tmp_path / "repo", FILES)
    llm.reply_status(503, embeddings=True)
    settings = settings_for(tmp_path, database_url, llm, embedding_model="text-embedding-3-small")
    job_id = await new_job(store)
    client = client_for(store, settings, job_id)
    engine = ContextEngine(tmp_path / "cache", embedder=LLMEmbedder(client, "text-embedding-3-small"))

    pack = await engine.build(repo, "acme/w", "convert the amount", budget_tokens=1000)

    assert pack.diagnostics["embeddings"] == "on (3 files embedded now)"
    assert [r["encoding_format"] for r in llm.embedding_requests] == ["float", "float", "float"]
    view = await store.view(job_id)
    assert [(c.role, c.model, c.outcome) for c in view.costs] == [
        ("embeddings", "text-embedding-3-small", "HTTP 503"),
        ("embeddings", "text-embedding-3-small", "ok"),
        ("embeddings", "text-embedding-3-small", "ok"),
    ]
    assert view.requests == 3 and view.cost_usd > 0 and all(c.checked_usd for c in view.costs)
    assert view.costs[1].tokens_out == 0 and view.costs[1].billed_on == "usage"
    await client.aclose()


async def test_a_failing_or_unaffordable_endpoint_falls_back_to_bm25_and_says_so(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    llm.reply_raw("<html>down</html>", embeddings=True)
    settings = settings_for(
        tmp_path, database_url, llm, embedding_model="text-embedding-3-small", llm_max_retries=0
    )
    job_id = await new_job(store)
    client = client_for(store, settings, job_id)
    engine = ContextEngine(tmp_path / "cache", embedder=LLMEmbedder(client, "text-embedding-3-small"))

    pack = await engine.build(repo, "acme/w", "convert the amount", budget_tokens=1000)
    assert pack.diagnostics["embeddings"] == (
        "failed: the LLM endpoint answered text/html, not JSON: <html>down</html>"
    )
    assert pack.diagnostics["top_files"][0]["path"] == "app/money.py"

    await store.update(job_id, max_requests=1)  # the request limit is spent: embeddings are skipped
    pack = await engine.build(repo, "acme/w", "convert the amount", budget_tokens=1000)
    assert pack.diagnostics["embeddings"].startswith("failed: request limit reached")
    assert len(llm.embedding_requests) == 1
    await client.aclose()


async def test_an_unpriced_embedding_model_is_reported_not_run_unmetered(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    settings = settings_for(tmp_path, database_url, llm, embedding_model="nomic-embed-text")
    client = client_for(store, settings, await new_job(store))
    engine = ContextEngine(tmp_path / "cache", embedder=LLMEmbedder(client, "nomic-embed-text"))

    pack = await engine.build(repo, "acme/w", "convert", budget_tokens=1000)

    assert pack.diagnostics["embeddings"].startswith("failed: no price for model 'nomic-embed-text'")
    assert llm.embedding_requests == []
    await client.aclose()


async def test_a_cancel_seen_by_an_embeddings_request_stops_the_job(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    settings = settings_for(tmp_path, database_url, llm, embedding_model="text-embedding-3-small")
    job_id = await new_job(store)
    await store.request_cancel(job_id, by="test")
    client = client_for(store, settings, job_id)
    engine = ContextEngine(tmp_path / "cache", embedder=LLMEmbedder(client, "text-embedding-3-small"))

    with pytest.raises(JobCancelled):
        await engine.build(repo, "acme/w", "convert", budget_tokens=1000)
    await client.aclose()
