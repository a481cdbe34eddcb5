import json
from pathlib import Path

import httpx
import respx

from engine.context import ContextEngine, OpenAIEmbedder

from .conftest import make_repo

BASE = "http://127.0.0.1:9/v1"
FILES = {
    "app/weather.py": "def forecast(city):\n    return fetch(city)\n",
    "app/money.py": "def convert(amount, rate):\n    return amount * rate\n",
    "app/sky.py": "def sunshine_hours(day):\n    return day.hours\n",
}


def _vector_for(text: str) -> list[float]:
    # A tiny "semantic" space: weather-ish texts point one way, money-ish texts the other.
    weather = any(w in text for w in ("rain", "sunshine", "forecast", "sky"))
    return [1.0, 0.0] if weather else [0.0, 1.0]


def _fake_endpoint(calls: list[list[str]]) -> respx.Route:
    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(body["input"])
        data = [{"index": i, "embedding": _vector_for(t)} for i, t in enumerate(body["input"])]
        return httpx.Response(200, json={"data": list(reversed(data)), "model": body["model"]})

    return respx.post(f"{BASE}/embeddings").mock(side_effect=answer)


@respx.mock
async def test_embeddings_fuse_with_bm25_and_find_a_file_with_no_shared_words(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    calls: list[list[str]] = []
    _fake_endpoint(calls)
    query = "will it rain tomorrow"  # no word of it appears in any file
    plain = await ContextEngine(tmp_path / "cache").rank_files(repo, "acme/w", query)
    assert plain == []
    engine = ContextEngine(tmp_path / "cache", embedder=OpenAIEmbedder(BASE, api_key="k", model="m"))
    ranked = [f.path for f in await engine.rank_files(repo, "acme/w", query)]
    assert set(ranked) == {"app/weather.py", "app/sky.py"}  # money.py is no nearer than orthogonal
    assert len(calls[0]) == 3 and calls[1] == [query]


@respx.mock
async def test_file_vectors_are_stored_and_not_asked_for_again(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    calls: list[list[str]] = []
    _fake_endpoint(calls)
    embedder = OpenAIEmbedder(BASE, model="m")
    await ContextEngine(tmp_path / "cache", embedder=embedder).rank_files(repo, "acme/w", "rain")
    pack = await ContextEngine(tmp_path / "cache", embedder=embedder).build(repo, "acme/w", "rain", 1000)
    assert pack.diagnostics["embeddings"] == "on (0 files embedded now)"
    assert [len(c) for c in calls] == [3, 1, 1]  # files once, then only the queries


@respx.mock
async def test_failing_endpoint_falls_back_to_bm25_and_says_so(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    respx.post(f"{BASE}/embeddings").mock(return_value=httpx.Response(503, text="overloaded"))
    engine = ContextEngine(tmp_path / "cache", embedder=OpenAIEmbedder(BASE, model="m"))
    pack = await engine.build(repo, "acme/w", "convert the amount", budget_tokens=1000)
    assert pack.diagnostics["embeddings"] == "failed: embeddings endpoint answered HTTP 503"
    assert pack.diagnostics["top_files"][0]["path"] == "app/money.py"


@respx.mock
async def test_unreachable_endpoint_and_bad_bodies_are_reported(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    route = respx.post(f"{BASE}/embeddings")
    engine = ContextEngine(tmp_path / "cache", embedder=OpenAIEmbedder(BASE, model="m"))
    route.mock(side_effect=httpx.ConnectError("refused"))
    pack = await engine.build(repo, "acme/w", "convert", budget_tokens=1000)
    assert pack.diagnostics["embeddings"] == "failed: embeddings endpoint unreachable: ConnectError"
    route.mock(return_value=httpx.Response(200, json={"data": [{"index": 0}]}))
    pack = await engine.build(repo, "acme/w", "convert", budget_tokens=1000)
    assert pack.diagnostics["embeddings"] == "failed: embeddings endpoint answered with an unexpected body"
