"""The webhook examples in tests/fixtures are GitHub's, and so are the deliveries the tests make of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource

from tests.github_app.conftest import WEBHOOKS, as_app_delivery, payload

EXAMPLES = sorted((WEBHOOKS / "examples").rglob("*.json"))
# The events the tests deliver as an App's (with `installation`); the others go as GitHub sends them.
APP_DELIVERIES = (
    "issues",
    "issue_comment",
    "pull_request_review",
    "pull_request_review_comment",
    "check_run",
)


def schema_registry() -> Registry[Any]:
    schemas = [json.loads(p.read_text()) for p in (WEBHOOKS / "schemas").rglob("*.schema.json")]
    return Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)


def validator(event: str, name: str) -> Draft7Validator:
    action = "event" if event == "ping" else name.split(".")[0]
    schema = json.loads((WEBHOOKS / "schemas" / event / f"{action}.schema.json").read_text())
    return Draft7Validator(schema, registry=schema_registry())


def test_the_fixtures_carry_their_licence_and_source() -> None:
    assert "MIT License" in (WEBHOOKS / "LICENSE").read_text()
    assert len((WEBHOOKS / "SOURCE_COMMIT").read_text().strip()) == 40
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_example_matches_githubs_schema(path: Path) -> None:
    event, name = path.parent.name, path.name
    errors = [e.message for e in validator(event, name).iter_errors(payload(event, name))]
    assert errors == []
    if event in APP_DELIVERIES:
        delivery = as_app_delivery(payload(event, name), "someone", "Bot")
        assert [e.message for e in validator(event, name).iter_errors(delivery)] == []


def test_a_comment_on_a_pull_request_as_the_tests_build_it_is_valid() -> None:
    """A PR comment is an issue_comment whose issue has a pull_request key; no example has one."""
    data = as_app_delivery(payload("issue_comment", "created.payload.json"))
    data["issue"]["pull_request"] = {"url": "x", "html_url": "x", "diff_url": "x", "patch_url": "x"}
    assert [e.message for e in validator("issue_comment", "created").iter_errors(data)] == []
