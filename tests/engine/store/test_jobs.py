"""The job store: one job per dedupe key, legal transitions only, gapless events, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from engine.store.db import SqliteWriter, make_engine, make_sessionmaker
from engine.store.jobs import IllegalTransition, JobLimits, JobRequest, JobStore
from engine.store.models import Job, JobState, utcnow
from engine.views import JobView

LIMITS = JobLimits(budget_usd=5.0, max_requests=300, max_minutes=60.0)


def request(key: str = "github:delivery-1", **overrides: object) -> JobRequest:
    values: dict[str, object] = {
        "dedupe_key": key,
        "trigger": "github_issue",
        "repo": "octo/widgets",
        "title": "Add a --verbose flag",
        "task": "Add a --verbose flag to the CLI.",
        "requester": "mona",
        "issue_number": 7,
    }
    values.update(overrides)
    return JobRequest.model_validate(values)


@pytest.fixture
async def any_store(any_database_url: str) -> AsyncIterator[JobStore]:
    engine = make_engine(any_database_url)
    store = JobStore(make_sessionmaker(engine), LIMITS, writer=SqliteWriter.for_url(any_database_url))
    yield store
    await store.aclose()
    await engine.dispose()


async def count_jobs(store: JobStore) -> int:
    async with store.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(Job))).scalar_one())


async def test_submit_creates_a_queued_job_with_its_first_event(any_store: JobStore) -> None:
    job, created = await any_store.submit(request())

    assert created
    assert job.state == JobState.QUEUED
    assert job.budget_usd == 5.0 and job.max_requests == 300
    assert len(job.access_token) >= 32
    events = await any_store.events(job.id)
    assert [(e.seq, e.type) for e in events] == [(1, "submitted")]


async def test_submit_twice_with_one_dedupe_key_gives_one_job(any_store: JobStore) -> None:
    first, created_first = await any_store.submit(request())
    second, created_second = await any_store.submit(request(title="a redelivery"))

    assert (created_first, created_second) == (True, False)
    assert second.id == first.id
    assert await count_jobs(any_store) == 1


async def test_twenty_concurrent_submits_with_one_key_give_one_job(any_store: JobStore) -> None:
    results = await asyncio.gather(*(any_store.submit(request("slack:same")) for _ in range(20)))

    assert sum(created for _, created in results) == 1
    assert len({job.id for job, _ in results}) == 1
    assert await count_jobs(any_store) == 1


async def test_request_overrides_the_default_limits(any_store: JobStore) -> None:
    job, _ = await any_store.submit(request(budget_usd=2.5, max_requests=10, max_minutes=5))

    assert (job.budget_usd, job.max_requests, job.max_minutes) == (2.5, 10, 5)


async def test_a_terminal_job_never_changes_again(any_store: JobStore) -> None:
    job, _ = await any_store.submit(request())
    await any_store.transition(job.id, JobState.RUNNING)
    await any_store.transition(job.id, JobState.SUCCEEDED)

    for target in (JobState.RUNNING, JobState.FAILED, JobState.QUEUED, JobState.CANCELLED):
        with pytest.raises(IllegalTransition):
            await any_store.transition(job.id, target)
    assert (await any_store.get(job.id)).state == JobState.SUCCEEDED


async def test_a_queued_job_cannot_succeed_without_running(any_store: JobStore) -> None:
    job, _ = await any_store.submit(request())

    with pytest.raises(IllegalTransition):
        await any_store.transition(job.id, JobState.SUCCEEDED)
    assert [e.type for e in await any_store.events(job.id)] == ["submitted"]


async def test_running_records_attempts_and_times(any_store: JobStore) -> None:
    job, _ = await any_store.submit(request())
    await any_store.transition(job.id, JobState.RUNNING, phase="preparing")
    await any_store.transition(job.id, JobState.FAILED, reason="tests stayed red")

    done = await any_store.get(job.id)
    assert done.attempts == 1
    assert done.started_at is not None and done.finished_at is not None
    assert done.finished_at >= done.started_at
    assert done.failure_reason == "tests stayed red"
    last = (await any_store.events(job.id))[-1]
    assert last.data == {"state": "failed", "reason": "tests stayed red"}


async def test_events_are_numbered_without_gaps_under_concurrent_appends(any_store: JobStore) -> None:
    job, _ = await any_store.submit(request())

    await asyncio.gather(*(any_store.append_event(job.id, "progress", {"n": n}) for n in range(40)))

    seqs = [e.seq for e in await any_store.events(job.id)]
    assert seqs == list(range(1, 42))


async def test_cancelling_a_queued_job_ends_it_at_once(any_store: JobStore) -> None:
    job, _ = await any_store.submit(request())

    cancelled, changed = await any_store.request_cancel(job.id, by="mona")

    assert changed
    assert cancelled.state == JobState.CANCELLED
    assert cancelled.failure_reason == "cancelled by mona"


async def test_cancelling_a_running_job_sets_the_flag_the_engine_checks(any_store: JobStore) -> None:
    job, _ = await any_store.submit(request())
    await any_store.transition(job.id, JobState.RUNNING)

    flagged, changed = await any_store.request_cancel(job.id, by="mona")

    assert changed and flagged.state == JobState.RUNNING
    assert await any_store.cancel_requested(job.id)
    _, again = await any_store.request_cancel(job.id, by="mona")
    assert not again


async def test_a_recent_read_of_the_cancel_flag_may_answer_a_fresh_read_always_reads(
    any_store: JobStore,
) -> None:
    job, _ = await any_store.submit(request())
    await any_store.transition(job.id, JobState.RUNNING)
    await any_store.append_event(job.id, "phase", {"phase": "coding"})  # reads the flag: not set
    web = JobStore(any_store.sessions, LIMITS)  # another process: this store's reads do not see it

    await web.request_cancel(job.id, by="mona")

    assert not await any_store.cancel_requested(job.id, max_age_s=60), "answered by the read just made"
    assert await any_store.cancel_requested(job.id), "without max_age_s the flag is read now"
    again = JobStore(any_store.sessions, LIMITS)
    await again.append_event(job.id, "phase", {"phase": "testing"})
    assert await again.cancel_requested(job.id, max_age_s=60), "the event's write read the flag"
    assert (await again.budget_state(job.id)).cancel_requested


async def test_an_event_sets_columns_and_steps_in_its_own_transaction(any_store: JobStore) -> None:
    job, _ = await any_store.submit(request())
    await any_store.transition(job.id, JobState.RUNNING, phase="preparing")

    await any_store.set_phase(job.id, "planning", fields={"branch": "b"}, steps={0: {"title": "One"}})
    await any_store.append_event(job.id, "plan", {}, steps={0: {"state": "running"}, 1: {}})

    view = await any_store.view(job.id)
    assert (view.phase, view.branch) == ("planning", "b")
    assert [(s.index, s.title, s.state) for s in view.steps] == [
        (0, "One", "running"),
        (1, "Step 2", "pending"),
    ]
    assert [e.seq for e in view.events] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="transition"):
        await any_store.append_event(job.id, "x", {}, fields={"state": "succeeded"})


async def test_events_written_unless_cancelled_are_not_written_once_it_is(any_store: JobStore) -> None:
    from engine.errors import JobCancelled

    job, _ = await any_store.submit(request())
    await any_store.transition(job.id, JobState.RUNNING)
    both = await any_store.append_events(
        job.id, [("phase", {"phase": "coding"}), ("step_started", {"index": 0})], unless_cancelled=True
    )
    assert [(e.seq, e.type) for e in both] == [(3, "phase"), (4, "step_started")]
    await JobStore(any_store.sessions, LIMITS).request_cancel(job.id, by="mona")

    with pytest.raises(JobCancelled):
        await any_store.append_events(
            job.id,
            [("phase", {"phase": "coding"})],
            fields={"phase": "coding"},
            steps={1: {}},
            unless_cancelled=True,
        )

    view = await any_store.view(job.id)
    assert [e.type for e in view.events][-1] == "cancel_requested" and view.steps == []
    assert await any_store.cancel_requested(job.id, max_age_s=60), "the refused write read the flag"


async def test_bad_requests_are_refused_before_anything_is_stored() -> None:
    with pytest.raises(ValueError, match="repo"):
        request(repo="not a repo")
    with pytest.raises(ValueError, match="budget_usd"):
        request(budget_usd=-1)


async def test_a_reporter_is_behind_only_when_it_missed_the_jobs_end(any_store: JobStore) -> None:
    since = utcnow() - timedelta(minutes=5)
    jobs = []
    for key in ("missed-the-end", "missed-the-middle", "caught-up", "still-running"):
        job, _ = await any_store.submit(request(key))
        await any_store.transition(job.id, JobState.RUNNING)
        jobs.append(job.id)
    missed_end, missed_middle, caught_up, running = jobs

    middle = await any_store.append_event(missed_middle, "plan", {})
    await any_store.append_event(missed_middle, "reporter_error", {"reporter": "slack", "seq": middle.seq})
    await any_store.append_event(running, "reporter_error", {"reporter": "slack", "seq": 1})
    for job_id in (missed_end, missed_middle, caught_up):
        end = await any_store.transition(job_id, JobState.SUCCEEDED)
        if job_id != missed_middle:
            await any_store.append_event(job_id, "reporter_error", {"reporter": "github", "seq": end.seq})
    await any_store.append_event(caught_up, "reporter_caught_up", {"reporter": "github", "seq": end.seq})

    assert await any_store.reporters_behind(since) == [(missed_end, "github")]
    assert await any_store.reporters_behind(utcnow() + timedelta(seconds=1)) == [], "ended too long ago"


async def test_submitting_many_at_once_answers_as_one_by_one_would(any_store: JobStore) -> None:
    old, _ = await any_store.submit(request("seen-before"))
    keys = ["a", "seen-before", "b", "a", "c"]

    answers = await any_store.submit_many([request(k) for k in keys])

    assert [created for _, created in answers] == [True, False, True, False, True]
    assert answers[1][0] == old.id and answers[3][0] == answers[0][0]
    assert await count_jobs(any_store) == 4
    for job_id, _ in answers:
        assert [(e.seq, e.type) for e in await any_store.events(job_id)] == [(1, "submitted")]
    job = await any_store.get(answers[2][0])
    assert (job.dedupe_key, job.state, job.budget_usd) == ("b", JobState.QUEUED, LIMITS.budget_usd)


async def test_a_job_written_in_a_batch_reads_back_as_the_one_by_one_job(any_store: JobStore) -> None:
    """On SQLite the batch goes through the writer thread's own connection (engine/db.py SqliteWriter);
    what it stores — defaults, JSON, times — must be what the ORM stores."""
    origin = {"reaction": ["issue", None], "issue_number": 7, "note": "naïve ✓"}
    single, _ = await any_store.submit(request("one-by-one", origin=origin, installation_id=2**40))
    [(batched_id, _)] = await any_store.submit_many(
        [request("batched", origin=origin, installation_id=2**40)]
    )

    def comparable(view: JobView) -> dict[str, object]:
        unique = ("id", "access_token", "created_at", "updated_at", "events")
        data = {k: v for k, v in asdict(view).items() if k not in unique}
        data["events"] = [(e.seq, e.type, e.data) for e in view.events]
        return data

    one, batched = await any_store.view(single.id), await any_store.view(batched_id)
    assert comparable(batched) == comparable(one)
    assert abs(batched.created_at - one.created_at) < timedelta(seconds=5)
    assert one.origin["note"] == "naïve ✓" and one.installation_id == 2**40


def test_only_a_sqlite_file_gets_a_writer_thread() -> None:
    assert SqliteWriter.for_url("sqlite+aiosqlite:///:memory:") is None
    assert SqliteWriter.for_url("sqlite+aiosqlite://") is None
    assert SqliteWriter.for_url("postgresql+asyncpg://postgres@127.0.0.1/test") is None


async def test_two_batches_racing_on_the_same_keys_make_each_job_once(any_store: JobStore) -> None:
    keys = [f"race-{n}" for n in range(10)]
    first, second = await asyncio.gather(
        any_store.submit_many([request(k) for k in keys]),
        any_store.submit_many([request(k) for k in reversed(keys)]),
    )
    assert [job_id for job_id, _ in first] == [job_id for job_id, _ in reversed(second)]
    assert sum(created for _, created in first + second) == 10
    assert await count_jobs(any_store) == 10
