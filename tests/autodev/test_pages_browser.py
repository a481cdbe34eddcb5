"""The home and GitHub setup pages in headless Chromium, on a desktop and a phone: one readable column."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from autodev.app import create_app
from autodev.runtime import Runtime
from tests.conftest import make_settings

pytestmark = pytest.mark.browser

VIEWPORTS = {"desktop": (1280, 900), "phone": (390, 844)}
# Each page's blocks, top to bottom, and the one thing a newcomer must see without scrolling.
PAGES = {
    "home": ("/", ["header.top", "#intro", "#start", "#surfaces", "#docs"], '#start a[href="/github/setup"]'),
    "setup": (
        "/github/setup",
        ["header.top", "#intro", "#unreachable", "#permissions", "#credentials"],
        "#create",
    ),
}
# Elements sticking out of the block that holds them (text that does not wrap, a table too wide).
SPILLS = """(selectors) => selectors.flatMap((selector) => {
  const block = document.querySelector(selector).getBoundingClientRect();
  return [...document.querySelectorAll(selector + ' *')]
    .map((e) => [e, e.getBoundingClientRect()])
    .filter(([e, r]) => r.width > 0 && (r.right > block.right + 1 || r.left < block.left - 1))
    .map(([e, r]) => selector + ' ' + e.tagName + ': ' + e.textContent.slice(0, 40));
})"""


@pytest.fixture
async def server(tmp_path: Path, database_url: str, clean_redis: str) -> AsyncIterator[str]:
    """The whole app on a real uvicorn, unconfigured, with the default PUBLIC_URL that GitHub cannot reach."""
    settings = make_settings(
        tmp_path, database_url=database_url, redis_url=clean_redis, public_url="http://localhost:8000"
    )
    runtime = await Runtime.start(settings, start_embedded_redis=False)
    config = uvicorn.Config(create_app(runtime), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        await runtime.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
@pytest.mark.parametrize("name", PAGES)
async def test_the_page_is_laid_out_in_one_readable_column(
    server: str, browser: Any, tmp_path: Path, name: str, viewport: str
) -> None:
    from playwright.async_api import expect

    path, blocks, first_thing = PAGES[name]
    width, height = VIEWPORTS[viewport]
    page = await browser.new_page(viewport={"width": width, "height": height})
    await page.goto(server + path)

    await expect(page.locator(first_thing)).to_be_in_viewport()
    boxes = []
    for selector in blocks:
        await expect(page.locator(selector)).to_be_visible()
        box = await page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (selector, box)
        boxes.append((selector, box))
    for (above, a), (below, b) in itertools.pairwise(boxes):
        assert b["y"] >= a["y"] + a["height"] - 1, f"{below} overlaps {above}"
    assert await page.evaluate(SPILLS, blocks[1:]) == []
    assert not await page.evaluate("document.documentElement.scrollWidth > window.innerWidth"), (
        "sideways scroll"
    )

    await page.screenshot(path=str(tmp_path / f"{name}-{viewport}.png"), full_page=True)
    await page.close()
