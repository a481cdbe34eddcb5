"""GET /github/setup: the manifest flow that registers the App and stores its credentials."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import httpx

from engine.settings import Settings
from engine.store.jobs import JobStore
from github_app import GitHubApp
from tests.conftest import make_settings
from tests.github_app.conftest import http_client
from tests.support.fake_github import FakeGitHub


async def test_setup_offers_a_manifest_even_without_credentials(tmp_path: Path, store: JobStore) -> None:
    settings = make_settings(tmp_path, public_url="https://autodev.example")
    async with http_client(GitHubApp(settings, store, None, None)) as client:
        page = await client.get("/github/setup")
    assert page.status_code == 200
    assert re.search(r'action="https://github.com/settings/apps/new\?state=[\w-]{20,}"', page.text)
    manifest = json.loads(unescape(re.search(r'name="manifest" value="([^"]*)"', page.text)[1]))  # type: ignore[index]
    assert manifest["hook_attributes"]["url"] == "https://autodev.example/github/webhooks"
    assert manifest["redirect_url"] == "https://autodev.example/github/setup/callback"
    assert manifest["default_permissions"]["checks"] == "write"
    assert "pull_request_review" in manifest["default_events"]


async def test_the_callback_stores_the_new_apps_credentials_under_data_dir(
    tmp_path: Path, store: JobStore, github: FakeGitHub
) -> None:
    settings = make_settings(tmp_path, github_api_url=github.api_url)
    github.manifest_codes["abc123"] = {
        "id": 99,
        "slug": "autodev-new",
        "pem": "-----BEGIN RSA PRIVATE KEY-----\nX\n-----END RSA PRIVATE KEY-----\n",
        "webhook_secret": "whsec-value",
    }
    async with http_client(GitHubApp(settings, store, None, None)) as client:
        state = await start_setup(client)
        page = await client.get("/github/setup/callback", params={"code": "abc123", "state": state})
        again = await client.get("/github/setup/callback", params={"code": "abc123", "state": state})
        junk = await client.get("/github/setup/callback", params={"code": "../x", "state": state})
    assert page.status_code == 200 and "whsec-value" not in page.text  # secrets stay off the page
    env = (settings.data_dir / "github-app.env").read_text()
    assert "GITHUB_APP_ID=99" in env and "GITHUB_WEBHOOK_SECRET=whsec-value" in env
    assert (settings.data_dir / "github-app.pem").stat().st_mode & 0o777 == 0o600
    assert again.status_code == 400 and junk.status_code == 400


async def test_a_callback_not_started_in_this_browser_is_refused(
    tmp_path: Path, store: JobStore, github: FakeGitHub
) -> None:
    """A forged link (someone else's code) must not install someone else's App credentials here."""
    settings = make_settings(tmp_path, github_api_url=github.api_url)
    github.manifest_codes["evil1"] = {"id": 666, "slug": "evil", "pem": "x", "webhook_secret": "w"}
    async with http_client(GitHubApp(settings, store, None, None)) as client:
        no_cookie = await client.get("/github/setup/callback", params={"code": "evil1", "state": "guess"})
        await start_setup(client)
        wrong_state = await client.get("/github/setup/callback", params={"code": "evil1", "state": "guess"})
    assert no_cookie.status_code == 400 and wrong_state.status_code == 400
    assert "start again" in wrong_state.text
    assert not (settings.data_dir / "github-app.env").exists()
    assert github.calls_to("POST", r"/app-manifests/.*/conversions") == []


async def test_setup_says_so_when_the_app_is_configured(gh_settings: Settings, store: JobStore) -> None:
    async with http_client(GitHubApp(gh_settings, store, None, None)) as client:
        page = await client.get("/github/setup")
    assert "configured" in page.text and "<form" not in page.text
    async with http_client(GitHubApp(gh_settings, store, None, None)) as client:
        callback = await client.get("/github/setup/callback", params={"code": "abc", "state": "x"})
    assert callback.status_code == 409


async def start_setup(client: httpx.AsyncClient) -> str:
    """Open the setup page as a browser would; the state GitHub will hand back (its cookie is kept)."""
    page = await client.get("/github/setup")
    return re.search(r"\?state=([\w-]+)", page.text)[1]  # type: ignore[index]
