"""End to end: a review on autodev's PR becomes one revise job whose commit answers each comment in its
thread — replied with the commit and resolved when addressed, told why when not — and the job's round shows
on the check run and the job page. Through the webhook, ARQ on Redis, git, the pipeline, fake GitHub/LLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import delete, update

from autodev.runtime import Runtime
from engine.pipeline.run import run_job
from engine.settings import Settings
from engine.store.models import Job, JobEvent, JobState
from tests.e2e.test_github_flow import git, work_off_the_queue
from tests.e2e.test_github_flow import remote as remote
from tests.e2e.test_github_flow import services as services
from tests.github_app.conftest import REPO, as_app_delivery, deliver, payload
from tests.github_app.conftest import private_key as private_key
from tests.support.fake_github import FakeGitHub, FakeRepo
from tests.support.fake_llm import FakeLLM

Services = tuple[Settings, Runtime, httpx.AsyncClient, FakeGitHub, FakeLLM]
BRANCH = "autodev/1-fix-readme"
NUMBER = 2
ONE_STEP = {"summary": "Answer the review", "steps": [
    {"title": "Fix the README", "rationale": "r", "acceptance": "Hello", "files": ["README.md"]},
]}  # fmt: skip


def open_pull(github: FakeGitHub, remote: Path) -> FakeRepo:
    """autodev's PR #2 on its branch (pushed to the bare remote), as an earlier job left it."""
    repo = github.add_repo(REPO, clone_url=f"file://{remote}", writers={"alice"})
    git(remote, "branch", BRANCH, "main")
    head = git(remote, "rev-parse", BRANCH).strip()
    repo.pulls[NUMBER] = {
        "number": NUMBER, "node_id": "PR_2", "title": "Fix the README", "body": "", "draft": False,
        "state": "open", "head": {"ref": BRANCH, "sha": head}, "base": {"ref": "main", "sha": head},
    }  # fmt: skip
    return repo


def submitted_review(review_id: int) -> dict[str, Any]:
    data = as_app_delivery(payload("pull_request_review", "submitted.payload.json"), "alice")
    data["review"].update(id=review_id, state="commented", body="")
    data["pull_request"].update(number=NUMBER)
    data["pull_request"]["head"]["ref"] = BRANCH
    data["pull_request"]["base"]["ref"] = "main"
    return data


def comment_on(github: FakeGitHub, review_id: int, line: int, body: str) -> int:
    thread = github.add_review_comment(
        REPO, NUMBER, review_id=review_id, user="alice", path="README.md", line=line, body=body,
        diff_hunk=f"@@ -1 +1 @@\n+Helo World (line {line})",
    )  # fmt: skip
    return int(thread["comments"][0]["databaseId"])


def threads(repo: FakeRepo) -> list[dict[str, Any]]:
    return repo.review_threads[NUMBER]


async def test_a_review_with_three_comments_is_one_job_three_replies_with_the_commit_three_resolved(
    services: Services, remote: Path
) -> None:
    _settings, runtime, http, github, llm = services
    repo = open_pull(github, remote)
    ids = [comment_on(github, 900, line, f"Fix the spelling ({line})") for line in (1, 2, 3)]
    llm.reply_json(ONE_STEP)
    llm.reply_tool_calls(
        ("edit_file", {"path": "README.md", "old_text": "Helo", "new_text": "Hello"}),
        *[("review_comment", {"number": n, "addressed": True, "reply": f"Fixed #{n}."}) for n in (1, 2, 3)],
    )
    llm.reply_text("Fixed the README.")

    await deliver(http, "pull_request_review", submitted_review(900))
    await work_off_the_queue(runtime)

    [job] = await runtime.store.list_jobs()
    view = await runtime.store.view(job.id)
    assert view.state is JobState.SUCCEEDED, view.failure_reason
    for line in (1, 2, 3):
        assert f"README.md line {line}" in job.task and f"+Helo World (line {line})" in job.task
    assert "Fix the spelling (3)" in str(llm.requests[1]["messages"]), "the coder is given every comment"
    assert "review_comment" in [t["function"]["name"] for t in llm.requests[1]["tools"]]
    head = git(remote, "rev-parse", BRANCH).strip()
    assert git(remote, "show", f"{head}:README.md") == "Hello World\n"

    replies = github.calls_to("POST", rf"/repos/{REPO}/pulls/{NUMBER}/comments/\d+/replies")
    assert [c.path.split("/")[-2] for c in replies] == [str(i) for i in ids]
    commit_link = f"https://github.invalid/{REPO}/pull/{NUMBER}/commits/{head}"
    for n, call in enumerate(replies, start=1):
        hidden = f"<!-- autodev:review-reply job={job.id} -->"
        assert call.json["body"] == f"Fixed #{n}.\n\nChanged in [{head[:7]}]({commit_link}).\n\n{hidden}"
    resolved = github.graphql_calls("resolveReviewThread")
    assert [c.json["variables"]["threadId"] for c in resolved] == [t["id"] for t in threads(repo)]
    assert all(t["isResolved"] for t in threads(repo))

    # The round, on the check run and on the job page.
    final = list(repo.check_runs.values())[-1]
    assert final["conclusion"] == "success"
    assert final["output"]["title"].startswith("review by @alice: 3 comments · ")
    assert "Round: review by @alice: 3 comments" in final["output"]["summary"]
    [sticky] = [c for c in repo.comments.values() if c["issue_number"] == NUMBER]
    assert "### autodev · review by @alice: 3 comments · Succeeded" in sticky["body"].splitlines()
    page = await http.get(f"/jobs/{job.id}", params={"t": view.access_token})
    assert '<dd class="round">review by @alice: 3 comments</dd>' in page.text
    assert llm.remaining == 0


