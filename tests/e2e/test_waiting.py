"""End to end on GitHub, every part real but GitHub and the LLM: a job that asks a question, or whose plan
waits for approval, frees its worker, and resumes only on a writer's answer, `@app go` or 👍."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from arq.jobs import JobStatus

from autodev.runtime import Runtime
from autodev.serve import worker_context
from engine import events
from engine.settings import Settings
from engine.store.models import JobState, utcnow
from tests.e2e.test_github_flow import SLUG, git, job_of, make_remote, work_off_the_queue
from tests.e2e.test_github_flow import services as services
from tests.github_app.conftest import REPO, as_app_delivery, deliver, labeled, payload
from tests.github_app.conftest import private_key as private_key
from tests.support.fake_github import FakeGitHub, FakeRepo
from tests.support.fake_llm import FakeLLM
from workers.jobs import reconcile

Services = tuple[Settings, Runtime, httpx.AsyncClient, FakeGitHub, FakeLLM]
QUESTION = "Should the README say Hello or Hi?"
PLAN = {"summary": "Fix the typo", "steps": [
    {"title": "Fix the README typo", "rationale": "r", "acceptance": "Hello", "files": ["README.md"]},
]}  # fmt: skip
ASK = "# If the task is ambiguous"
EDIT = ("edit_file", {"path": "README.md", "old_text": "Helo", "new_text": "Hello"})


def comment(sender: str, body: str, number: int = 1) -> dict[str, Any]:
    """The corpus's `issue_comment.created` delivery by `sender` on issue `number`, saying `body`."""
    data = as_app_delivery(payload("issue_comment", "created.payload.json"), sender)
    data["issue"]["number"] = number
    data["comment"]["body"] = body
    return data


def asked_on(repo: FakeRepo, text: str) -> list[dict[str, Any]]:
    """The comments autodev posted on issue 1 that are not its sticky status comment and contain `text`."""
    return [
        c
        for c in repo.comments.values()
        if c["issue_number"] == 1 and text in c["body"] and "<!-- autodev:job -->" not in c["body"]
    ]


def branches(remote: Path) -> list[str]:
    return git(remote, "branch", "--format=%(refname:short)").split()


async def start(services: Services, tmp_path: Path, config: str = "", delivery: str = "label") -> str:
    settings, runtime, http, github, _llm = services
    github.add_repo(REPO, clone_url=f"file://{make_remote(tmp_path, config)}", writers={"alice"})
    accepted = await deliver(http, "issues", labeled(settings), delivery=delivery)
    assert accepted.status_code == 202
    await work_off_the_queue(runtime)
    return await job_of(runtime, delivery)


