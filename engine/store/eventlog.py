"""The job's append-only event log: numbered events written with the job's columns, and the cancel flag.

Every append is one UPDATE of the job row (which takes the next numbers and reads the cancel flag) plus the
INSERT of the events, in one transaction, so numbers have no gaps or repeats under concurrent writers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from engine import events
from engine.errors import JobCancelled, JobNotFound
from engine.store.db import session_scope
from engine.store.models import Base, Job, JobEvent, Step, utcnow
from engine.views import JobEventView

# Core tables: the ORM's unit of work costs more than the statements themselves.
JOBS = Base.metadata.tables[Job.__tablename__]
JOB_EVENTS = Base.metadata.tables[JobEvent.__tablename__]
STEPS = Base.metadata.tables[Step.__tablename__]
# Cancel flags this store has read, per job: (flag, when). An entry goes when its job ends.
CANCEL_SEEN_MAX = 10_000


class EventLog:
    """Appends events (with the job columns and steps that change with them) and answers the cancel flag."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._cancel_seen: dict[str, tuple[bool, float]] = {}

    async def append_event(
        self,
        job_id: str,
        type: str,
        data: dict[str, Any] | None = None,
        *,
        fields: dict[str, Any] | None = None,
        steps: dict[int, dict[str, Any]] | None = None,
    ) -> JobEventView:
        """Append one event; in the same transaction set the job's columns `fields` (never `state`) and
        create or update the steps in `steps` ({index: columns})."""
        (event,) = await self.append_events(job_id, [(type, data or {})], fields=fields, steps=steps)
        return event

    async def append_events(
        self,
        job_id: str,
        new: Sequence[tuple[str, dict[str, Any]]],
        *,
        fields: dict[str, Any] | None = None,
        steps: dict[int, dict[str, Any]] | None = None,
        unless_cancelled: bool = False,
    ) -> list[JobEventView]:
        """Append events (numbered in order) with `fields` and `steps` as append_event, in one transaction.
        With `unless_cancelled`, nothing is written when the job's cancel flag is set: JobCancelled."""
        if fields and "state" in fields:
            raise ValueError("use transition() to change a job's state")
        async with session_scope(self.sessions) as session:
            appended = await self._append_many(
                session, job_id, new, fields=fields, unless_cancelled=unless_cancelled
            )
            for index, columns in (steps or {}).items():
                await _save_step(await session.connection(), job_id, index, dict(columns))
        return appended

    async def set_phase(
        self,
        job_id: str,
        phase: str,
        data: dict[str, Any] | None = None,
        *,
        fields: dict[str, Any] | None = None,
        steps: dict[int, dict[str, Any]] | None = None,
    ) -> JobEventView:
        """Set the job's phase and append its `phase` event (plus `fields` and `steps`, as append_event)."""
        return await self.append_event(
            job_id,
            events.PHASE,
            {"phase": phase, **(data or {})},
            fields={**(fields or {}), "phase": phase},
            steps=steps,
        )

    async def cancel_requested(self, job_id: str, *, max_age_s: float = 0.0) -> bool:
        """The job's cancel flag. With `max_age_s`, a value this store read from the job's row at most that
        many seconds ago (every event appended and every budget check reads it too) answers without a read."""
        if max_age_s > 0 and (seen := self._cancel_seen.get(job_id)) is not None:
            flag, at = seen
            if time.monotonic() - at <= max_age_s:
                return flag
        async with self.sessions() as session:
            value = await session.scalar(select(JOBS.c.cancel_requested).where(JOBS.c.id == job_id))
        self._saw_cancel(job_id, value)
        return bool(value)

    def _saw_cancel(self, job_id: str, flag: bool | None) -> None:
        if len(self._cancel_seen) >= CANCEL_SEEN_MAX and job_id not in self._cancel_seen:
            self._cancel_seen.clear()  # jobs handed back without an end; a cleared entry only costs a read
        self._cancel_seen[job_id] = (bool(flag), time.monotonic())

    async def _append(
        self,
        session: AsyncSession,
        job_id: str,
        type: str,
        data: dict[str, Any],
        *,
        fields: dict[str, Any] | None = None,
    ) -> JobEventView:
        (event,) = await self._append_many(session, job_id, [(type, data)], fields=fields)
        return event

    async def _append_many(
        self,
        session: AsyncSession,
        job_id: str,
        new: Sequence[tuple[str, dict[str, Any]]],
        *,
        fields: dict[str, Any] | None = None,
        unless_cancelled: bool = False,
    ) -> list[JobEventView]:
        """Append events; `fields` (column values or expressions) go into the same UPDATE of the job row,
        which also returns the cancel flag as of this write (and, `unless_cancelled`, writes nothing when
        it is set: JobCancelled)."""
        # Taking the next numbers with an UPDATE … RETURNING locks the job row (PostgreSQL) or the database
        # (SQLite) until commit, so concurrent appends queue up and the numbers have no gaps or repeats.
        # Core statements on the session's connection: the ORM's unit of work costs more than the statements.
        await session.flush()  # this transaction's pending ORM changes first, as an ORM statement would
        conn = await session.connection()
        values = {**(fields or {}), "last_seq": JOBS.c.last_seq + len(new), "updated_at": utcnow()}
        where = JOBS.c.id == job_id
        if unless_cancelled:
            where &= JOBS.c.cancel_requested.is_(False)
        row = (
            await conn.execute(
                update(JOBS).where(where).values(**values).returning(JOBS.c.last_seq, JOBS.c.cancel_requested)
            )
        ).one_or_none()
        if row is None:
            flag = await conn.scalar(select(JOBS.c.cancel_requested).where(JOBS.c.id == job_id))
            if flag is None:
                raise JobNotFound(job_id)
            self._saw_cancel(job_id, flag)
            raise JobCancelled("cancelled on request")
        first = row.last_seq - len(new) + 1
        rows = [{"job_id": job_id, "seq": first + i, "type": t, "data": d} for i, (t, d) in enumerate(new)]
        await conn.execute(insert(JOB_EVENTS), rows)
        self._saw_cancel(job_id, row.cancel_requested)
        return [JobEventView(seq=r["seq"], type=r["type"], data=r["data"]) for r in rows]

    async def save_step(self, job_id: str, index: int, **fields: Any) -> None:
        """Create or update step `index` of the job."""
        async with session_scope(self.sessions) as session:
            await _save_step(await session.connection(), job_id, index, fields)


async def _save_step(conn: AsyncConnection, job_id: str, index: int, fields: dict[str, Any]) -> None:
    """Update step `index` of the job, or create it (titled "Step n" unless `fields` has a title)."""
    where = (STEPS.c.job_id == job_id) & (STEPS.c.index == index)
    if fields:
        found = (
            await conn.execute(update(STEPS).where(where).values(**fields).returning(STEPS.c.id))
        ).first()
    else:
        found = (await conn.execute(select(STEPS.c.id).where(where))).first()
    if found is None:
        title = fields.pop("title", f"Step {index + 1}")
        await conn.execute(insert(STEPS).values(job_id=job_id, index=index, title=title, **fields))
