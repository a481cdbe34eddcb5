"""autodev.body_limit: every body bounded per route while it streams, before any parser sees it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from autodev.body_limit import BodyLimit, Limit

calls: list[str] = []


async def read_all(request: Request) -> PlainTextResponse:
    calls.append(request.url.path)
    return PlainTextResponse(str(len(await request.body())))


async def swallow(request: Request) -> JSONResponse:
    """A route that catches whatever reading fails with and answers 400 (as FastAPI's form parsing does)."""
    calls.append(request.url.path)
    try:
        await request.body()
    except Exception:
        return JSONResponse({"error": "could not parse"}, status_code=400)
    return JSONResponse({"ok": True})


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    calls.clear()
    app = Starlette(routes=[Route(p, read_all, methods=["POST"]) for p in ("/big", "/small", "/files")])
    app.router.routes.append(Route("/swallow", swallow, methods=["POST"]))
    limited = BodyLimit(
        app, routes={"/big": Limit(1000), "/files": Limit(1000, multipart=True)}, default=Limit(100)
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=limited), base_url="http://t") as http:
        yield http


def chunks(total: int, size: int = 30) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        for start in range(0, total, size):
            yield b"x" * min(size, total - start)

    return gen()


async def test_each_route_has_its_own_limit(client: httpx.AsyncClient) -> None:
    assert (await client.post("/big", content=b"x" * 1000)).text == "1000"
    assert (await client.post("/small", content=b"x" * 100)).text == "100"
    assert (await client.post("/small", content=b"x" * 101)).status_code == 413
    assert (await client.post("/big", content=b"x" * 1001)).status_code == 413


async def test_a_declared_length_over_the_limit_is_refused_before_the_app_runs(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/small", content=b"x" * 5000)
    assert response.status_code == 413 and response.headers["connection"] == "close"
    assert response.json() == {"error": "body over 100 bytes"}
    assert calls == []


async def test_a_chunked_body_is_cut_at_the_limit_whatever_the_app_makes_of_it(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/small", content=chunks(90))).text == "90"
    assert (await client.post("/small", content=chunks(10_000))).status_code == 413
    refused = await client.post("/swallow", content=chunks(10_000))  # the app's own 400 is replaced
    assert refused.status_code == 413 and calls[-1] == "/swallow"


async def test_multipart_is_refused_where_no_route_takes_files(client: httpx.AsyncClient) -> None:
    files = {"token": ("a.bin", b"x" * 10)}
    assert (await client.post("/small", files=files)).status_code == 415
    assert (await client.post("/files", files=files)).status_code == 200
    assert "/small" not in calls
