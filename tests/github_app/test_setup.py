"""GET /github/setup: the manifest flow that registers the App and stores its credentials."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

from engine.jobs import JobStore
from engine.settings import Settings
from github_app import GitHubApp
from tests.conftest import make_settings
from tests.github_app.conftest import http_client
from tests.support.fake_github import FakeGitHub


async def test_setup_offers_a_manifest_even_without_credentials(tmp_path: Path, store: JobStore) -> None:
    settings = make_settings(tmp_path, public_url="https://autodev.example")
    async with http_client(GitHubApp(settings, store, None, None)) as client:
        page = await client.get("/github/setup")
    assert page.status_code == 200
    assert 'action="https://github.com/settings/apps/new"' in page.text
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
        page = await client.get("/github/setup/callback", params={"code": "abc123"})
        again = await client.get("/github/setup/callback", params={"code": "abc123"})
        junk = await client.get("/github/setup/callback", params={"code": "../x"})
    assert page.status_code == 200 and "whsec-value" not in page.text  # secrets stay off the page
    env = (settings.data_dir / "github-app.env").read_text()
    assert "GITHUB_APP_ID=99" in env and "GITHUB_WEBHOOK_SECRET=whsec-value" in env
    assert (settings.data_dir / "github-app.pem").stat().st_mode & 0o777 == 0o600
    assert again.status_code == 400 and junk.status_code == 400


async def test_setup_says_so_when_the_app_is_configured(gh_settings: Settings, store: JobStore) -> None:
    async with http_client(GitHubApp(gh_settings, store, None, None)) as client:
        page = await client.get("/github/setup")
    assert "configured" in page.text and "<form" not in page.text
