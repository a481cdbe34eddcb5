"""A waiting job: entered from `running` only, left once per wait however many answers arrive at once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from engine import events
from engine.errors import IllegalTransition
from engine.pipeline.actions import cancel_job
from engine.pipeline.waiting import answer_question, approve_plan
from engine.store.jobs import JobStore
from engine.store.models import JobState, utcnow
from engine.store.waits import start_waiting, waiting_on, waits_on
from tests.engine.store.test_jobs import any_store as any_store
from tests.engine.store.test_jobs import request
from tests.support.recording_queue import RecordingQueue


async def waiting_job(store: JobStore, kind: str = "question", key: str = "k") -> str:
    job, _ = await store.submit(request(key))
    await store.transition(job.id, JobState.RUNNING)
    await start_waiting(
        store, job.id, kind=kind, text="Which one?", timeout_hours=72, first=(events.QUESTION, {})
    )
    return job.id


async def test_concurrent_answers_resume_the_job_once_with_one_answer(any_store: JobStore) -> None:
    job_id = await waiting_job(any_store)
    queue = RecordingQueue()

    results = await asyncio.gather(
        *[
            answer_question(any_store, queue, job_id, text=f"answer {i}", by=f"@w{i}", via="github")
            for i in range(5)
        ]
    )

    assert sorted(results) == [False, False, False, False, True]
    view = await any_store.view(job_id)
    assert view.state is JobState.QUEUED and queue.enqueued == [job_id]
    [answered] = [e for e in view.events if e.type == events.ANSWERED]
    assert view.task.endswith(f"Question from autodev: Which one?\nAnswer from {answered.data['by']}: "
                              f"{answered.data['text']}")  # fmt: skip
    assert "waiting" not in view.origin and view.origin["questions_asked"] == 1


async def test_the_time_spent_waiting_does_not_count_against_the_time_limit(any_store: JobStore) -> None:
    job_id = await waiting_job(any_store)
    job = await any_store.get(job_id)
    started = job.started_at
    assert started is not None
    since = (utcnow() - timedelta(hours=3)).isoformat()
    await any_store.update(
        job_id, origin={**job.origin, "waiting": {**job.origin["waiting"], "since": since}}
    )

    assert await answer_question(any_store, None, job_id, text="A", by="@w", via="github")

    moved = (await any_store.get(job_id)).started_at
    assert moved is not None and moved - started >= timedelta(hours=2, minutes=59)


async def test_an_answer_does_not_approve_a_plan_nor_an_approval_answer_a_question(
    any_store: JobStore,
) -> None:
    question = await waiting_job(any_store, "question", "q")
    plan = await waiting_job(any_store, "approval", "p")

    assert not await approve_plan(any_store, None, question, by="@w", via="comment")
    assert not await answer_question(any_store, None, plan, text="yes", by="@w", via="github")
    assert (await any_store.get(question)).state == JobState.WAITING
    assert await approve_plan(any_store, None, plan, by="@w", via="comment", amendment="also docs")
    job = await any_store.get(plan)
    assert job.origin["approved"] == {"by": "@w", "via": "comment"}
    assert job.task.endswith("Changes to the plan from @w, who approved it: also docs")


async def test_only_a_running_job_starts_waiting(any_store: JobStore) -> None:
    job, _ = await any_store.submit(request("queued"))
    with pytest.raises(IllegalTransition):
        await start_waiting(
            any_store, job.id, kind="question", text="?", timeout_hours=1, first=(events.QUESTION, {})
        )


async def test_cancel_ends_a_waiting_job_at_once_and_then_nothing_resumes_it(any_store: JobStore) -> None:
    job_id = await waiting_job(any_store)
    queue = RecordingQueue()

    job = await cancel_job(any_store, queue, job_id, by="slack:U1")

    assert job.state == JobState.CANCELLED and job.failure_reason == "cancelled by slack:U1"
    assert queue.aborted == [], "nothing runs a waiting job: nothing to abort"
    assert not await answer_question(any_store, queue, job_id, text="late", by="@w", via="github")
    assert queue.enqueued == []


async def test_the_webhook_lookup_finds_only_jobs_waiting_on_that_issue(any_store: JobStore) -> None:
    job_id = await waiting_job(any_store)
    assert await waits_on(any_store, "octo/widgets", 7)
    assert not await waits_on(any_store, "octo/widgets", 8)
    assert not await waits_on(any_store, "octo/other", 7)
    found = await waiting_on(any_store, "octo/widgets", 7)
    assert found is not None and found.id == job_id
    deadline = datetime.fromisoformat(found.origin["waiting"]["deadline"])
    assert timedelta(hours=71) < deadline - utcnow() <= timedelta(hours=72)
    await answer_question(any_store, None, job_id, text="A", by="@w", via="github")
    assert not await waits_on(any_store, "octo/widgets", 7)
