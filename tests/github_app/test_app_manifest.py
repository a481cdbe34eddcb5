"""app.yml: the App subscribes to what autodev handles, and the setup page registers exactly app.yml."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import yaml

from engine.store.jobs import JobStore
from github_app import GitHubApp, manifest, review_triggers
from github_app.payloads import EVENT_MODELS
from github_app.triggers import Triggers
from github_app.webhooks import HANDLED_EVENTS
from tests.conftest import make_settings
from tests.github_app.conftest import as_app_delivery, deliver, http_client, payload
from web import render_html

APP_YML = Path(__file__).resolve().parents[2] / "app.yml"
# Subscribed to for work that has no handler yet (none: CI results are handled since issue 21).
ANNOUNCED: set[str] = set()
# The repository permission GitHub asks of an App for each event it subscribes to.
PERMISSION_OF = {
    "issues": "issues",
    "issue_comment": "issues",
    "pull_request_review": "pull_requests",
    "pull_request_review_comment": "pull_requests",
    "check_run": "checks",
    "check_suite": "checks",
}


def posted_manifest(page: httpx.Response) -> dict[str, Any]:
    value = re.search(r'name="manifest" value="([^"]*)"', page.text)
    assert value is not None, page.text
    data: dict[str, Any] = json.loads(unescape(value[1]))
    return data


async def test_the_setup_page_posts_app_yml_with_this_deployments_urls(
    tmp_path: Path, store: JobStore
) -> None:
    """The manifest flow had its own copy of the permissions and events, already out of step with app.yml."""
    settings = make_settings(tmp_path, public_url="https://autodev.example/")
    async with http_client(GitHubApp(settings, store, None, None, render_page=render_html)) as client:
        posted = posted_manifest(await client.get("/github/setup"))
    app_yml = yaml.safe_load(APP_YML.read_text())

    assert re.fullmatch(r"autodev-[0-9a-f]{6}", posted["name"])  # App names are global on GitHub
    assert posted == {
        **app_yml,  # permissions, events, description, public: as written
        "name": posted["name"],
        "url": "https://autodev.example",
        "hook_attributes": {"url": "https://autodev.example/github/webhooks", "active": True},
        "redirect_url": "https://autodev.example/github/setup/callback",
    }


def test_the_app_subscribes_only_to_events_it_handles() -> None:
    """pull_request had no handler: every delivery of it cost the user's quota and autodev's ingress."""
    events = manifest.events()

    assert len(events) == len(set(events))
    assert set(events) == set(HANDLED_EVENTS) | ANNOUNCED
    for name in HANDLED_EVENTS:
        handler = getattr(Triggers, name, None) or getattr(review_triggers, name, None)
        assert name in EVENT_MODELS and callable(handler), name
    assert "pull_request" not in events


def test_each_subscribed_event_has_the_permission_github_requires_for_it() -> None:
    permissions = manifest.permissions()

    for event in manifest.events():
        assert PERMISSION_OF[event] in permissions, event
    assert permissions["checks"] == "write" and permissions["contents"] == "write"
    assert permissions["actions"] == "read", "the logs of failing GitHub Actions jobs (CI fix rounds)"


async def test_ci_results_that_need_nothing_are_acknowledged_counted_and_not_stored(
    client: httpx.AsyncClient, gh_app: GitHubApp, store: JobStore
) -> None:
    """check_suite and check_run deliver every CI result of the installed repositories: only a failure on
    autodev's branch is stored, the rest is answered without a database or API call."""
    passing = as_app_delivery(payload("check_suite", "completed.payload.json"))
    passing["check_suite"]["head_branch"] = "autodev/1-fix"
    failing_elsewhere = as_app_delivery(payload("check_suite", "completed.payload.json"))
    failing_elsewhere["check_suite"]["conclusion"] = "failure"

    first = await deliver(client, "check_suite", passing)
    second = await deliver(client, "check_suite", failing_elsewhere)

    assert first.json()["ignored"] == "conclusion success"
    assert second.json()["ignored"] == "not autodev's pull request"
    assert gh_app.webhook_counts.pending == {("check_suite", 202): 2}
    assert await store.deliveries.get(first.request.headers["x-github-delivery"]) is None
