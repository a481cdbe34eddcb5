"""One conversation per pull request, in the store: requests for a branch fold into one waiting job, a CI
fix replaces an older waiting CI fix, and two claims on one branch never both succeed (SQLite and
PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from engine.states import JobKind, JobState
from engine.store.conversations import CI_TRIGGER, WaitingBehind
from engine.store.db import SqliteWriter, make_engine, make_sessionmaker
from engine.store.jobs import JobLimits, JobRequest, JobStore

BRANCH = "autodev/7-widgets"


@pytest.fixture
async def any_store(any_database_url: str) -> AsyncIterator[JobStore]:
    engine = make_engine(any_database_url)
    store = JobStore(
        make_sessionmaker(engine), JobLimits(5.0, 300, 60), writer=SqliteWriter.for_url(any_database_url)
    )
    yield store
    await store.aclose()
    await engine.dispose()


def on_the_pr(key: str, task: str, *, trigger: str = "github_comment", **origin: object) -> JobRequest:
    return JobRequest(
        dedupe_key=key,
        trigger=trigger,
        repo="octo/widgets",
        title=f"Revise #7 ({key})",
        task=task,
        requester="alice",
        kind=JobKind.REVISE,
        base_branch="main",
        branch=BRANCH,
        pr_number=7,
        origin={"issue_number": 7, **origin},
    )


async def test_two_requests_while_a_job_runs_become_one_queued_job_carrying_both(any_store: JobStore) -> None:
    store = any_store
    [(running, _)] = await store.submit_many([on_the_pr("a", "Rename the flag.")])
    await store.transition(running, JobState.RUNNING)

    [(first, _)] = await store.submit_many([on_the_pr("b", "Add a test for the flag.")])
    [(second, _)] = await store.submit_many([on_the_pr("c", "Document the flag.")])

    queued = [j for j in await store.list_jobs(repo="octo/widgets") if j.state == JobState.QUEUED]
    assert [j.id for j in queued] == [second]
    assert "Add a test for the flag." in queued[0].task and "Document the flag." in queued[0].task
    assert queued[0].task.index("Add a test") < queued[0].task.index("Document"), "older request first"
    folded = await store.get(first)
    assert (folded.state, folded.failure_reason) == (JobState.CANCELLED, f"folded into {second}")
    assert (await store.events(first))[-1].data["replaced_by"] == second
    assert (await store.get(running)).state == JobState.RUNNING, "the running job is never touched"


async def test_requests_submitted_at_the_same_moment_while_a_job_runs_still_leave_one_waiting(
    any_store: JobStore,
) -> None:
    """PostgreSQL: two submits in flight at once each saw the waiting job but not each other's new one."""
    store = any_store
    [(running, _)] = await store.submit_many([on_the_pr("a", "Rename the flag.")])
    await store.transition(running, JobState.RUNNING)
    await store.submit_many([on_the_pr("b", "Add a test.")])

    await asyncio.gather(*(store.submit_many([on_the_pr(k, f"Request {k}.")]) for k in "cdef"))

    queued = [j for j in await store.list_jobs(repo="octo/widgets") if j.state == JobState.QUEUED]
    assert len(queued) == 1
    assert all(f"Request {k}." in queued[0].task for k in "cdef") and "Add a test." in queued[0].task


async def test_a_newer_ci_failure_supersedes_a_waiting_ci_fix_instead_of_folding_into_it(
    any_store: JobStore,
) -> None:
    store = any_store
    ci = {"trigger": CI_TRIGGER, "ci_fix": {"sha": "1" * 40}, "round": "CI fix 1 of 2"}
    [(older, _)] = await store.submit_many([on_the_pr("ci-1", "Check `lint` fails.", **ci)])  # type: ignore[arg-type]
    [(newer, _)] = await store.submit_many([on_the_pr("ci-2", "Check `tests` fails.", **ci)])  # type: ignore[arg-type]

    job = await store.get(newer)
    assert job.task == "Check `tests` fails.", "the old failure is out of date: not carried over"
    assert job.origin["replaces"] == [older]
    assert (await store.get(older)).failure_reason == f"superseded by {newer}"


