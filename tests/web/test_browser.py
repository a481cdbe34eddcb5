"""The job page in headless Chromium against a real server: a step turns done without a reload."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

from engine.settings import Settings
from engine.store.jobs import JobStore
from tests.web.conftest import make_app, running_job

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
async def server(store: JobStore, settings: Settings) -> AsyncIterator[str]:
    """A real uvicorn on 127.0.0.1 serving the job pages, on a free port."""
    config = uvicorn.Config(
        make_app(store, settings), host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_a_running_jobs_step_turns_done_without_a_reload(
    server: str, browser: object, store: JobStore
) -> None:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    made = await running_job(store)
    ARTIFACTS.mkdir(exist_ok=True)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(server + made.url)
    # A marker on the window: a reload would drop it.
    await page.evaluate("window.__sameDocument = true")
    step = page.locator('#plan li[data-step="1"]')
    await expect(step).to_have_attribute("data-step-state", "running")

    await store.save_step(
        made.id, 1, state="done", test_command="pytest -q", test_output="2 passed", test_passed=True
    )
    await store.append_event(made.id, "step_finished", {"index": 1, "state": "done"})

    await expect(step).to_have_attribute("data-step-state", "done", timeout=10_000)
    await expect(page.locator("#plan h2")).to_contain_text("2 of 2 done")
    assert await page.evaluate("window.__sameDocument") is True
    await page.screenshot(path=str(ARTIFACTS / "job-page-desktop.png"), full_page=True)

    phone = await browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    await phone.goto(server + made.url)
    await expect(phone.locator('#plan li[data-step="1"]')).to_have_attribute("data-step-state", "done")
    overflow = await phone.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert not overflow, "the page scrolls sideways on a phone"
    await phone.screenshot(path=str(ARTIFACTS / "job-page-phone.png"), full_page=True)
    await page.close()
    await phone.close()