async def test_a_question_frees_the_worker_and_only_a_writers_answer_resumes_the_job(
    services: Services, tmp_path: Path
) -> None:
    settings, runtime, http, github, llm = services
    llm.reply_json({"question": QUESTION})
    job_id = await start(services, tmp_path)
    repo = github.repos[REPO]

    view = await runtime.store.view(job_id)
    assert view.state is JobState.WAITING
    [asked] = asked_on(repo, QUESTION)
    assert "@alice" in asked["body"] and "Answer in a comment" in asked["body"]
    sticky = next(c for c in repo.comments.values() if "<!-- autodev:job -->" in c["body"])
    assert "Waiting for an answer" in sticky["body"]
    assert await runtime.queue.status(job_id) is JobStatus.complete, "the worker's function returned"
    assert [e.data for e in view.events if e.type == events.QUESTION] == [{"text": QUESTION, "asked": 1}]
    page = (await http.get(f"/jobs/{job_id}", params={"t": view.access_token})).text
    assert 'data-waiting="question"' in page and "Should the README say Hello or Hi?" in page

    # The worker is free: another issue's job runs to its end while this one waits.
    other = labeled(settings)
    other["issue"]["number"] = 2
    llm.reply_json(PLAN)
    llm.reply_tool_calls(EDIT)
    llm.reply_text("Fixed.")
    await deliver(http, "issues", other, delivery="other")
    await work_off_the_queue(runtime)
    assert (await runtime.store.get(await job_of(runtime, "other"))).state == JobState.SUCCEEDED
    assert (await runtime.store.get(job_id)).state == JobState.WAITING

    # A plain comment elsewhere is not stored; on the waiting issue it is, and a non-writer's resumes nothing.
    elsewhere = await deliver(http, "issue_comment", comment("alice", "Hi", number=3))
    assert elsewhere.json() == {"ignored": "not addressed to autodev"}
    by_reader = await deliver(http, "issue_comment", comment("mallory", "Say Hi!"), delivery="mallory")
    assert by_reader.json()["stored"] is True
    await work_off_the_queue(runtime)
    assert (await runtime.store.get(job_id)).state == JobState.WAITING
    assert len(llm.requests) == 4, "no model call for the non-writer's comment"

    # A writer's answer resumes it; the planner is given the question and the answer.
    llm.reply_json(PLAN)
    llm.reply_tool_calls(EDIT)
    llm.reply_text("Fixed.")
    answered = await deliver(http, "issue_comment", comment("alice", "Hello, please."), delivery="answer")
    assert answered.json()["stored"] is True
    again = await deliver(http, "issue_comment", comment("alice", "Hello, please."), delivery="answer")
    assert again.json() == {"delivery": "answer", "duplicate": True}, "GitHub's redelivery counts once"
    await work_off_the_queue(runtime)

    view = await runtime.store.view(job_id)
    assert view.state is JobState.SUCCEEDED, view.failure_reason
    planner_prompt = str(llm.requests[4]["messages"])
    assert QUESTION in planner_prompt and "Hello, please." in planner_prompt and "@alice" in planner_prompt
    assert [e.data for e in view.events if e.type == events.ANSWERED] == [
        {"text": "Hello, please.", "by": "@alice", "via": "github"}
    ]
    answer_id = comment("alice", "")["comment"]["id"]
    acknowledged = [r for r in repo.reactions if r["path"].endswith(f"/comments/{answer_id}/reactions")]
    assert [r["content"] for r in acknowledged] == ["eyes"], "👀 on the answer taken (once: not the reader's)"
    page = (await http.get(f"/jobs/{job_id}", params={"t": view.access_token})).text
    assert "@alice answered (github)" in page and "Hello, please." in page and 'id="waiting"' not in page
    states = [e.data["state"] for e in view.events if e.type == events.STATE]
    assert states == ["running", "waiting", "queued", "running", "succeeded"]

    # Redelivered once more, or a later comment: not stored, as nothing waits on the issue any more.
    again = await deliver(http, "issue_comment", comment("alice", "Hello, please."), delivery="answer")
    assert again.json() == {"ignored": "not addressed to autodev"}
    later = await deliver(http, "issue_comment", comment("alice", "Thanks!"))
    assert later.json() == {"ignored": "not addressed to autodev"}
    assert llm.remaining == 0


async def test_restarting_redis_and_the_worker_while_a_job_waits_loses_nothing(
    services: Services, tmp_path: Path
) -> None:
    _, runtime, http, _, llm = services
    llm.reply_json({"question": QUESTION})
    job_id = await start(services, tmp_path)
    ctx = worker_context(runtime)

    await runtime.queue.redis.flushdb()  # Redis restarted without its data
    counts = await reconcile(ctx)
    assert counts["enqueued"] == 0, "a waiting job is not put back on the queue"
    await work_off_the_queue(runtime)  # a new worker finds nothing to run
    assert (await runtime.store.get(job_id)).state == JobState.WAITING
    assert len(llm.requests) == 1

    llm.reply_json(PLAN)
    llm.reply_tool_calls(EDIT)
    llm.reply_text("Fixed.")
    await deliver(http, "issue_comment", comment("alice", "Hello, please."))
    await work_off_the_queue(runtime)
    assert (await runtime.store.get(job_id)).state == JobState.SUCCEEDED


