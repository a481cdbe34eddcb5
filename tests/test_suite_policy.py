"""The suite runs in any clone: it carries its own fixtures, and only a missing server may skip a test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SAMPLE = """
import pytest
from tests.support.skip_policy import skip_without

def test_runs():
    pass

def test_needs_postgres():
    skip_without("PostgreSQL", "set TEST_DATABASE_URL")

def test_lost_its_fixture():
    pytest.skip("fixture file not found")
"""


def run_sample(tmp_path: Path, ci: str | None, sample: str = SAMPLE) -> subprocess.CompletedProcess[str]:
    """pytest on `sample` with only the skip policy loaded (not this suite's conftest)."""
    (tmp_path / "test_sample.py").write_text(sample)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTHONPATH": str(ROOT)}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.skip_policy", "-p", "no:cacheprovider", "-rs"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_in_ci_a_skip_for_another_reason_than_a_missing_server_fails_the_run(tmp_path: Path) -> None:
    result = run_sample(tmp_path, ci="true")
    assert result.returncode == 1, result.stdout
    assert "test_sample.py::test_lost_its_fixture: fixture file not found" in result.stdout
    assert "test_needs_postgres:" not in result.stdout.split("another reason than a missing server")[-1]
    assert "so this run fails (CI=true)" in result.stdout


def test_outside_ci_such_a_skip_is_named_but_the_run_passes(tmp_path: Path) -> None:
    result = run_sample(tmp_path, ci=None)
    assert result.returncode == 0, result.stdout
    assert "SKIPPED test_sample.py::test_lost_its_fixture" in result.stdout
    assert "not on this machine: PostgreSQL (set TEST_DATABASE_URL)" in result.stdout  # says how to enable


def test_a_missing_server_alone_does_not_fail_ci(tmp_path: Path) -> None:
    result = run_sample(tmp_path, ci="true", sample=SAMPLE.split("def test_lost_its_fixture")[0])
    assert result.returncode == 0, result.stdout
    assert "1 passed, 1 skipped" in result.stdout


def test_no_test_reads_anything_outside_the_repository() -> None:
    """A clone has nothing beside it: fixtures live in tests/fixtures, never in the workspace's ../shared."""
    outside = re.compile(r"\.\./shared|[\"']shared[\"']")
    offenders = [
        str(path.relative_to(ROOT))
        for path in ROOT.joinpath("tests").rglob("*.py")
        if path != Path(__file__) and outside.search(path.read_text())
    ]
    assert offenders == []
