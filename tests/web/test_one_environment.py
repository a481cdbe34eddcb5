"""Every page of autodev is rendered by one Jinja environment (web/context.py), with one set of rules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("autodev", "engine", "github_app", "bot", "web", "workers")


def test_only_web_makes_a_jinja_environment() -> None:
    """Regression: the home page (autodev/) and the setup pages (github_app/) each had one of their own."""
    makers = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call):
                    name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                    if name in ("Environment", "Jinja2Templates"):
                        makers.append(str(path.relative_to(ROOT)))
    assert makers == ["web/context.py"]


def test_no_package_but_web_keeps_templates() -> None:
    assert sorted(p.parent.name for p in ROOT.glob("*/templates")) == ["web"]
