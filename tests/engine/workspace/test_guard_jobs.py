"""Whole jobs whose model misbehaves with files: refusals reach the model, the job still ends well."""

from __future__ import annotations

from pathlib import Path

from engine.store.jobs import JobStore
from engine.store.models import JobState
from tests.engine.conftest import RecordingHost, git, llm_settings, make_project, plan, run, submit
from tests.support.fake_llm import FakeLLM


def remote_of(tmp_path: Path, project: Path) -> Path:
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(project), str(remote))
    return remote


async def test_a_job_whose_model_writes_names_git_refuses_still_succeeds(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    """Regression: `.GIT/config`, `.git./x` and `.git /x` were written, then `git add` failed and the whole
    job failed with "internal error: GitError"; a repository symlink into .github/workflows let a write in."""
    project = make_project(tmp_path / "project")
    (project / "docs_wf").symlink_to(".github/workflows")
    git(project, "add", "docs_wf")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "a link")
    remote = remote_of(tmp_path, project)
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_json(plan("Add subtract"))
    llm.reply_tool_calls(
        ("create_file", {"path": ".GIT/config", "content": "[core]\n\thooksPath = /tmp\n"}),
        ("create_file", {"path": ".git./x", "content": "x"}),
        ("create_file", {"path": ".git /x", "content": "x"}),
        ("create_file", {"path": "git~1/config", "content": "x"}),
        ("create_file", {"path": "docs_wf/ci.yml", "content": "on: pull_request_target\n"}),
        ("create_file", {"path": ".github/actions/setup/action.yml", "content": "runs: {}\n"}),
        ("create_file", {"path": "sub.py", "content": "def subtract(a, b):\n    return a - b\n"}),
    )
    llm.reply_text("Added subtract.")
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.SUCCEEDED

    view = await store.view(job_id)
    assert view.steps[0].refused_edits == 6
    answers = [m["content"] for m in llm.requests[2]["messages"] if m["role"] == "tool"]
    assert [a.startswith("error: refused") for a in answers] == [True] * 6 + [False]
    assert "git" in answers[0] and "Windows" in answers[1] and "protected" in answers[4]
    files = git(remote, "ls-tree", "-r", "--name-only", view.branch).splitlines()
    assert "sub.py" in files
    assert not [f for f in files if f.lower().startswith((".git/", ".git.", ".git ", "git~"))]
    assert git(remote, "show", f"{view.branch}:.github/workflows/ci.yml") == "on: push\n"


async def test_a_file_made_and_removed_in_one_step_and_an_ignored_file_do_not_fail_the_job(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    """`git add -- path` fails on a path that is gone and was never tracked, and on an ignored path: the
    step commits what the guard wrote without either failing the job."""
    project = make_project(tmp_path / "project", extra={".gitignore": "*.log\n"})
    remote = remote_of(tmp_path, project)
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_json(plan("Add subtract"))
    llm.reply_tool_calls(
        ("create_file", {"path": "scratch.py", "content": "x = 1\n"}),
        ("delete_file", {"path": "scratch.py"}),
        ("create_file", {"path": "notes/run.log", "content": "kept on purpose\n"}),
        ("create_file", {"path": "sub.py", "content": "def subtract(a, b):\n    return a - b\n"}),
    )
    llm.reply_text("Added subtract.")
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.SUCCEEDED

    view = await store.view(job_id)
    files = git(remote, "ls-tree", "-r", "--name-only", view.branch).splitlines()
    assert "sub.py" in files and "scratch.py" not in files and "notes/run.log" in files
