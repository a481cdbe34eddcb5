"""Which tests may skip: only those that need an external server or program this machine lacks.

Those are PostgreSQL (TEST_DATABASE_URL), Chromium and a working bubblewrap (or the kernel a sandbox test
needs). They skip through `skip_without(what, how)`, or a skip reason starting with MISSING, saying what is
missing and how to enable it. A skip for any other reason (a missing fixture file, an import that failed, a
forgotten `skip` mark) hides a test that should run everywhere: such skips are listed at the end of every run,
and with `CI=true` they fail it, so a fork's CI cannot go green while running less than it claims.

tests/conftest.py installs these hooks; `pytest -p tests.support.skip_policy` installs them anywhere else.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

MISSING = "not on this machine: "


def skip_without(what: str, how: str) -> NoReturn:
    """Skip this test: `what` (PostgreSQL, Chromium, bubblewrap) is not here; `how` says how to enable it."""
    pytest.skip(f"{MISSING}{what} ({how})")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    install(config)


def install(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(SkipPolicy.NAME):
        config.pluginmanager.register(SkipPolicy(), SkipPolicy.NAME)


class SkipPolicy:
    NAME = "autodev-skip-policy"

    def __init__(self) -> None:
        self.unexpected: list[tuple[str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self._check(report.nodeid, report.longrepr)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped:
            self._check(report.nodeid, report.longrepr)

    def _check(self, nodeid: str, longrepr: object) -> None:
        # A skip's longrepr is (path, line, "Skipped: <reason>").
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else longrepr
        reason = str(reason).removeprefix("Skipped: ")
        if not reason.startswith(MISSING):
            self.unexpected.append((nodeid, reason))

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if in_ci() and self.unexpected and exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.unexpected:
            return
        verdict = "so this run fails (CI=true)" if in_ci() else "with CI=true this run would fail"
        title = "skips for another reason than a missing server"
        terminalreporter.section(title, sep="=", red=True, bold=True)
        for nodeid, reason in self.unexpected:
            terminalreporter.line(f"SKIPPED {nodeid}: {reason}")
        terminalreporter.line(
            f"{len(self.unexpected)} test(s) skipped for another reason than a missing server; {verdict}."
        )
