"""The README's commands work as written in a fresh clone, where uv is not on PATH (it is in .tools)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def dev_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_dev_py_command_in_the_readme_exists() -> None:
    named = set(re.findall(r"python3 dev\.py (\w+)", README))
    assert {"serve", "test", "lint", "autodev"} <= named
    assert named <= set(dev_script().COMMANDS)


def test_the_readme_names_no_command_a_fresh_clone_lacks() -> None:
    """Regression: `uv run autodev …` and the lint line failed with `uv: command not found`."""
    assert "uv run" not in README
    assert not re.search(r"\.\./shared", README)  # the workspace beside this one is not in a clone


def test_every_relative_link_in_the_readme_resolves_in_the_repository() -> None:
    """Regression: the README linked the design in the workspace beside the repository, absent in a clone."""
    links = [target.split("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", README)]
    local = [link for link in links if link and not re.match(r"[a-z]+:", link)]
    assert "docs/architecture.md" in local
    assert [link for link in local if not (ROOT / link).exists()] == []
