"""app.yml, the GitHub App's manifest: the one place its permissions and webhook events are listed.

The setup page posts it to GitHub's manifest flow with this deployment's URLs (github_app/setup.py); the
webhook route names deliveries by the events it lists. It sits at the repository's root (Probot's
convention) and, in a built wheel, next to this module.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

PLACES = (Path(__file__).with_name("app.yml"), Path(__file__).resolve().parents[1] / "app.yml")


@functools.cache
def load() -> dict[str, Any]:
    for path in PLACES:
        if path.is_file():
            data: dict[str, Any] = yaml.safe_load(path.read_text())
            return data
    raise FileNotFoundError(f"the GitHub App manifest app.yml is in none of {[str(p) for p in PLACES]}")


def events() -> list[str]:
    return list(load()["default_events"])


def permissions() -> dict[str, str]:
    return dict(load()["default_permissions"])
