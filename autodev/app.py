"""The ASGI app: health, readiness, the home page, metrics, and each surface's router."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from autodev import metrics
from autodev.body_limit import BodyLimit, Limit
from autodev.runtime import Runtime
from bot.app import MAX_BODY_BYTES as SLACK_MAX_BODY_BYTES
from engine.store.db import ping
from web import make_router as job_pages
from web import render_html

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 2.0
# Every route without its own limit: the job pages' forms (a login token, a CSRF value) and GETs.
FORM_MAX_BODY_BYTES = 16 * 1024


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="autodev", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.runtime = runtime
    # Bodies are bounded while they stream, before any route or parser sees them; no route takes files.
    app.add_middleware(
        BodyLimit,
        routes={
            "/github/webhooks": Limit(runtime.settings.webhook_max_body_bytes),
            "/slack/events": Limit(SLACK_MAX_BODY_BYTES),
        },
        default=Limit(FORM_MAX_BODY_BYTES),
    )
    # First: Starlette tries routes in order, and GitHub's webhooks are the busiest path by far.
    app.include_router(runtime.github.router)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = {
            "database": await _check(ping(runtime.db)),
            "redis": await _check(runtime.redis.ping()),
        }
        ready = all(c["ok"] for c in checks.values())
        # Reported, not part of `ready`: a bad Slack token must not take GitHub's webhooks out of service.
        if runtime.settings.slack_configured:
            problem = runtime.slack.problem
            checks["slack"] = {"ok": problem is None, **({"error": problem} if problem else {})}
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        return HTMLResponse(render_html("home.html", surfaces=surfaces(runtime)))

    @app.get("/metrics")
    async def prometheus() -> Response:
        body = await metrics.render(runtime.store, runtime.queue)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    app.include_router(runtime.slack.router)
    app.include_router(job_pages(runtime.store, runtime.settings, runtime.queue))
    return app


async def _check(awaitable: Any) -> dict[str, Any]:
    try:
        await asyncio.wait_for(awaitable, READY_TIMEOUT_S)
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True}


def surfaces(runtime: Runtime) -> list[dict[str, Any]]:
    settings = runtime.settings
    return [
        {
            "name": "GitHub App",
            "configured": settings.github_configured,
            "problem": None,
            "how": "Open /github/setup to register the App in one click, or set GITHUB_APP_ID, "
            "GITHUB_PRIVATE_KEY and GITHUB_WEBHOOK_SECRET. Webhooks: POST /github/webhooks.",
        },
        {
            "name": "Slack",
            "configured": settings.slack_configured,
            "problem": runtime.slack.problem if settings.slack_configured else None,
            "how": "Create the app from slack-manifest.yml, then set SLACK_BOT_TOKEN and "
            "SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN for Socket Mode). Requests: POST /slack/events.",
        },
        {
            "name": "LLM",
            "configured": settings.llm_configured,
            "problem": None,
            "how": "Set OPENAI_API_KEY, or OPENAI_BASE_URL for any OpenAI-compatible server (Ollama, vLLM); "
            f"models: MODEL_PLANNER={settings.model_planner}, MODEL_CODER={settings.model_coder}.",
        },
    ]
