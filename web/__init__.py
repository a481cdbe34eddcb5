"""The job page, the operators' job list and the JSON API (`GET /jobs/<id>?t=`, `GET /api/jobs/<id>`).

The composition root mounts `make_router(store, settings, queue)`; this package imports only the engine.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from engine.ports import JobQueue
from engine.settings import Settings
from engine.store.jobs import JobStore
from web.api import add_api_routes
from web.context import STATIC_FILES, STATIC_PREFIX, WebContext, render_html
from web.pages import add_page_routes

__all__ = ["make_router", "render_html"]


def make_router(
    store: JobStore, settings: Settings, queue: JobQueue | None, *, poll_interval: float = 1.0
) -> APIRouter:
    """All routes of the job pages; `poll_interval` is how often a live page's stream looks for changes."""
    ctx = WebContext.build(store, settings, queue, poll_interval)
    router = APIRouter()

    @router.get(STATIC_PREFIX + "/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        # A fixed set of files known at start-up: no path from the request ever reaches the file system.
        found = STATIC_FILES.get(name)
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        body, media_type = found
        return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})

    add_api_routes(router, ctx)
    add_page_routes(router, ctx)
    return router