async def test_a_revise_request_folds_a_waiting_ci_fix_and_keeps_its_round(any_store: JobStore) -> None:
    store = any_store
    ci = {"ci_fix": {"sha": "1" * 40}, "round": "CI fix 1 of 2"}
    [(fix, _)] = await store.submit_many([on_the_pr("ci-1", "Check `lint` fails.", trigger=CI_TRIGGER, **ci)])
    [(revise, _)] = await store.submit_many([on_the_pr("r", "Also rename the flag.")])

    job = await store.get(revise)
    assert "Check `lint` fails." in job.task and "Also rename the flag." in job.task
    assert job.origin["round"] == "CI fix 1 of 2" and job.origin["ci_fix"]["sha"] == "1" * 40
    assert (await store.get(fix)).state == JobState.CANCELLED


async def test_two_workers_claiming_two_jobs_of_one_branch_at_once_start_only_one(
    any_store: JobStore,
) -> None:
    """`submit` (a retry) does not fold, so two jobs of a branch can be queued; only one may start."""
    store = any_store
    first, _ = await store.submit(on_the_pr("x", "One."))
    second, _ = await store.submit(on_the_pr("y", "Two."))

    async def claim(job_id: str) -> str:
        try:
            await store.transition(job_id, JobState.RUNNING, unless_behind=True)
        except WaitingBehind as exc:
            return f"waits for {exc.blocker}"
        return "running"

    answers = await asyncio.gather(claim(second.id), claim(first.id))

    assert sorted(answers) == ["running", f"waits for {first.id}"]
    assert (await store.get(first.id)).state == JobState.RUNNING, "the older request goes first"
    assert await store.blocker_of(second.id) == first.id
    assert await store.next_on_branch("octo/widgets", BRANCH) == second.id


def review(*numbers: int, by: str = "alice") -> dict[str, object]:
    comments = [{"n": n, "comment_id": 100 * len(numbers) + n, "thread_id": f"T{n}"} for n in numbers]
    return {"by": by, "comments": comments}


def review_task(*numbers: int) -> str:
    return "\n\n".join(f"## Review comment {n} — flag.py line {n}\n@alice: fix {n}" for n in numbers)


async def test_two_reviews_folded_into_one_job_keep_every_comment_answerable(any_store: JobStore) -> None:
    """The waiting review's comments join the newer review's, numbered after them, task and origin alike,
    so the one job that runs replies in every thread."""
    store = any_store
    [(running, _)] = await store.submit_many([on_the_pr("a", "Rename the flag.")])
    await store.transition(running, JobState.RUNNING)

    await store.submit_many(
        [on_the_pr("r1", review_task(1, 2), trigger="github_review", review=review(1, 2))]
    )
    [(second, _)] = await store.submit_many(
        [on_the_pr("r2", review_task(1), trigger="github_review", review=review(1, by="bob"))]
    )

    job = await store.get(second)
    numbers = [(c["n"], c["comment_id"]) for c in job.origin["review"]["comments"]]
    assert numbers == [(1, 101), (2, 201), (3, 202)]
    assert "## Review comment 2 — flag.py line 1" in job.task  # the older review's first comment
    assert "## Review comment 3 — flag.py line 2" in job.task
    assert job.task.count("## Review comment 1 —") == 1
    assert job.origin["review"]["by"] == "bob"


async def test_a_review_folded_into_a_ci_fix_is_still_answered(any_store: JobStore) -> None:
    store = any_store
    [(running, _)] = await store.submit_many([on_the_pr("a", "Rename the flag.")])
    await store.transition(running, JobState.RUNNING)

    await store.submit_many([on_the_pr("r1", review_task(1), trigger="github_review", review=review(1))])
    [(fix, _)] = await store.submit_many([on_the_pr("ci", "The tests fail.", trigger=CI_TRIGGER)])

    job = await store.get(fix)
    assert [c["n"] for c in job.origin["review"]["comments"]] == [1]
    assert "## Review comment 1 — flag.py line 1" in job.task
