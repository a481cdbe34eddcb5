"""The ASGI app: health, readiness, the home page and docs, metrics, and each surface's router."""

from __future__ import annotations

import asyncio
import hmac
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from autodev import metrics
from autodev.body_limit import BodyLimit, Limit
from autodev.runtime import Runtime
from bot.app import MAX_BODY_BYTES as SLACK_MAX_BODY_BYTES
from engine.store.db import ping
from engine.workspace.commands import sandbox_status
from web import make_router as job_pages
from web import render_html

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 2.0
PROJECT = Path(__file__).resolve().parent.parent
# The docs the home page links to, served as plain text: a fixed set of files read at start-up (no path from
# a request reaches the file system).
DOCS = {
    p.name: p.read_text()
    for p in [PROJECT / "README.md", PROJECT / ".env.example", *sorted((PROJECT / "docs").glob("*.md"))]
    if p.is_file()
}
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
        # Not part of readiness either (the service takes requests either way), but an operator must see it.
        sandbox = await asyncio.to_thread(sandbox_status, runtime.settings)
        body = {"ready": ready, "checks": checks, "sandbox": sandbox}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        sandbox = await asyncio.to_thread(sandbox_status, runtime.settings)
        shown = [*surfaces(runtime), sandbox_surface(sandbox)]
        return HTMLResponse(render_html("home.html", surfaces=shown, docs=list(DOCS)))

    @app.get("/docs/{name}", include_in_schema=False)
    async def docs(name: str) -> Response:
        text = DOCS.get(name)
        if text is None:
            return PlainTextResponse("not found", status_code=404)
        return PlainTextResponse(text, headers={"X-Content-Type-Options": "nosniff"})

    metrics_token = (
        runtime.settings.metrics_token.get_secret_value() if runtime.settings.metrics_token else ""
    )

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        if metrics_token and not _bearer_matches(request, metrics_token):
            return Response(
                "a bearer token is needed (METRICS_TOKEN)\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                media_type="text/plain",
            )
        # This process's webhook counts are stored first: what a scrape shows, no later scrape can lose.
        await runtime.github.webhook_counts.flush()
        body = await metrics.render(runtime.store, runtime.queue)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    app.include_router(runtime.slack.router)
    app.include_router(job_pages(runtime.store, runtime.settings, runtime.queue))
    return app


def _bearer_matches(request: Request, token: str) -> bool:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(), token.encode())


async def _check(awaitable: Any) -> dict[str, Any]:
    try:
        await asyncio.wait_for(awaitable, READY_TIMEOUT_S)
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True}


def sandbox_surface(status: dict[str, str | None]) -> dict[str, Any]:
    return {
        "name": "Sandbox for the repositories' commands",
        "configured": status["problem"] is None,
        "problem": None,
        "how": f"{status['problem']}. Install bubblewrap (Debian: apt-get install bubblewrap) so that tests "
        "run isolated from autodev's secrets; SANDBOX=none runs them unsandboxed.",
        "link": ("/docs/README.md", "how the sandbox works"),
    }


def surfaces(runtime: Runtime) -> list[dict[str, Any]]:
    settings = runtime.settings
    return [
        {
            "name": "GitHub App",
            "configured": settings.github_configured,
            "problem": None,
            "how": "Register the App in one click, or set GITHUB_APP_ID, GITHUB_PRIVATE_KEY and "
            "GITHUB_WEBHOOK_SECRET. Webhooks: POST /github/webhooks.",
            "link": ("/github/setup", "Create the GitHub App"),
        },
        {
            "name": "Slack",
            "configured": settings.slack_configured,
            "problem": runtime.slack.problem if settings.slack_configured else None,
            "how": "Create the app from slack-manifest.yml, then set SLACK_BOT_TOKEN and "
            "SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN for Socket Mode). Requests: POST /slack/events.",
            "link": ("/docs/slack.md", "Slack setup") if "slack.md" in DOCS else None,
        },
        {
            "name": "LLM",
            "configured": settings.llm_configured,
            "problem": None,
            "how": "Set OPENAI_API_KEY, or OPENAI_BASE_URL for any OpenAI-compatible server (Ollama, vLLM); "
            f"models: MODEL_PLANNER={settings.model_planner}, MODEL_CODER={settings.model_coder}.",
            "link": None,
        },
    ]
