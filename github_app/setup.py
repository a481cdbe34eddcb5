"""GET /github/setup: register the App through GitHub's manifest flow and store its credentials locally."""

from __future__ import annotations

import html
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from engine.settings import Settings
from github_app import app_manifest

log = logging.getLogger(__name__)

# The browser that started the flow carries this cookie; GitHub hands `state` back on the redirect. A
# callback with no match is someone else's code (a forged link) and is refused.
STATE_COOKIE = "autodev_setup_state"
STATE_MAX_AGE_S = 3600


def web_url(api_url: str) -> str:
    """github.com for the public API; the server itself for GitHub Enterprise Server (…/api/v3)."""
    base = api_url.rstrip("/")
    if base == "https://api.github.com":
        return "https://github.com"
    return base.removesuffix("/api/v3")


def manifest(settings: Settings) -> dict[str, Any]:
    """app.yml as it stands, with this deployment's URLs and a name of its own (App names are global)."""
    app = app_manifest.load()
    public = settings.public_url.rstrip("/")
    return {
        **app,
        "name": f"{app['name']}-{secrets.token_hex(3)}",
        "url": public,
        "hook_attributes": {
            **app.get("hook_attributes", {}),
            "url": f"{public}/github/webhooks",
            "active": True,
        },
        "redirect_url": f"{public}/github/setup/callback",
    }


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>{body}",
        status_code=status,
    )


def setup_router(settings: Settings) -> APIRouter:
    router = APIRouter()

    @router.get("/github/setup")
    async def github_setup() -> HTMLResponse:
        if settings.github_configured:
            return page("GitHub App configured", f"<p>App id {settings.github_app_id} is set up.</p>")
        state = secrets.token_urlsafe(24)
        target = f"{web_url(settings.github_api_url)}/settings/apps/new?state={state}"
        data = html.escape(json.dumps(manifest(settings)), quote=True)
        response = page(
            "Create the autodev GitHub App",
            f'<form action="{html.escape(target)}" method="post">'
            f'<input type="hidden" name="manifest" value="{data}">'
            '<button type="submit">Create the GitHub App</button></form>',
        )
        response.set_cookie(
            STATE_COOKIE,
            state,
            max_age=STATE_MAX_AGE_S,
            path="/github/setup",
            httponly=True,
            samesite="lax",  # sent on GitHub's top-level redirect back, not on cross-site subrequests
            secure=settings.public_url.startswith("https://"),
        )
        return response

    @router.get("/github/setup/callback")
    async def github_setup_callback(request: Request, code: str = "", state: str = "") -> HTMLResponse:
        if settings.github_configured:
            return page("GitHub App configured", "<p>This autodev already has a GitHub App.</p>", 409)
        expected = request.cookies.get(STATE_COOKIE, "")
        if not expected or not secrets.compare_digest(expected, state):
            refused = "<p>This link did not come from a setup started in this browser; start again at "
            return page("Setup refused", refused + '<a href="/github/setup">/github/setup</a>.</p>', 400)
        if not code.isalnum():
            return page("Setup failed", "<p>GitHub sent no valid code; start again.</p>", 400)
        url = f"{settings.github_api_url.rstrip('/')}/app-manifests/{code}/conversions"
        try:
            async with httpx.AsyncClient(timeout=30.0) as client:
                response = await client.post(url, headers={"Accept": "application/vnd.github+json"})
        except httpx.HTTPError as exc:
            log.warning("GitHub manifest conversion failed: %s", exc)
            return page("Setup failed", "<p>GitHub could not be reached; try again.</p>", 502)
        if response.status_code != 201:
            log.warning("GitHub refused the manifest code: %s", response.status_code)
            refused = "<p>GitHub refused the code (it is single-use); start again.</p>"
            return page("Setup failed", refused, 400)
        env_file = store_credentials(settings.data_dir, response.json())
        created = page(
            "GitHub App created",
            f"<p>Its id, key and webhook secret are stored in <code>{html.escape(str(env_file))}</code>. "
            "Copy its lines into <code>.env</code> and restart autodev.</p>",
        )
        created.delete_cookie(STATE_COOKIE, path="/github/setup")
        return created

    return router


def store_credentials(data_dir: Path, app: dict[str, Any]) -> Path:
    """Write the key and an env snippet readable by the owner only; secrets never go into the page."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key_file = data_dir / "github-app.pem"
    env_file = data_dir / "github-app.env"
    _write_private(key_file, str(app["pem"]))
    _write_private(
        env_file,
        f"GITHUB_APP_ID={app['id']}\nGITHUB_APP_SLUG={app['slug']}\n"
        f"GITHUB_PRIVATE_KEY={key_file.resolve()}\nGITHUB_WEBHOOK_SECRET={app['webhook_secret']}\n",
    )
    log.info("GitHub App %s created; credentials stored under %s", app["slug"], data_dir)
    return env_file


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
