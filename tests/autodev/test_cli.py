"""Which event loop each service process runs on."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from autodev.cli import run_loop


def loop_type(uvloop_if_installed: bool) -> type[asyncio.AbstractEventLoop]:
    seen: list[type[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()))

    run_loop(main(), uvloop_if_installed=uvloop_if_installed)
    return seen[0]


def test_the_web_process_runs_on_uvloop() -> None:
    assert issubclass(loop_type(True), uvloop.Loop)


def test_a_process_with_a_worker_runs_on_asyncios_loop() -> None:
    """uvloop starts child processes at several times the CPU, and a job starts ~30 of them."""
    assert not issubclass(loop_type(False), uvloop.Loop)


def test_without_uvloop_the_web_process_runs_on_asyncios_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as where it is not installed
    assert not issubclass(loop_type(True), uvloop.Loop)