async def test_a_job_asks_at_most_twice_then_must_plan(services: Services, tmp_path: Path) -> None:
    _settings, runtime, http, _github, llm = services
    llm.reply_json({"question": "First?"})
    job_id = await start(services, tmp_path)
    llm.reply_json({"question": "Second?"})
    await deliver(http, "issue_comment", comment("alice", "One."))
    await work_off_the_queue(runtime)
    assert (await runtime.store.get(job_id)).state == JobState.WAITING
    llm.reply_json({"question": "Third?"})
    llm.reply_json(PLAN)
    llm.reply_tool_calls(EDIT)
    llm.reply_text("Fixed.")
    await deliver(http, "issue_comment", comment("alice", "Two."))
    await work_off_the_queue(runtime)

    view = await runtime.store.view(job_id)
    assert view.state is JobState.SUCCEEDED, view.failure_reason
    assert ASK in str(llm.requests[1]["messages"]) and ASK not in str(llm.requests[2]["messages"])
    assert "cannot ask a question now" in str(llm.requests[3]["messages"])
    assert [e.data["text"] for e in view.events if e.type == events.QUESTION] == ["First?", "Second?"]


async def test_questions_false_in_the_repository_config_keeps_the_planner_from_asking(
    services: Services, tmp_path: Path
) -> None:
    _, runtime, _, _, llm = services
    llm.reply_json(PLAN)
    llm.reply_tool_calls(EDIT)
    llm.reply_text("Fixed.")
    job_id = await start(services, tmp_path, config="questions: false\n")
    assert (await runtime.store.get(job_id)).state == JobState.SUCCEEDED
    assert ASK not in str(llm.requests[0]["messages"])


async def test_an_unanswered_question_is_cancelled_with_a_note_at_its_deadline(
    services: Services, tmp_path: Path
) -> None:
    _, runtime, _, github, llm = services
    llm.reply_json({"question": QUESTION})
    job_id = await start(services, tmp_path, config="question_timeout_hours: 2\n")
    ctx = worker_context(runtime)
    job = await runtime.store.get(job_id)
    assert job.origin["waiting"]["deadline"] > (utcnow() + timedelta(minutes=119)).isoformat()
    assert (await reconcile(ctx))["expired"] == 0
    assert (await runtime.store.get(job_id)).state == JobState.WAITING, "the reconciler leaves it waiting"

    waiting = {**job.origin["waiting"], "deadline": (utcnow() - timedelta(seconds=1)).isoformat()}
    await runtime.store.update(job_id, origin={**job.origin, "waiting": waiting})
    assert (await reconcile(ctx))["expired"] == 1

    job = await runtime.store.get(job_id)
    assert job.state == JobState.CANCELLED
    assert job.failure_reason == ("no answer to the question within 2 hours; start the job again to continue")
    sticky = next(c for c in github.repos[REPO].comments.values() if "<!-- autodev:job -->" in c["body"])
    assert "Cancelled: no answer to the question within 2 hours" in sticky["body"]
    assert (await reconcile(ctx))["expired"] == 0


async def test_cancel_while_waiting_ends_the_job_at_once_and_an_answer_then_resumes_nothing(
    services: Services, tmp_path: Path
) -> None:
    _, runtime, http, github, llm = services
    llm.reply_json({"question": QUESTION})
    job_id = await start(services, tmp_path)

    await deliver(http, "issue_comment", comment("alice", f"@{SLUG} cancel"))
    await work_off_the_queue(runtime)

    job = await runtime.store.get(job_id)
    assert job.state == JobState.CANCELLED and job.failure_reason == "cancelled by github:alice"
    sticky = next(c for c in github.repos[REPO].comments.values() if "<!-- autodev:job -->" in c["body"])
    assert "Cancelled" in sticky["body"]
    ignored = await deliver(http, "issue_comment", comment("alice", "Hello, please."))
    assert ignored.json() == {"ignored": "not addressed to autodev"}
    assert llm.remaining == 0 and len(llm.requests) == 1


