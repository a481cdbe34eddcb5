"""The home page tells a newcomer where to start: settings, the GitHub App, a first job, the docs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from autodev.app import create_app
from autodev.runtime import Runtime
from tests.conftest import SANDBOX_SETTINGS, make_settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.fixture
async def client(tmp_path: Path, database_url: str, clean_redis: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(tmp_path, database_url=database_url, redis_url=clean_redis)
    runtime = await Runtime.start(settings, start_embedded_redis=False)
    try:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
    finally:
        await runtime.close()


async def test_the_home_page_links_the_setup_page_and_the_docs(client: httpx.AsyncClient) -> None:
    page = (await client.get("/")).text
    assert '<a href="/github/setup">' in page
    assert '<a href="/docs/README.md">' in page and '<a href="/docs/.env.example">' in page
    assert "python3 dev.py autodev run --repo PATH" in page
    # GitHub, Slack and the LLM; and the sandbox on a machine without a working bubblewrap.
    assert page.count("not configured") == 3 + (SANDBOX_SETTINGS["sandbox"] == "none")
    stylesheet = (await client.get(page.split('rel="stylesheet" href="', 1)[1].split('"', 1)[0])).text
    assert ".surface" in stylesheet  # styled like the job pages, by their sheet


async def test_the_docs_are_served_as_text_and_nothing_else_is(client: httpx.AsyncClient) -> None:
    readme = await client.get("/docs/README.md")
    assert readme.status_code == 200 and readme.headers["content-type"].startswith("text/plain")
    assert readme.text == README
    assert "OPENAI_API_KEY" in (await client.get("/docs/.env.example")).text
    for name in ("pyproject.toml", "..%2FREADME.md", ".env", "..%2F..%2Fetc%2Fpasswd"):
        assert (await client.get(f"/docs/{name}")).status_code == 404
