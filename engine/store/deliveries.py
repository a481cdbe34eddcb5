"""GitHub deliveries, stored before anything is decided: the webhook's dedupe and the worker's to-do list.

A signed delivery that may trigger something is inserted here (in the web side's group commit) and answered
2xx; the worker then decides what it means, which may take GitHub (the sender's permission, a pull request)
and so retries, and records how it ended. Its id and the SHA-256 of its signed body are both unique, so a
redelivery and the same body replayed under a new X-GitHub-Delivery find the stored one, for as long as the
row is kept (DEDUPE_WINDOW; the reconciler purges older ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.store.db import SqliteWriter, session_scope
from engine.store.models import Base, GitHubDelivery, utcnow

DELIVERIES = Base.metadata.tables[GitHubDelivery.__tablename__]
DEDUPE_WINDOW = timedelta(hours=72)
PENDING, DONE, FAILED = "pending", "done", "failed"


@dataclass(frozen=True, slots=True)
class NewDelivery:
    id: str
    body_sha256: str
    event: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    id: str
    event: str
    payload: dict[str, Any]
    state: str
    received_at: datetime


class Deliveries:
    """Each call is one short transaction; `store_many` is what the web side's intake batches."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, writer: SqliteWriter | None = None
    ) -> None:
        self.sessions = sessions
        self.writer = writer

    @property
    def concurrent_writers(self) -> bool:
        bind = self.sessions.kw.get("bind")
        return bind is not None and bind.dialect.name != "sqlite"

    async def store_many(self, deliveries: Sequence[NewDelivery]) -> list[tuple[str, bool]]:
        """Insert the deliveries not seen before, in one transaction. For each, in order: the id of the
        stored delivery it is (itself, or the earlier one with its id or its body) and whether it is new."""
        try:
            if self.writer is not None:
                return await self.writer.run(lambda conn: self._insert_new(conn, deliveries))
            async with self.sessions() as session, session.begin():
                conn = await session.connection()
                return await conn.run_sync(self._insert_new, deliveries)
        except IntegrityError:
            # Another process stored one of them meanwhile (PostgreSQL): settle them one at a time.
            return [await self._store_one(delivery) for delivery in deliveries]

    async def _store_one(self, delivery: NewDelivery) -> tuple[str, bool]:
        for _ in range(2):
            try:
                async with session_scope(self.sessions) as session:
                    conn = await session.connection()
                    [answer] = await conn.run_sync(self._insert_new, [delivery])
                    return answer
            except IntegrityError:
                continue  # stored by another process between the read and the insert: read again
        raise RuntimeError(f"delivery {delivery.id} neither stored nor found")

    def _insert_new(self, conn: Connection, deliveries: Sequence[NewDelivery]) -> list[tuple[str, bool]]:
        ids = list({d.id for d in deliveries})
        hashes = list({d.body_sha256 for d in deliveries})
        found = conn.execute(
            select(DELIVERIES.c.id, DELIVERIES.c.body_sha256).where(
                or_(DELIVERIES.c.id.in_(ids), DELIVERIES.c.body_sha256.in_(hashes))
            )
        )
        by_id: dict[str, str] = {}
        by_body: dict[str, str] = {}
        for row_id, body in found:
            by_id[row_id] = row_id
            by_body[body] = row_id
        rows: list[dict[str, Any]] = []
        answers: list[tuple[str, bool]] = []
        now = utcnow()
        for d in deliveries:
            known = by_id.get(d.id) or by_body.get(d.body_sha256)
            if known is not None:
                answers.append((known, False))
                continue
            by_id[d.id] = by_body[d.body_sha256] = d.id
            row = {"id": d.id, "body_sha256": d.body_sha256, "event": d.event, "payload": d.payload}
            rows.append(row | {"state": PENDING, "received_at": now})
            answers.append((d.id, True))
        if rows:
            # In key order, so two batches with the same new keys (PostgreSQL) wait on each other, never
            # deadlock: the later one fails on the unique key and settles one at a time.
            conn.execute(insert(DELIVERIES), sorted(rows, key=lambda row: str(row["id"])))
        return answers

    async def get(self, delivery_id: str) -> StoredDelivery | None:
        async with self.sessions() as session:
            row = await session.get(GitHubDelivery, delivery_id)
        if row is None:
            return None
        return StoredDelivery(row.id, row.event, dict(row.payload), row.state, row.received_at)

    async def finish(self, delivery_id: str, state: str, outcome: str, *, job_id: str | None = None) -> None:
        """Record how the delivery ended (`done` or `failed`) and why."""
        async with session_scope(self.sessions) as session:
            await session.execute(
                update(DELIVERIES)
                .where(DELIVERIES.c.id == delivery_id)
                .values(state=state, outcome=outcome[:2000], job_id=job_id, finished_at=utcnow())
            )

    async def pending_ids(self, received_before: datetime, *, limit: int = 500) -> list[str]:
        """Deliveries still waiting for the worker, received before the given time (oldest first)."""
        query = (
            select(DELIVERIES.c.id)
            .where(DELIVERIES.c.state == PENDING, DELIVERIES.c.received_at < received_before)
            .order_by(DELIVERIES.c.received_at)
            .limit(limit)
        )
        async with self.sessions() as session:
            return list(await session.scalars(query))

    async def purge(self, received_before: datetime) -> int:
        """Forget finished deliveries received before the given time (their dedupe window is over)."""
        async with session_scope(self.sessions) as session:
            result = await session.execute(
                delete(DELIVERIES).where(
                    DELIVERIES.c.state != PENDING, DELIVERIES.c.received_at < received_before
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)