async def test_a_plan_awaiting_approval_codes_nothing_until_go_and_the_amendment_reaches_the_coder(
    services: Services, tmp_path: Path
) -> None:
    _, runtime, http, github, llm = services
    llm.reply_json(PLAN)
    job_id = await start(services, tmp_path, config="plan_approval: true\n")
    remote = tmp_path / "hello.git"
    repo = github.repos[REPO]

    view = await runtime.store.view(job_id)
    assert view.state is JobState.WAITING and view.plan is not None
    [plan_comment] = asked_on(repo, "Fix the README typo")
    assert f"@{SLUG} go" in plan_comment["body"] and "👍" in plan_comment["body"]
    assert len(llm.requests) == 1, "no coder call before the approval"
    assert branches(remote) == ["main"], "nothing pushed before the approval"

    # `go` from a non-writer is refused; from a writer, with changes to the plan, it starts the coding.
    await deliver(http, "issue_comment", comment("mallory", f"@{SLUG} go"))
    await work_off_the_queue(runtime)
    assert (await runtime.store.get(job_id)).state == JobState.WAITING
    llm.reply_tool_calls(EDIT)
    llm.reply_text("Fixed.")
    await deliver(http, "issue_comment", comment("alice", f"@{SLUG} go and keep the trailing newline"))
    await work_off_the_queue(runtime)

    view = await runtime.store.view(job_id)
    assert view.state is JobState.SUCCEEDED, view.failure_reason
    assert "keep the trailing newline" in str(llm.requests[1]["messages"])
    assert [e.data for e in view.events if e.type == events.APPROVED] == [
        {"by": "@alice", "via": "comment", "amendment": "and keep the trailing newline"}
    ]
    assert view.branch in branches(remote)
    page = (await http.get(f"/jobs/{job_id}", params={"t": view.access_token})).text
    assert "@alice approved the plan (comment)" in page and "keep the trailing newline" in page
    assert llm.remaining == 0


async def test_a_writers_thumbs_up_on_the_plan_approves_it_and_a_readers_does_not(
    services: Services, tmp_path: Path
) -> None:
    _, runtime, _http, github, llm = services
    llm.reply_json(PLAN)
    job_id = await start(services, tmp_path, config="plan_approval: true\n")
    ctx = worker_context(runtime)
    plan_comment = (await runtime.store.get(job_id)).reporter_state["github"]["wait_comment_id"]

    github.react(REPO, plan_comment, "mallory")
    github.react(REPO, plan_comment, "alice", content="heart")
    assert (await reconcile(ctx))["approved"] == 0
    assert (await runtime.store.get(job_id)).state == JobState.WAITING

    github.react(REPO, plan_comment, "alice")
    llm.reply_tool_calls(EDIT)
    llm.reply_text("Fixed.")
    assert (await reconcile(ctx))["approved"] == 1
    await work_off_the_queue(runtime)
    view = await runtime.store.view(job_id)
    assert view.state is JobState.SUCCEEDED, view.failure_reason
    assert [e.data for e in view.events if e.type == events.APPROVED] == [{"by": "@alice", "via": "reaction"}]
    assert (await reconcile(ctx))["approved"] == 0


async def test_a_plan_awaiting_approval_can_be_cancelled_and_go_then_finds_nothing(
    services: Services, tmp_path: Path
) -> None:
    _, runtime, http, github, llm = services
    llm.reply_json(PLAN)
    job_id = await start(services, tmp_path, config="plan_approval: true\n")

    await deliver(http, "issue_comment", comment("alice", f"@{SLUG} cancel"))
    await work_off_the_queue(runtime)
    await deliver(http, "issue_comment", comment("alice", f"@{SLUG} go"))
    await work_off_the_queue(runtime)

    assert (await runtime.store.get(job_id)).state == JobState.CANCELLED
    assert asked_on(github.repos[REPO], "No autodev plan here is waiting for approval.")
    assert len(llm.requests) == 1 and branches(tmp_path / "hello.git") == ["main"]


async def test_the_reactions_of_a_plan_waiting_for_an_hour_are_read_less_often(
    services: Services, tmp_path: Path
) -> None:
    _, runtime, _, github, llm = services
    llm.reply_json(PLAN)
    job_id = await start(services, tmp_path, config="plan_approval: true\n")
    ctx = worker_context(runtime)
    job = await runtime.store.get(job_id)
    since = (utcnow() - timedelta(hours=2)).isoformat()
    await runtime.store.update(
        job_id, origin={**job.origin, "waiting": {**job.origin["waiting"], "since": since}}
    )
    reads = r"/repos/.*/issues/comments/\d+/reactions"

    await reconcile(ctx)
    await reconcile(ctx)

    assert len(github.calls_to("GET", reads)) == 1, "every five minutes once a plan has waited an hour"
    assert (await runtime.store.get(job_id)).state == JobState.WAITING