async def test_unaddressed_is_told_why_a_failing_reply_does_not_fail_the_job_a_rerun_posts_once(
    services: Services, remote: Path
) -> None:
    _settings, runtime, http, github, llm = services
    repo = open_pull(github, remote)
    first, second = (comment_on(github, 901, line, body) for line, body in ((1, "Typo"), (2, "Add a logo")))
    github.fail("POST", rf"/repos/{REPO}/pulls/{NUMBER}/comments/{first}/replies", times=3, status=403)
    llm.reply_json(ONE_STEP)
    llm.reply_tool_calls(
        ("edit_file", {"path": "README.md", "old_text": "Helo", "new_text": "Hello"}),
        ("review_comment", {"number": 1, "addressed": True, "reply": "Fixed the typo."}),
        ("review_comment", {"number": 7, "addressed": True, "reply": "There is no comment 7."}),
    )
    llm.reply_text("Fixed the typo; the logo is out of scope.")

    await deliver(http, "pull_request_review", submitted_review(901))
    await work_off_the_queue(runtime)

    [job] = await runtime.store.list_jobs()
    view = await runtime.store.view(job.id)
    assert view.state is JobState.SUCCEEDED, "a reply GitHub refuses does not fail the job"
    tool_answers = [m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "tool"]
    assert any("no review comment 7" in a for a in tool_answers), "an unknown number is refused to the model"
    [failed] = [e.data for e in view.events if e.type == "review_reply_failed"]
    assert failed["comment_id"] == first and failed["tries"] == 3 and "403" in failed["error"]
    [told] = [c for c in threads(repo)[1]["comments"] if "in_reply_to_id" in c]
    assert told["body"].startswith("Not addressed in this round")
    assert [t["isResolved"] for t in threads(repo)] == [False, False], "the reply failed, the other not done"
    page = await http.get(f"/jobs/{job.id}", params={"t": view.access_token})
    assert "review_reply_failed" in page.text

    # The worker died after posting the second reply, before recording it or the job's end. Run again: it
    # answers what is left, and finds the reply it posted (by its marker) instead of posting it twice.
    async with runtime.store.sessions() as session, session.begin():
        await session.execute(update(Job).where(Job.id == job.id).values(state=JobState.RUNNING.value))
        await session.execute(
            delete(JobEvent).where(JobEvent.job_id == job.id, JobEvent.type == "review_reply")
        )
    assert await run_job(job.id, runtime.engine_deps()) is JobState.SUCCEEDED

    replies = github.calls_to("POST", rf"/repos/{REPO}/pulls/{NUMBER}/comments/\d+/replies")
    assert [c.path.split("/")[-2] for c in replies] == [str(first)] * 3 + [str(second), str(first)]
    assert [t["isResolved"] for t in threads(repo)] == [True, False]
    assert sum("in_reply_to_id" in c for t in threads(repo) for c in t["comments"]) == 2
    recorded = [e.data for e in (await runtime.store.view(job.id)).events if e.type == "review_reply"]
    assert [(r["comment_id"], r.get("found_on_github")) for r in recorded] == [(second, True), (first, None)]
    assert llm.remaining == 0


async def test_a_comment_answered_without_a_code_change_links_no_commit(
    services: Services, remote: Path
) -> None:
    """The branch's old head is not "the change": a round that committed nothing says so instead."""
    _settings, runtime, http, github, llm = services
    repo = open_pull(github, remote)
    comment_on(github, 902, 1, "Is this line covered by a test?")
    llm.reply_json(ONE_STEP)
    llm.reply_tool_calls(
        ("review_comment", {"number": 1, "addressed": True, "reply": "Yes: tests/test_ok.py covers it."})
    )
    llm.reply_text("Nothing to change.")

    await deliver(http, "pull_request_review", submitted_review(902))
    await work_off_the_queue(runtime)

    [job] = await runtime.store.list_jobs()
    assert (await runtime.store.view(job.id)).state is JobState.SUCCEEDED
    [reply] = github.calls_to("POST", rf"/repos/{REPO}/pulls/{NUMBER}/comments/\d+/replies")
    assert reply.json["body"].startswith(
        "Yes: tests/test_ok.py covers it.\n\n(No commit: this round changed no code.)"
    )
    assert "/commits/" not in reply.json["body"]
    assert [t["isResolved"] for t in threads(repo)] == [True]
