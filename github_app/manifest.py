"""The App's manifest (app.yml, Probot's convention), and whether GitHub can reach the webhook URL it gets."""

from __future__ import annotations

import ipaddress
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from engine.settings import Settings

# At the repository's root (Probot's convention); a built wheel carries it beside this module.
APP_YML = next(
    (p for p in (Path(__file__).with_name("app.yml"), Path(__file__).resolve().parents[1] / "app.yml")
     if p.is_file()),
    Path(__file__).resolve().parents[1] / "app.yml",
)  # fmt: skip

# What autodev does with each permission and event; which ones it asks for is app.yml's to say.
PERMISSION_USES = {
    "contents": "push the branches with its commits",
    "pull_requests": "open and update its pull requests",
    "issues": "read issues, comment on them and react to the comments that trigger it",
    "checks": "show each job as a check run, with a Cancel button",
    "actions": "read the results of GitHub Actions runs on its pull requests",
    "metadata": "read the repository's basic data (every App has it)",
}
EVENT_USES = {
    "issues": "an issue labeled with the trigger label starts a job",
    "issue_comment": "@-mentions in comments: implement, revise, cancel, retry, help",
    "pull_request_review": "a review with inline comments (or “Request changes”) on a pull request autodev "
    "opened revises it, then answers and resolves each comment's thread",
    "pull_request_review_comment": "an inline comment mentioning the App on such a pull request, on its own",
    "check_run": "Cancel and Re-run on autodev's check runs",
    "check_suite": "CI results on autodev's pull requests (counted; acted on by a later release)",
    "workflow_run": "Actions results on autodev's pull requests (counted; acted on by a later release)",
}
# Names that resolve only on a local network or the machine itself.
LOCAL_SUFFIXES = (".localhost", ".local", ".lan", ".internal", ".home.arpa", ".localdomain")


@lru_cache(maxsize=4)
def load_manifest(path: Path = APP_YML) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("default_permissions"), dict):
        raise ValueError(f"{path} is not an App manifest (no default_permissions)")
    return data


def events(path: Path = APP_YML) -> list[str]:
    return list(load_manifest(path).get("default_events", []))


def permissions(path: Path = APP_YML) -> dict[str, str]:
    return dict(load_manifest(path)["default_permissions"])


def manifest(settings: Settings, path: Path = APP_YML) -> dict[str, Any]:
    """app.yml as written, with this deployment's URLs and a name of its own (App names are global)."""
    base = load_manifest(path)
    public = settings.public_url.rstrip("/")
    return {
        **base,
        "name": f"{base.get('name', 'autodev')}-{secrets.token_hex(3)}",
        "url": public,
        "hook_attributes": {**base.get("hook_attributes", {}), "url": webhook_url(settings), "active": True},
        "redirect_url": f"{public}/github/setup/callback",
    }


def webhook_url(settings: Settings) -> str:
    return f"{settings.public_url.rstrip('/')}/github/webhooks"


def unreachable_from_github(url: str) -> str | None:
    """Why GitHub's servers cannot deliver to `url`, or None when its host looks public.

    Looks only at the name (no DNS lookup): loopback, private, link-local and other non-global addresses, and
    names only a local network resolves (localhost, *.local, a name with no dot such as a Compose service).
    """
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if not host:
        return "it has no host name"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or host.endswith(LOCAL_SUFFIXES):
            return f"{host} is a name of this machine or its local network"
        if "." not in host:
            return f"{host} is a name only this machine or its network resolves"
        return None
    if address.is_loopback:
        return f"{host} is this machine's loopback address"
    if address.is_unspecified:
        return f"{host} is not an address GitHub can connect to"
    if not address.is_global:
        return f"{host} is a private or local-network address"
    return None
