"""The pipeline end to end: real git repos, the real runner and store, a scripted LLM on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from engine.ports import JobEventView
from engine.store.jobs import JobStore
from engine.store.models import JobState
from engine.views import JobView
from engine.workspace.local_host import LocalCodeHost
from tests.engine.conftest import (
    RecordingHost,
    branch_log,
    git,
    llm_settings,
    make_project,
    plan,
    run,
    submit,
)
from tests.support.fake_llm import FakeLLM

SUBTRACT = "def subtract(a, b):\n    return a - b\n"
SUBTRACT_TEST = "from calc import subtract\n\n\ndef test_subtract():\n    assert subtract(5, 3) == 2\n"


def types(view: JobView) -> list[str]:
    return [e.type for e in view.events]


async def test_a_two_step_task_gives_two_commits_passing_tests_and_a_pr_made_ready(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_json(plan("Add subtract", "Test subtract"))
    llm.reply_tool_calls(("read_file", {"path": "calc.py"}))
    llm.reply_tool_calls(("edit_file", {"path": "calc.py", "old_text": "    return a + b\n",
                                        "new_text": "    return a + b\n\n\n" + SUBTRACT}))  # fmt: skip
    llm.reply_text("Added subtract.")
    llm.reply_tool_calls(("create_file", {"path": "tests/test_subtract.py", "content": SUBTRACT_TEST}))
    llm.reply_text("Tested subtract.")
    host = RecordingHost(remote)
    job_id = await submit(store, issue_number=7)

    assert await run(job_id, settings, store, host) is JobState.SUCCEEDED

    view = await store.view(job_id)
    assert view.branch == "autodev/7-add-a-subtract-function"
    assert branch_log(remote, view.branch) == ["Test subtract", "Add subtract"]
    assert [s.state for s in view.steps] == ["done", "done"]
    assert all(s.test_passed for s in view.steps)
    assert view.steps[0].commit_sha and "def subtract" in (view.steps[0].diff or "")
    full = git(remote, "log", "-1", "--format=%B", view.branch)
    assert job_id in full
    # Opened as a draft after the first step, made ready at the end; the body closes the issue.
    assert host.calls[0] == (
        "open",
        {"head": view.branch, "base": "main", "title": view.title, "draft": True},
    )
    assert host.prs[0].draft is False
    body = host.bodies[1]
    assert "Closes #7" in body and f"/jobs/{job_id}?t={view.access_token}" in body and "- [x] 2." in body
    assert view.cost_usd > 0 and view.requests == 6 and len(view.costs) == 6
    assert types(view).count("pushed") == 3 and "plan" in types(view) and "context" in types(view)
    assert view.head_sha == git(remote, "rev-parse", view.branch).strip()
    assert not (tmp_path / "work" / "jobs" / job_id).exists(), "the worktree is removed at the end"
    assert "ghs_secret_token_123" not in str(view.events)


async def test_a_failing_test_is_repaired_in_a_second_round(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, project: Path
) -> None:
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_json(plan("Add subtract with a test"))
    llm.reply_tool_calls(
        ("create_file", {"path": "sub.py", "content": "def subtract(a, b):\n    return a + b\n"}),
        ("create_file", {"path": "tests/test_sub.py", "content": SUBTRACT_TEST.replace("calc", "sub")}),
    )
    llm.reply_text("Done.")
    llm.reply_tool_calls(("edit_file", {"path": "sub.py", "old_text": "a + b", "new_text": "a - b"}))
    llm.reply_text("Fixed the sign.")
    job_id = await submit(store, repo=f"local:{project}")

    assert await run(job_id, settings, store, LocalCodeHost(project)) is JobState.SUCCEEDED

    view = await store.view(job_id)
    tests = [e.data for e in view.events if e.type == "tests"]
    assert [(t["passed"], t["round"]) for t in tests] == [(False, 0), (True, 1)]
    assert "assert 8 == 2" in str(tests[0]["tail"]) or "assert" in str(tests[0]["tail"])
    repair_prompt = llm.requests[3]["messages"][-1]["content"]
    assert "The tests fail" in repair_prompt and "test_subtract" in repair_prompt
    assert view.steps[0].repair_rounds == 1 and view.steps[0].test_passed
    # The branch was pushed back into the local repository; no PR steps for a local host.
    assert git(project, "show", f"{view.branch}:sub.py") == SUBTRACT
    assert "pr" not in types(view)


async def test_invalid_plan_json_is_repaired_once(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_text("Here is my plan: {steps: [oops")
    llm.reply_json(plan("Touch a file"))
    llm.reply_tool_calls(("create_file", {"path": "notes.txt", "content": "hi\n"}))
    llm.reply_text("done")
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.SUCCEEDED

    repair = llm.requests[1]["messages"][-1]["content"]
    assert "not a valid plan" in repair and "JSON" in repair
    assert (await store.view(job_id)).plan["steps"][0]["title"] == "Touch a file"  # type: ignore[index]


async def test_a_plan_that_stays_invalid_fails_the_job_after_two_repairs(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    settings = llm_settings(tmp_path, database_url, llm)
    for _ in range(3):
        llm.reply_json({"steps": []})
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.FAILED

    view = await store.view(job_id)
    assert "did not return a valid plan after 2 repairs" in (view.failure_reason or "")
    assert "steps" in (view.failure_reason or "") and llm.remaining == 0


class CancelAfterFirstStep:
    name = "canceller"

    def __init__(self, store: JobStore) -> None:
        self.store = store

    async def on_event(self, view: JobView, event: JobEventView) -> None:
        if event.type == "step_finished" and event.data.get("index") == 0:
            await self.store.request_cancel(view.id, by="tester")


async def test_cancel_between_steps_ends_cancelled_with_earlier_commits_kept(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_json(plan("First", "Second"))
    llm.reply_tool_calls(("create_file", {"path": "one.txt", "content": "1\n"}))
    llm.reply_text("one")
    llm.reply_text("never asked for")
    host = RecordingHost(remote)
    job_id = await submit(store)

    state = await run(job_id, settings, store, host, reporters=[CancelAfterFirstStep(store)])

    assert state is JobState.CANCELLED
    view = await store.view(job_id)
    assert view.branch and branch_log(remote, view.branch) == ["First"]
    assert llm.remaining == 1, "no LLM call after the cancel"
    assert [s.state for s in view.steps] == ["done", "pending"]


async def test_a_secret_is_absent_from_the_test_environment_and_from_every_prompt(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, monkeypatch: object
) -> None:
    import sys

    from tests.engine.conftest import make_project

    monkeypatch.setenv("DEPLOY_TOKEN", "tok-worker-secret-42")  # type: ignore[attr-defined]
    monkeypatch.setenv("HARMLESS_SETTING", "visible-value")  # type: ignore[attr-defined]
    dump = f'{sys.executable} -c "import os,sys; print(sorted(os.environ.items())); sys.exit(1)"'
    project = make_project(
        tmp_path / "p", test_command=dump, extra={"secret.txt": "key sk-test-key-0123456789\n"}
    )
    settings = llm_settings(tmp_path, database_url, llm, repair_rounds=1)
    llm.reply_json(plan("Read the secret file", files=["secret.txt"]))
    llm.reply_tool_calls(("read_file", {"path": "secret.txt"}))
    llm.reply_text("done")
    llm.reply_text("still done")
    job_id = await submit(store, repo=f"local:{project}")

    assert await run(job_id, settings, store, LocalCodeHost(project)) is JobState.FAILED

    sent = llm.all_prompt_text()
    assert "PYTHONDONTWRITEBYTECODE" in sent, "the environment dump did reach the prompt"
    # The command's environment is an allow-list: even a harmless variable of the worker's is not in it.
    assert "HARMLESS_SETTING" not in sent
    assert "tok-worker-secret-42" not in sent and "DEPLOY_TOKEN" not in sent
    assert "sk-test-key-0123456789" not in sent and "[redacted]" in sent
    view = await store.view(job_id)
    assert "still fails its tests" in (view.failure_reason or "")
    assert "tok-worker-secret-42" not in (view.failure_reason or "")


async def test_the_planner_and_coder_are_told_the_repository_s_instruction_files_and_the_job_lists_them(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    """Besides AGENTS.md and CONTRIBUTING.md, the files peers' users write (CLAUDE.md, Copilot's, Cursor's),
    with the AGENTS.md nearest to a step's files governing that step."""
    project = make_project(tmp_path / "project", extra={
        "AGENTS.md": "Root rule: keep functions short.", "CLAUDE.md": "Claude rule: no print().",
        "web/AGENTS.md": "Web rule: use tabs.", "web/app.js": "",
    })  # fmt: skip
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(project), str(remote))
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_json(plan("Change the web app", files=["web/app.js"]))
    llm.reply_tool_calls(("create_file", {"path": "web/app.js", "content": "let x\n"}))
    llm.reply_text("Done.")
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.SUCCEEDED

    planner_prompt, coder_prompt = (r["messages"][0]["content"] for r in llm.requests[:2])
    assert "Root rule" in planner_prompt and "Claude rule" in planner_prompt
    assert "Web rule" not in planner_prompt
    assert "Web rule" in coder_prompt and "Claude rule" in coder_prompt and "Root rule" not in coder_prompt
    told = [e.data for e in (await store.view(job_id)).events if e.type == "instructions"]
    assert [[f["path"] for f in t["files"]] for t in told] == [
        ["AGENTS.md", "CLAUDE.md"],
        ["web/AGENTS.md", "CLAUDE.md"],
    ]
    assert told[1]["step_index"] == 0
