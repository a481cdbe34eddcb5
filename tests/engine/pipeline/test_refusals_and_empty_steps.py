"""A refusal ends its step as refused in the model's words (check run, job page, Slack and the job's end),
the work before it kept as a draft PR; a step that changes nothing is reported so and never commits."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.render import thread_replies
from engine.errors import TransientFailure
from engine.pipeline.run import EngineDeps, run_job
from engine.store.jobs import JobStore
from engine.store.models import JobState
from github_app.render import check_summary, check_title
from tests.engine.conftest import RecordingHost, branch_log, git, llm_settings, plan, run, submit
from tests.support.fake_llm import FakeLLM

WORDS = "I'm sorry, but I can't help with disabling the licence check."


async def test_a_refused_step_ends_the_job_with_the_models_words_keeping_earlier_work_as_a_draft(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    """Regression: a refusal was dropped; the step ended "done" with an empty commit and the PR was ready."""
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_json(plan("Add a helper", "Disable the licence check"))
    llm.reply_tool_calls(("create_file", {"path": "helper.py", "content": "X = 1\n"}))
    llm.reply_text("Added the helper.")
    llm.reply_refusal(WORDS)
    host = RecordingHost(remote)
    job_id = await submit(store)

    assert await run(job_id, settings, store, host) is JobState.FAILED

    view = await store.view(job_id)
    reason = view.failure_reason or ""
    assert reason == (f"step 2 (Disable the licence check) was refused by the coder model gpt-4.1: “{WORDS}”")
    assert [s.state for s in view.steps] == ["done", "refused"]
    assert WORDS in (view.steps[1].error or "") and view.steps[1].commit_sha is None
    finished = [e.data for e in view.events if e.type == "step_finished"]
    assert finished[-1]["state"] == "refused" and finished[-1]["refusal"] == WORDS
    # The work before it stays, as a draft that says why it stopped.
    assert view.branch and branch_log(remote, view.branch) == ["Add a helper"]
    assert host.prs[0].draft is True and WORDS in host.bodies[1]
    # Check run and Slack show the refusal in the model's words.
    assert WORDS in check_summary(view, "http://testserver") and WORDS in check_title(view)
    assert "🚫 2. Disable the licence check" in check_summary(view, "http://testserver")
    replies = dict(thread_replies(view, settings))
    assert WORDS in replies["step:1:refused"] and WORDS in replies["final:failed"]


async def test_a_refused_plan_ends_the_job_with_the_models_words(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_refusal(WORDS)
    host = RecordingHost(remote)
    job_id = await submit(store)

    assert await run(job_id, settings, store, host) is JobState.FAILED

    view = await store.view(job_id)
    assert view.failure_reason == f"the planner model gpt-4.1-mini refused to plan the task: “{WORDS}”"
    assert [e.data.get("refusal") for e in view.events if e.type == "llm_call"] == [WORDS]
    assert host.prs == [] and llm.remaining == 0  # a refusal is not asked again


async def test_a_step_that_changes_nothing_makes_no_commit_and_says_no_changes(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_json(plan("Check the adder", "Add subtract"))
    llm.reply_text("calc.add is already right; nothing to change.")
    llm.reply_tool_calls(("create_file", {"path": "sub.py", "content": "def sub(a, b):\n    return a - b\n"}))
    llm.reply_text("Added sub.")
    host = RecordingHost(remote)
    job_id = await submit(store)

    assert await run(job_id, settings, store, host) is JobState.SUCCEEDED

    view = await store.view(job_id)
    assert view.branch and branch_log(remote, view.branch) == ["Add subtract"]
    assert [(s.state, bool(s.commit_sha)) for s in view.steps] == [("done", False), ("done", True)]
    first = next(e.data for e in view.events if e.type == "step_finished")
    assert first == {"index": 0, "state": "done", "no_changes": True}
    assert "(no changes)" in check_summary(view, "http://testserver")
    assert "(no changes)" in dict(thread_replies(view, settings))["step:0:done"]


async def test_a_job_whose_steps_change_nothing_opens_no_pull_request(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path, project: Path
) -> None:
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_json(plan("Look"))
    # An edit undone within the step leaves nothing to commit either.
    llm.reply_tool_calls(("create_file", {"path": "calc.py", "content": "x = 1\n"}))
    llm.reply_tool_calls(("create_file", {"path": "calc.py", "content": (project / "calc.py").read_text()}))
    llm.reply_text("Nothing needed in the end.")
    host = RecordingHost(remote)
    job_id = await submit(store)

    assert await run(job_id, settings, store, host) is JobState.SUCCEEDED

    view = await store.view(job_id)
    assert host.prs == [] and "pushed" not in [e.type for e in view.events]
    assert view.steps[0].state == "done" and view.steps[0].commit_sha is None
    assert git(remote, "branch", "--list", "autodev/*").strip() == ""
    assert "Done, nothing needed changing" in dict(thread_replies(view, settings))["final:succeeded"]


async def test_a_gpt_5_job_runs_against_a_server_that_refuses_max_tokens(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    """Regression: MODEL_CODER=gpt-5 failed every job with a 400 for max_tokens."""
    llm.reasoning_models.update({"gpt-5", "gpt-5-mini"})
    settings = llm_settings(tmp_path, database_url, llm, model_coder="gpt-5", model_planner="gpt-5-mini")
    llm.reply_json(plan("Add subtract"))
    llm.reply_tool_calls(("create_file", {"path": "sub.py", "content": "def sub(a, b):\n    return a - b\n"}))
    llm.reply_text("Done.")
    job_id = await submit(store)

    assert await run(job_id, settings, store, RecordingHost(remote)) is JobState.SUCCEEDED
    assert all("max_tokens" not in r and "max_completion_tokens" in r for r in llm.requests)


async def test_an_html_answer_ends_the_run_with_a_reason_a_user_can_act_on(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, remote: Path
) -> None:
    settings = llm_settings(tmp_path, database_url, llm, llm_max_retries=0)
    llm.reply_raw("<!DOCTYPE html><html><body><h1>Sign in to the corporate proxy</h1></body></html>")
    job_id = await submit(store)
    host = RecordingHost(remote)

    async def code_host_for(view: object) -> RecordingHost:
        return host

    # A transient failure goes back to the worker, which runs the job again later or fails it with this.
    with pytest.raises(TransientFailure) as caught:
        await run_job(job_id, EngineDeps(settings, store, code_host_for=code_host_for))
    assert caught.value.reason.startswith("the LLM endpoint answered text/html, not JSON: <!DOCTYPE html>")
    assert "Sign in to the corporate proxy" in caught.value.reason
    (cost,) = (await store.view(job_id)).costs
    assert cost.outcome == "not JSON" and cost.billed_on == "worst case"
