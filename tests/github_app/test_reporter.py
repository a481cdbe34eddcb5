"""GitHubReporter: one reaction, one sticky comment edited in place, a check run that follows the head."""

from __future__ import annotations

import asyncio

import pytest

from engine import events
from engine.ports import JobEventView
from engine.settings import Settings
from engine.store.jobs import JobRequest, JobStore
from engine.store.models import JobState
from github_app import GitHubApp, GitHubReporter
from tests.github_app.conftest import INSTALLATION, REPO
from tests.support.fake_github import FakeGitHub

PLAN = {"steps": [{"title": "Fix the typo"}, {"title": "Add a test"}]}


async def new_job(store: JobStore, **origin: object) -> str:
    job, _ = await store.submit(
        JobRequest(
            dedupe_key="github:r1",
            trigger="github_issue",
            repo=REPO,
            title="Spelling error",
            task="Fix it",
            requester="alice",
            installation_id=INSTALLATION,
            issue_number=1,
            origin={"issue_number": 1, "reaction": ["issue", None], **origin},
        )
    )
    return job.id


async def emit(reporter: GitHubReporter, store: JobStore, job_id: str, event: JobEventView) -> None:
    # As the runner does: a view without the event list, so the reporter works from the job row.
    await reporter.on_event(await store.view(job_id, with_events=False), event)


async def push(store: JobStore, job_id: str, sha: str) -> JobEventView:
    await store.update(job_id, head_sha=sha)  # engine/publish.py records the head, then emits `pushed`
    return await store.append_event(job_id, events.PUSHED, {"branch": "autodev/1-x", "head_sha": sha})


@pytest.fixture
def reporter(gh_app: GitHubApp) -> GitHubReporter:
    assert gh_app.reporter is not None
    return gh_app.reporter


async def test_a_job_is_reported_with_one_reaction_one_edited_comment_and_a_check_run_that_ends_green(
    reporter: GitHubReporter, store: JobStore, github: FakeGitHub, gh_settings: Settings
) -> None:
    repo = github.add_repo(REPO)
    job_id = await new_job(store)
    await emit(reporter, store, job_id, await store.transition(job_id, JobState.RUNNING, phase="planning"))
    assert [r["content"] for r in repo.reactions] == ["eyes"]
    assert github.calls_to("POST", rf"/repos/{REPO}/issues/1/reactions")
    assert repo.check_runs == {}  # nothing pushed yet

    await store.update(job_id, plan=PLAN)
    await store.save_step(job_id, 0, title="Fix the typo", state="done", commit_sha="c" * 40)
    await store.save_step(job_id, 1, title="Add a test", state="running")
    await emit(reporter, store, job_id, await push(store, job_id, "c" * 40))
    [run] = repo.check_runs.values()
    assert run["name"] == "autodev" and run["head_sha"] == "c" * 40 and run["external_id"] == job_id
    assert run["status"] == "in_progress" and run["actions"][0]["identifier"] == "cancel"
    job = await store.get(job_id)
    assert run["details_url"] == f"{gh_settings.public_url}/jobs/{job_id}?t={job.access_token}"
    assert "- [x] ✅ 1. Fix the typo" in run["output"]["summary"]
    assert "- [ ] 🔄 2. Add a test" in run["output"]["summary"]

    await store.save_step(job_id, 1, state="done")
    await store.update(job_id, pr_url="https://github.invalid/pr/7")
    await emit(reporter, store, job_id, await store.transition(job_id, JobState.SUCCEEDED))

    [comment] = repo.comments.values()  # one sticky comment, edited in place
    assert len(github.calls_to("POST", rf"/repos/{REPO}/issues/1/comments")) == 1
    assert len(github.calls_to("PATCH", rf"/repos/{REPO}/issues/comments/\d+")) == 2
    assert "https://github.invalid/pr/7" in comment["body"] and "Succeeded" in comment["body"]
    assert run["status"] == "completed" and run["conclusion"] == "success" and run["actions"] == []
    assert len(repo.reactions) == 1
    state = (await store.get(job_id)).reporter_state["github"]
    assert state["comment_id"] == comment["id"] and state["check_run_id"] == run["id"]


async def test_updates_are_coalesced_but_the_final_state_is_always_sent(
    reporter: GitHubReporter, store: JobStore, github: FakeGitHub
) -> None:
    github.add_repo(REPO)
    job_id = await new_job(store)
    await emit(reporter, store, job_id, await store.transition(job_id, JobState.RUNNING))
    before = len(github.calls)
    for index in range(3):
        await emit(reporter, store, job_id, await store.set_phase(job_id, "coding", {"step": index}))
    assert len(github.calls) == before  # within 2 s: held back
    await emit(
        reporter, store, job_id, await store.transition(job_id, JobState.FAILED, reason="tests stay red")
    )
    [comment] = github.repos[REPO].comments.values()
    assert "Failed: tests stay red" in comment["body"] and "retry" in comment["body"]


