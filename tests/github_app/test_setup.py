"""GET /github/setup: the manifest flow that registers the App and stores its credentials."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from engine.settings import Settings
from engine.store.jobs import JobStore
from github_app import GitHubApp
from github_app.manifest import APP_YML, unreachable_from_github
from github_app.setup import setup_router
from tests.conftest import make_settings
from tests.github_app.conftest import http_client
from tests.support.fake_github import FakeGitHub
from web import render_html


async def test_setup_offers_a_manifest_even_without_credentials(tmp_path: Path, store: JobStore) -> None:
    settings = make_settings(tmp_path, public_url="https://autodev.example")
    async with http_client(GitHubApp(settings, store, None, None, render_page=render_html)) as client:
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
    async with http_client(GitHubApp(settings, store, None, None, render_page=render_html)) as client:
        state = await start_setup(client)
        page = await client.get("/github/setup/callback", params={"code": "abc123", "state": state})
        again = await client.get("/github/setup/callback", params={"code": "abc123", "state": state})
        junk = await client.get("/github/setup/callback", params={"code": "../x", "state": state})
    assert page.status_code == 200 and "whsec-value" not in page.text  # secrets stay off the page
    assert str((settings.data_dir / "github-app.env").resolve()) in page.text  # says where they went
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
    async with http_client(GitHubApp(settings, store, None, None, render_page=render_html)) as client:
        no_cookie = await client.get("/github/setup/callback", params={"code": "evil1", "state": "guess"})
        await start_setup(client)
        wrong_state = await client.get("/github/setup/callback", params={"code": "evil1", "state": "guess"})
    assert no_cookie.status_code == 400 and wrong_state.status_code == 400
    assert "start again" in wrong_state.text
    assert not (settings.data_dir / "github-app.env").exists()
    assert github.calls_to("POST", r"/app-manifests/.*/conversions") == []


async def test_setup_says_so_when_the_app_is_configured(gh_settings: Settings, store: JobStore) -> None:
    async with http_client(GitHubApp(gh_settings, store, None, None, render_page=render_html)) as client:
        page = await client.get("/github/setup")
    assert "configured" in page.text and "<form" not in page.text
    assert 'id="credentials"' not in page.text  # nothing will be stored: they are set already
    assert 'id="unreachable"' in page.text  # http://testserver: a name only this machine resolves
    async with http_client(GitHubApp(gh_settings, store, None, None, render_page=render_html)) as client:
        callback = await client.get("/github/setup/callback", params={"code": "abc", "state": "x"})
    assert callback.status_code == 409


async def start_setup(client: httpx.AsyncClient) -> str:
    """Open the setup page as a browser would; the state GitHub will hand back (its cookie is kept)."""
    page = await client.get("/github/setup")
    return re.search(r"\?state=([\w-]+)", page.text)[1]  # type: ignore[index]


async def setup_page(settings: Settings, manifest_file: Path = APP_YML) -> str:
    web = FastAPI()
    web.include_router(setup_router(settings, render_html, manifest_file))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=web), base_url="http://testserver"
    ) as client:
        page = await client.get("/github/setup")
    assert page.status_code == 200
    return page.text


def posted_manifest(page: str) -> dict[str, Any]:
    return json.loads(unescape(re.search(r'name="manifest" value="([^"]*)"', page)[1]))  # type: ignore[index,no-any-return]


async def test_the_page_shows_the_permissions_and_events_of_app_yml(tmp_path: Path) -> None:
    """What the page lists and what it sends GitHub are app.yml's, not a copy that can drift from it."""
    app_yml = yaml.safe_load(APP_YML.read_text())
    page = await setup_page(make_settings(tmp_path, public_url="https://autodev.example"))
    assert posted_manifest(page)["default_permissions"] == app_yml["default_permissions"]
    assert posted_manifest(page)["default_events"] == app_yml["default_events"]
    for name, access in app_yml["default_permissions"].items():
        assert re.search(rf"<code>{name}</code> <span class=\"access\">{access}</span>", page)
    for event in app_yml["default_events"]:
        assert f"<code>{event}</code>" in page

    edited = tmp_path / "app.yml"
    edited.write_text(
        yaml.safe_dump(
            app_yml | {"default_permissions": {"actions": "read"}, "default_events": ["push"], "public": True}
        )
    )
    page = await setup_page(make_settings(tmp_path, public_url="https://autodev.example"), edited)
    assert (
        "<code>actions</code>" in page and "<code>push</code>" in page and "<code>checks</code>" not in page
    )
    assert posted_manifest(page)["public"] is True and "<strong>public</strong> App" in page


async def test_the_page_says_what_it_creates_and_where_the_key_goes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, public_url="https://autodev.example")
    page = await setup_page(settings)
    assert "<strong>private</strong> App" in page and "app.yml" in page
    assert "<code>https://autodev.example/github/webhooks</code>" in page
    data_dir = settings.data_dir.resolve()
    assert f"<code>{data_dir / 'github-app.pem'}</code>" in page
    assert f"<code>{data_dir / 'github-app.env'}</code>" in page
    for name in ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET", ".env.example"):
        assert name in page
    assert 'id="unreachable"' not in page  # a public name: no warning


@pytest.mark.parametrize("public_url", ["http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000",
                                        "http://192.168.1.20:8000", "http://autodev:8000"])  # fmt: skip
async def test_a_public_url_github_cannot_reach_is_warned_about_with_the_fix(
    tmp_path: Path, public_url: str
) -> None:
    page = await setup_page(make_settings(tmp_path, public_url=public_url))
    warning = page.split('id="unreachable"', 1)[1].split("</section>", 1)[0]
    assert f"PUBLIC_URL={public_url}" in warning and "GitHub cannot reach" in page
    assert "smee.io" in warning and "tunnel" in warning and "set <code>PUBLIC_URL</code>" in warning


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://localhost:8000", "name of this machine"),
        ("http://dev.localhost", "name of this machine"),
        ("http://127.8.0.1", "loopback"),
        ("http://[::1]:8000", "loopback"),
        ("http://0.0.0.0:8000", "not an address"),
        ("http://10.1.2.3", "private"),
        ("http://172.20.0.4:8000", "private"),
        ("http://192.168.0.9", "private"),
        ("http://169.254.169.254", "private"),
        ("http://[fd00::1]", "private"),
        ("http://100.64.1.1", "private"),  # carrier-grade NAT
        ("http://box.local:8000", "local network"),
        ("http://worker", "only this machine"),
        ("https://", "no host"),
    ],
)
def test_addresses_github_cannot_reach(url: str, why: str) -> None:
    assert why in (unreachable_from_github(url) or "")


@pytest.mark.parametrize(
    "url", ["https://autodev.example.com", "https://8.8.8.8", "https://[2606:4700::1111]"]
)
def test_public_addresses_pass(url: str) -> None:
    assert unreachable_from_github(url) is None
