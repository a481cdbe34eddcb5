"""`autodev run --repo PATH "<task>"`: a local job in-process, and a clear message without an LLM."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from autodev import cmd_run
from engine import tracing
from tests.conftest import make_settings
from tests.engine.conftest import TEST_COMMAND, git, make_project, plan
from tests.support.fake_llm import FakeLLM
from tests.support.otlp_collector import Collector


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cmd_run.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["run", *argv])


def test_without_an_llm_it_says_how_to_configure_one_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse("--repo", str(tmp_path), "do something")
    assert args.handler(args, make_settings(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "OPENAI_API_KEY" in err and "OPENAI_BASE_URL" in err and "Ollama" in err and "vLLM" in err


async def test_a_run_leaves_a_branch_and_prints_plan_steps_tokens_and_dollars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path / "project")
    async with FakeLLM() as llm:
        settings = make_settings(tmp_path, openai_base_url=llm.base_url, openai_api_key="sk-cli-test-123")
        llm.reply_json(plan("Add a readme"))
        llm.reply_tool_calls(("create_file", {"path": "README.md", "content": "# calc\n"}))
        llm.reply_text("Added.")
        args = parse("--repo", str(project), "--budget", "1", "Add a README")
        code = await asyncio.to_thread(args.handler, args, settings)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "1. Add a readme" in out and "[done]" in out and "tests passed" in out
    assert "tokens:" in out and "$0.0" in out and "succeeded" in out
    branch = next(line.split()[3] for line in out.splitlines() if line.startswith("branch left behind"))
    assert git(project, "show", f"{branch}:README.md") == "# calc\n"


async def test_a_local_run_never_asks_nor_waits_for_approval_nobody_could_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: with `plan_approval: true` a local run would wait for ever."""
    config = f"test_command: {TEST_COMMAND!r}\nplan_approval: true\n"
    project = make_project(tmp_path / "project", extra={".github/autodev.yml": config})
    async with FakeLLM() as llm:
        settings = make_settings(tmp_path, openai_base_url=llm.base_url, openai_api_key="sk-cli-test-123")
        llm.reply_json(plan("Add a readme"))
        llm.reply_tool_calls(("create_file", {"path": "README.md", "content": "# calc\n"}))
        llm.reply_text("Added.")
        args = parse("--repo", str(project), "Add a README")
        code = await asyncio.to_thread(args.handler, args, settings)
    out = capsys.readouterr().out
    assert code == 0 and "succeeded" in out, out
    assert "# If the task is ambiguous" not in str(llm.requests[0]["messages"])


async def test_a_run_from_the_default_relative_data_dir_succeeds_and_shows_progress_as_it_goes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: on DATA_DIR=./data (the default) `git worktree add` ran inside the mirror with a relative
    path and every job failed; and nothing was printed between the first line and the summary."""
    make_project(tmp_path / "project")
    monkeypatch.chdir(tmp_path)
    async with FakeLLM() as llm:
        settings = make_settings(
            tmp_path,
            data_dir=Path("data"),
            workspace_dir=None,
            database_url="sqlite+aiosqlite:///./data/autodev.db",
            openai_base_url=llm.base_url,
            openai_api_key="sk-cli-test-123",
        )
        llm.reply_json(plan("Add a readme"))
        llm.reply_tool_calls(("create_file", {"path": "README.md", "content": "# calc\n"}))
        llm.reply_text("Added.")
        args = parse("--repo", "project", "Add a README")
        code = await asyncio.to_thread(args.handler, args, settings)
    out = capsys.readouterr().out
    assert code == 0, out
    assert (tmp_path / "data" / "autodev.db").is_file() and (tmp_path / "data" / "work").is_dir()
    progress = [line.split("] ", 1)[1] for line in out.splitlines() if line.startswith("[")]
    assert [p.split(" (")[0] for p in progress] == [
        "running",
        "preparing",
        "planning",
        "plan: 1 steps",
        "coding step 1/1",
        "testing step 1/1",
        "tests round 0: passed",
        "step 1 done",
        "publishing",
        "succeeded",
    ]
    assert "    1. Add a readme" in out


async def test_with_an_otlp_endpoint_the_run_exports_its_trace_before_it_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI, a composition root, starts the exporter and shuts it down (every span exported) at exit."""
    project = make_project(tmp_path / "project")
    collector = Collector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    try:
        async with FakeLLM() as llm:
            settings = make_settings(tmp_path, openai_base_url=llm.base_url, openai_api_key="sk-cli-test-123")
            llm.reply_json(plan("Add a readme"))
            llm.reply_tool_calls(("create_file", {"path": "README.md", "content": "# calc\n"}))
            llm.reply_text("Added.")
            args = parse("--repo", str(project), "Add a README")
            assert await asyncio.to_thread(args.handler, args, settings) == 0
        assert not tracing.enabled(), "shut down at exit"
        names = [s.name for s in collector.spans()]
        assert "autodev.job" in names and names.count("execute_tool create_file") == 1
        assert len({s.trace_id for s in collector.spans()}) == 1
    finally:
        tracing.shutdown()
        collector.close()
