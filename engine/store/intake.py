"""Intake: requests stored and queued with group commit, for the paths that take bursts.

The webhook stores GitHub deliveries through one (`Intake.for_deliveries`); the worker's trigger handling
stores the jobs they become through another (`Intake.for_jobs`).

Requests that arrive while the commits in flight are busy wait for one to finish and then share the next
transaction and one queue round trip. An idle intake commits a lone request at once (no timer, so no added
latency); under load a batch forms by itself and the per-request cost of the database and Redis is shared.
Each caller still hears back only once its request is durable in the database and on the queue.

SQLite has one writer at a time, so one commit is in flight; PostgreSQL takes several at once, and there a
commit mostly waits for the WAL to reach the disk, so a few run side by side.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from engine.ports import JobQueue
from engine.store.deliveries import Deliveries, NewDelivery
from engine.store.jobs import JobRequest, JobStore

log = logging.getLogger(__name__)

MAX_BATCH = 128
CONCURRENT_COMMITS = 4  # where the database takes concurrent writers

R = TypeVar("R")
# Stores a batch in one transaction: for each request, in order, the id it is stored as and whether it is new.
StoreMany = Callable[[Sequence[R]], Awaitable[list[tuple[str, bool]]]]
EnqueueMany = Callable[[Sequence[str]], Awaitable[None]]


class Intake(Generic[R]):
    def __init__(
        self,
        store_many: StoreMany[R],
        enqueue_many: EnqueueMany | None,
        *,
        concurrent_writers: bool,
        max_batch: int = MAX_BATCH,
        max_in_flight: int | None = None,
    ) -> None:
        self.store_many = store_many
        self.enqueue_many = enqueue_many
        self.max_batch = max_batch
        if max_in_flight is None:
            max_in_flight = CONCURRENT_COMMITS if concurrent_writers else 1
        self.max_in_flight = max_in_flight
        self._pending: list[tuple[R, asyncio.Future[tuple[str, bool]]]] = []
        self._flushers: set[asyncio.Task[None]] = set()

    @classmethod
    def for_jobs(cls, store: JobStore, queue: JobQueue | None, **options: int) -> Intake[JobRequest]:
        enqueue = queue.enqueue_many if queue is not None else None
        return Intake(store.submit_many, enqueue, concurrent_writers=store.concurrent_writers, **options)

    @classmethod
    def for_deliveries(
        cls, deliveries: Deliveries, queue: JobQueue | None, **options: int
    ) -> Intake[NewDelivery]:
        enqueue = queue.enqueue_deliveries if queue is not None else None
        return Intake(
            deliveries.store_many, enqueue, concurrent_writers=deliveries.concurrent_writers, **options
        )

    async def submit(self, request: R) -> tuple[str, bool]:
        """The stored id and whether it is new, once it is committed and (if new) enqueued.

        Database errors reach the caller; a queue that fails is logged (what was stored is committed, and
        the reconciler enqueues it within a minute)."""
        future: asyncio.Future[tuple[str, bool]] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if len(self._flushers) < self.max_in_flight:
            # Its own task: a caller that goes away (client disconnect) never cancels the others' commit.
            flusher = asyncio.create_task(self._flush(), name="intake-flush")
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        try:
            await self._drain()
        finally:
            # Leave the set in the same step as the last look at `_pending`: through the done callback alone
            # there was a moment when this flusher had finished but still counted, and a request arriving
            # then started no flusher and waited for ever (the waves test hung once in a full run).
            task = asyncio.current_task()
            if task is not None:
                self._flushers.discard(task)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                answers = await self.store_many([request for request, _ in batch])
            except Exception as exc:  # the database is down: every waiting caller hears it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            created = [stored_id for stored_id, new in answers if new]
            if created and self.enqueue_many is not None:
                try:
                    await self.enqueue_many(created)
                except Exception:
                    log.exception(
                        "enqueue of %d new entries failed; the reconciler enqueues them", len(created)
                    )
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)

    async def aclose(self) -> None:
        """Let the commits in flight finish (on shutdown)."""
        await asyncio.gather(*self._flushers, return_exceptions=True)
