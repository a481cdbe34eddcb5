"""docs/repo-config.md documents every key of `.github/autodev.yml`, and its example is a valid config."""

from __future__ import annotations

import re
from pathlib import Path

from engine.repo_config import RepoConfig, parse_repo_config

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "repo-config.md").read_text()


def test_every_key_has_a_row_and_a_section() -> None:
    for key in RepoConfig.model_fields:
        assert f"| `{key}` |" in DOC, f"{key} is missing from the table of keys"
        assert f"\n### `{key}`\n" in DOC, f"{key} has no section"


def test_the_example_is_a_valid_config_that_sets_every_key() -> None:
    example = re.search(r"## Example\n\n```yaml\n(.*?)```", DOC, re.S)
    assert example is not None
    config = parse_repo_config(example.group(1))
    assert config.model_fields_set == set(RepoConfig.model_fields)
    assert config.setup == ["pip install -e .[test]", "npm ci --prefix web"]


def test_the_readme_links_the_document_and_its_example_is_valid() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "(docs/repo-config.md)" in readme
    example = re.search(r"```yaml\n(test_command:.*?)```", readme, re.S)
    assert example is not None and parse_repo_config(example.group(1)).setup == ["pip install -e .[test]"]
