"""GET /github/setup: register the App through GitHub's manifest flow and store its credentials locally.

The page says what it will create (app.yml's permissions and events), where the credentials will go, and
whether GitHub can reach the webhook URL made from PUBLIC_URL at all.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from engine.settings import Settings
from github_app.manifest import (
    APP_YML,
    EVENT_USES,
    PERMISSION_USES,
    load_manifest,
    manifest,
    unreachable_from_github,
    webhook_url,
)

log = logging.getLogger(__name__)

# The browser that started the flow carries this cookie; GitHub hands `state` back on the redirect. A
# callback with no match is someone else's code (a forged link) and is refused.
STATE_COOKIE = "autodev_setup_state"
STATE_MAX_AGE_S = 3600
KEY_FILE, ENV_FILE = "github-app.pem", "github-app.env"
# The page posts a form to GitHub: it must not be framed by another site (clickjacking).
PAGE_HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def web_url(api_url: str) -> str:
    """github.com for the public API; the server itself for GitHub Enterprise Server (…/api/v3)."""
    base = api_url.rstrip("/")
    if base == "https://api.github.com":
        return "https://github.com"
    return base.removesuffix("/api/v3")


def setup_router(
    settings: Settings, render_page: Callable[..., str], manifest_file: Path = APP_YML
) -> APIRouter:
    """The setup pages; `render_page(name, **values)` is the one page renderer (web's), handed in."""
    router = APIRouter()

    def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        return HTMLResponse(render_page(name, **values), status_code=status, headers=PAGE_HEADERS)

    def message(title: str, text: str, status: int, *, start_again: bool = False) -> HTMLResponse:
        return render("setup_message.html", status, title=title, text=text, start_again=start_again)

    @router.get("/github/setup")
    async def github_setup() -> HTMLResponse:
        app_yml = load_manifest(manifest_file)
        values = {
            "settings": settings,
            "webhook_url": webhook_url(settings),
            "unreachable": unreachable_from_github(settings.public_url),
            "data_dir": settings.data_dir.resolve(),
            "app_name": app_yml.get("name", "autodev"),
            "visibility": "public" if app_yml.get("public") else "private",
            "key_file": KEY_FILE,
            "env_file": ENV_FILE,
            "permissions": [
                (name, access, PERMISSION_USES.get(name, ""))
                for name, access in app_yml["default_permissions"].items()
            ],
            "events": [(name, EVENT_USES.get(name, "")) for name in app_yml.get("default_events", [])],
        }
        if settings.github_configured:
            return render("setup.html", configured=True, **values)
        state = secrets.token_urlsafe(24)
        response = render(
            "setup.html",
            configured=False,
            target=f"{web_url(settings.github_api_url)}/settings/apps/new?state={state}",
            manifest=json.dumps(manifest(settings, manifest_file)),
            **values,
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
            return message("GitHub App configured", "This autodev already has a GitHub App.", 409)
        expected = request.cookies.get(STATE_COOKIE, "")
        if not expected or not secrets.compare_digest(expected, state):
            refused = "This link did not come from a setup started in this browser."
            return message("Setup refused", refused, 400, start_again=True)
        if not code.isalnum():
            return message("Setup failed", "GitHub sent no valid code.", 400, start_again=True)
        url = f"{settings.github_api_url.rstrip('/')}/app-manifests/{code}/conversions"
        try:
            async with httpx.AsyncClient(timeout=30.0) as client:
                response = await client.post(url, headers={"Accept": "application/vnd.github+json"})
        except httpx.HTTPError as exc:
            log.warning("GitHub manifest conversion failed: %s", exc)
            return message("Setup failed", "GitHub could not be reached; try again.", 502, start_again=True)
        if response.status_code != 201:
            log.warning("GitHub refused the manifest code: %s", response.status_code)
            refused = "GitHub refused the code (it is single-use)."
            return message("Setup failed", refused, 400, start_again=True)
        app = response.json()
        env_file = store_credentials(settings.data_dir, app)
        created = render(
            "setup_created.html",
            slug=str(app.get("slug", "")),
            html_url=str(app.get("html_url", "")),
            env_file=env_file.resolve(),
            key_file=(settings.data_dir / KEY_FILE).resolve(),
        )
        created.delete_cookie(STATE_COOKIE, path="/github/setup")
        return created

    return router


def store_credentials(data_dir: Path, app: dict[str, Any]) -> Path:
    """Write the key and an env snippet readable by the owner only; secrets never go into the page."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key_file = data_dir / KEY_FILE
    env_file = data_dir / ENV_FILE
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