async def test_a_held_back_update_is_sent_when_the_interval_is_over(
    reporter: GitHubReporter, store: JobStore, github: FakeGitHub
) -> None:
    repo = github.add_repo(REPO)
    job_id = await new_job(store)
    await emit(reporter, store, job_id, await store.transition(job_id, JobState.RUNNING, phase="planning"))
    await store.update(job_id, plan=PLAN)
    await emit(reporter, store, job_id, await store.append_event(job_id, events.PLAN, PLAN))
    [comment] = repo.comments.values()
    assert "Add a test" not in comment["body"]  # held back
    for _ in range(100):  # the trailing update lands about 2 s after the first one
        if "Add a test" in comment["body"]:
            break
        await asyncio.sleep(0.05)
    assert "- [ ] ⏳ 2. Add a test" in comment["body"]


async def test_the_check_run_moves_to_each_new_head_and_the_old_one_ends_neutral(
    reporter: GitHubReporter, store: JobStore, github: FakeGitHub
) -> None:
    repo = github.add_repo(REPO)
    job_id = await new_job(store)
    await store.transition(job_id, JobState.RUNNING)
    await emit(reporter, store, job_id, await push(store, job_id, "1" * 40))
    await emit(reporter, store, job_id, await push(store, job_id, "2" * 40))
    first, second = repo.check_runs.values()
    assert (first["head_sha"], first["status"], first["conclusion"]) == ("1" * 40, "completed", "neutral")
    assert second["head_sha"] == "2" * 40 and second["status"] == "in_progress"
    await emit(reporter, store, job_id, await store.transition(job_id, JobState.FAILED, reason="budget"))
    assert second["conclusion"] == "failure" and "budget" in second["output"]["title"]
    assert [a["identifier"] for a in second["actions"]] == ["retry"]


async def test_a_second_worker_reuses_the_comment_and_check_run_it_finds_in_reporter_state(
    gh_app: GitHubApp, store: JobStore, github: FakeGitHub
) -> None:
    repo = github.add_repo(REPO)
    job_id = await new_job(store)
    await store.transition(job_id, JobState.RUNNING)
    first = gh_app.reporter
    assert first is not None
    await emit(first, store, job_id, await push(store, job_id, "1" * 40))
    again = GitHubReporter(first.api, store, first.settings)  # a fresh process, same job
    await emit(again, store, job_id, await store.transition(job_id, JobState.CANCELLED))
    assert len(repo.comments) == 1 and len(repo.check_runs) == 1 and len(repo.reactions) == 1
    [run] = repo.check_runs.values()
    assert run["conclusion"] == "cancelled"


async def test_a_comment_trigger_gets_its_reaction_on_the_comment(
    reporter: GitHubReporter, store: JobStore, github: FakeGitHub
) -> None:
    github.add_repo(REPO)
    job_id = await new_job(store, reaction=["comment", 555])
    await emit(reporter, store, job_id, await store.transition(job_id, JobState.RUNNING))
    assert github.calls_to("POST", rf"/repos/{REPO}/issues/comments/555/reactions")


async def test_rate_limits_are_waited_out_and_server_errors_retried(
    reporter: GitHubReporter, store: JobStore, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = github.add_repo(REPO)
    github.fail(
        "POST", rf"/repos/{REPO}/issues/1/comments", times=1, status=403, headers={"Retry-After": "0"}
    )
    github.fail("POST", rf"/repos/{REPO}/check-runs", times=2, status=502)
    job_id = await new_job(store)
    await store.transition(job_id, JobState.RUNNING)
    await emit(reporter, store, job_id, await push(store, job_id, "1" * 40))
    assert len(repo.comments) == 1 and len(repo.check_runs) == 1
    assert len(github.calls_to("POST", rf"/repos/{REPO}/check-runs")) == 3


async def test_a_github_that_keeps_failing_raises_to_the_runner_which_logs_it(
    reporter: GitHubReporter, store: JobStore, github: FakeGitHub
) -> None:
    github.add_repo(REPO)
    github.fail("POST", rf"/repos/{REPO}/issues/1/comments", times=99, status=500)
    job_id = await new_job(store)
    with pytest.raises(Exception, match="500"):
        await emit(reporter, store, job_id, await store.transition(job_id, JobState.RUNNING))
    assert len(github.calls_to("POST", rf"/repos/{REPO}/issues/1/comments")) == 4  # bounded


async def test_reporter_for_only_serves_github_jobs_with_an_installation(
    gh_app: GitHubApp, store: JobStore
) -> None:
    job_id = await new_job(store)
    assert gh_app.reporter_for(await store.view(job_id)) is gh_app.reporter
    local, _ = await store.submit(
        JobRequest(dedupe_key="cli", trigger="cli", repo="local:/tmp/x", title="t", task="t", requester="me")
    )
    assert gh_app.reporter_for(await store.view(local.id)) is None
