"""Edits stay inside the worktree: escapes and protected paths are refused, told, counted, never applied."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.agents.tools import ToolBox, closest_match
from engine.store.jobs import JobStore
from engine.store.models import JobState
from engine.workspace.guard import EditGuard, EditRefused
from tests.engine.conftest import RecordingHost, git, llm_settings, make_project, plan, run, submit
from tests.support.fake_llm import FakeLLM


@pytest.mark.parametrize(
    "path",
    [
        "../outside",
        "/etc/x",
        ".git/config",
        "sub/../../x",
        ".github/workflows/ci.yml",
        ".github/workflows/new.yml",
    ],
)
def test_the_sandbox_refuses_escapes_and_protected_paths(tmp_path: Path, path: str) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    with pytest.raises(EditRefused):
        EditGuard(root).write(path, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]


def test_the_sandbox_refuses_writing_through_a_symlink_that_leaves_the_tree(tmp_path: Path) -> None:
    root, outside = tmp_path / "tree", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "file-link").symlink_to(outside / "f.txt")
    sandbox = EditGuard(root)
    for path in ("escape/f.txt", "file-link"):
        with pytest.raises(EditRefused, match="outside"):
            sandbox.write(path, "x")
    assert list(outside.iterdir()) == []


def test_the_repos_own_protected_paths_are_refused_and_others_written(tmp_path: Path) -> None:
    sandbox = EditGuard(tmp_path, ["secrets/*", "deploy/**"])
    for path in ("secrets/prod.env", "deploy/k8s/app.yml"):
        with pytest.raises(EditRefused, match="protected"):
            sandbox.write(path, "x")
    assert sandbox.write("src/ok.py", "x = 1\n") == "src/ok.py"
    assert (tmp_path / "src/ok.py").read_text() == "x = 1\n" and sandbox.changed == {"src/ok.py"}


async def test_an_edit_whose_old_text_is_missing_shows_the_closest_text(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("def add(a, b):\n    return a + b\n")
    seen: list[tuple[str, dict[str, object]]] = []

    async def emit(type: str, data: dict[str, object]) -> None:
        seen.append((type, data))

    async def nothing() -> None:
        return None

    async def remember(kind: str, text: str) -> None:
        return None

    tools = ToolBox(EditGuard(tmp_path), emit=emit, run_tests=nothing, remember=remember)
    answer = await tools.call("edit_file", '{"path": "a.py", "old_text": "return a+b", "new_text": "x"}')
    assert "not found" in answer and "return a + b" in answer
    assert (tmp_path / "a.py").read_text().endswith("a + b\n")
    assert "closest" not in closest_match("zzz", "completely different text here")
    refused = await tools.call("create_file", '{"path": ".git/hooks/pre-commit", "content": "x"}')
    assert refused.startswith("error: refused") and tools.refused == 1 and seen[0][0] == "edit_refused"


async def test_refused_edits_in_a_job_are_told_counted_and_change_nothing_outside(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    project = make_project(tmp_path / "project")
    (project / "escape").symlink_to(outside)
    git(project, "add", "escape")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "symlink")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(project), str(remote))
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_json(plan("Try to escape"))
    llm.reply_tool_calls(
        ("edit_file", {"path": "../outside/x", "old_text": "a", "new_text": "b"}),
        ("create_file", {"path": "/etc/x", "content": "x"}),
        ("create_file", {"path": ".git/config", "content": "x"}),
        ("create_file", {"path": ".github/workflows/ci.yml", "content": "on: pull_request_target\n"}),
        ("create_file", {"path": "escape/planted.txt", "content": "x"}),
    )
    llm.reply_text("gave up")
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.SUCCEEDED

    view = await store.view(job_id)
    assert view.steps[0].refused_edits == 5
    assert len([e for e in view.events if e.type == "edit_refused"]) == 5
    answers = [m["content"] for m in llm.requests[2]["messages"] if m["role"] == "tool"]
    assert len(answers) == 5 and all(a.startswith("error: refused") for a in answers)
    assert list(outside.iterdir()) == [] and not Path("/etc/x").exists()  # noqa: ASYNC240
    # Every edit was refused, so the step changed nothing: no commit, no branch pushed, main untouched.
    assert view.steps[0].commit_sha is None and git(remote, "branch", "--list", view.branch or "") == ""
    assert git(remote, "show", "main:.github/workflows/ci.yml") == "on: push\n"
