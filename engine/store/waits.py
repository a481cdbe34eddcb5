"""A job that waits for a person: entering `waiting` and leaving it, each in one transaction.

What the job waits for lives in `origin["waiting"]`: {kind: question | approval, id, text, since,
deadline, hours}. Leaving checks, under the job row's lock, that the job still waits for that kind of
answer, so two answers (or a redelivered one) resume it once. Lookups here read the `state` index
only: few jobs wait at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, or_, select

from engine import events
from engine.errors import IllegalTransition
from engine.states import JobState
from engine.store.db import session_scope
from engine.store.eventlog import JOBS
from engine.store.models import Job, utcnow
from engine.views import JobEventView

if TYPE_CHECKING:
    from engine.store.jobs import JobStore

MAX_QUESTIONS = 2  # a job asks at most this many questions; then the planner must plan


def waiting_info(origin: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the job waits for, when it waits (else None)."""
    info = (origin or {}).get("waiting")
    return info if isinstance(info, dict) and info.get("kind") else None


def questions_asked(origin: dict[str, Any] | None) -> int:
    return int((origin or {}).get("questions_asked") or 0)


async def start_waiting(
    store: JobStore,
    job_id: str,
    *,
    kind: str,
    text: str,
    timeout_hours: float,
    first: tuple[str, dict[str, Any]],
) -> list[JobEventView]:
    """running → waiting with the event `first` (question / awaiting_approval) and the state event."""
    now = utcnow()
    deadline = now + timedelta(hours=timeout_hours)
    async with session_scope(store.sessions) as session:
        conn = await session.connection()
        row = (
            await conn.execute(
                select(JOBS.c.state, JOBS.c.origin).where(JOBS.c.id == job_id).with_for_update()
            )
        ).one()
        if row.state != JobState.RUNNING.value:
            raise IllegalTransition(job_id, JobState(row.state), JobState.WAITING)
        origin = dict(row.origin or {})
        wait_id = int(origin.get("waiting_seen") or 0) + 1
        origin["waiting"] = {
            "kind": kind,
            "id": wait_id,
            "text": text,
            "since": now.isoformat(),
            "deadline": deadline.isoformat(),
            "hours": timeout_hours,
        }
        origin["waiting_seen"] = wait_id
        if kind == "question":
            origin["questions_asked"] = questions_asked(origin) + 1
        state = {"state": JobState.WAITING.value, "kind": kind, "deadline": deadline.isoformat()}
        fields = {"state": JobState.WAITING.value, "phase": None, "origin": origin}
        return list(await store._append_many(session, job_id, [first, (events.STATE, state)], fields=fields))


async def stop_waiting(
    store: JobStore,
    job_id: str,
    *,
    kind: str,
    event: tuple[str, dict[str, Any]],
    task_addition: str | None = None,
    origin_update: dict[str, Any] | None = None,
) -> list[JobEventView] | None:
    """waiting (for `kind`) → queued with `event` (answered / approved); None when the job does not wait
    for that any more (answered already, cancelled, timed out). The time spent waiting does not count
    against the job's time limit: its start moves forward by as much."""
    async with session_scope(store.sessions) as session:
        conn = await session.connection()
        row = (
            await conn.execute(
                select(JOBS.c.state, JOBS.c.origin, JOBS.c.task, JOBS.c.started_at, JOBS.c.cancel_requested)
                .where(JOBS.c.id == job_id)
                .with_for_update()
            )
        ).one_or_none()
        if row is None or row.state != JobState.WAITING.value or row.cancel_requested:
            return None
        origin = dict(row.origin or {})
        info = waiting_info(origin)
        if info is None or info["kind"] != kind:
            return None
        origin.pop("waiting")
        origin.update(origin_update or {})
        fields: dict[str, Any] = {"state": JobState.QUEUED.value, "origin": origin}
        if task_addition:
            fields["task"] = f"{row.task}\n\n{task_addition}"
        since = datetime.fromisoformat(info["since"])
        if row.started_at is not None:
            started = row.started_at if row.started_at.tzinfo else row.started_at.replace(tzinfo=since.tzinfo)
            fields["started_at"] = started + (utcnow() - since)
        state = (events.STATE, {"state": JobState.QUEUED.value})
        return list(await store._append_many(session, job_id, [event, state], fields=fields))


async def waiting_jobs(store: JobStore) -> list[Job]:
    async with store.sessions() as session:
        rows = await session.scalars(select(Job).where(Job.state == JobState.WAITING.value))
        return list(rows)


def _waiting_on(repo: str, number: int) -> ColumnElement[bool]:
    """Waiting jobs on issue or pull request `number` of `repo` (the `state` index narrows it)."""
    return and_(
        Job.state == JobState.WAITING.value,
        Job.repo == repo,
        or_(Job.issue_number == number, Job.pr_number == number),
    )


async def waiting_on(store: JobStore, repo: str, number: int) -> Job | None:
    """The job waiting on issue or pull request `number` of `repo`, if one does (the newest)."""
    async with store.sessions() as session:
        rows: Sequence[Job] = (
            await session.scalars(
                select(Job).where(_waiting_on(repo, number)).order_by(Job.created_at.desc()).limit(1)
            )
        ).all()
    return rows[0] if rows else None


async def waits_on(store: JobStore, repo: str, number: int) -> bool:
    """Whether a job waits on issue or pull request `number` of `repo`: the webhook's one lookup for a
    comment that names no command (the `state` index narrows it to the few waiting jobs)."""
    async with store.sessions() as session:
        found = await session.scalar(select(Job.id).where(_waiting_on(repo, number)).limit(1))
    return found is not None
