"""Intake: new jobs stored and queued with group commit, for the webhook's hot path.

Requests that arrive while a commit is in flight wait for it and then share the next transaction and
one queue round trip. An idle intake commits a lone request at once (no timer, so no added latency);
under load a batch forms by itself and the per-request cost of the database and Redis is shared. Each
caller still hears back only once its job is durable in the database and on the queue.
"""

from __future__ import annotations

import asyncio
import logging

from engine.jobs import JobRequest, JobStore
from engine.ports import JobQueue

log = logging.getLogger(__name__)

MAX_BATCH = 128


class Intake:
    def __init__(self, store: JobStore, queue: JobQueue | None, *, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.queue = queue
        self.max_batch = max_batch
        self._pending: list[tuple[JobRequest, asyncio.Future[tuple[str, bool]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, request: JobRequest) -> tuple[str, bool]:
        """The job's id and whether it is new, once it is committed and (if new) enqueued.

        Database errors reach the caller; a queue that fails is logged (the job is committed, and the
        reconciler enqueues it within a minute)."""
        future: asyncio.Future[tuple[str, bool]] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if self._flusher is None or self._flusher.done():
            # Its own task: a caller that goes away (client disconnect) never cancels the others' commit.
            self._flusher = asyncio.create_task(self._flush(), name="intake-flush")
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                answers = await self.store.submit_many([request for request, _ in batch])
            except Exception as exc:  # the database is down: every waiting caller answers 503
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            created = [job_id for job_id, new in answers if new]
            if created and self.queue is not None:
                try:
                    await self.queue.enqueue_many(created)
                except Exception:
                    log.exception("enqueue of %d new jobs failed; the reconciler enqueues them", len(created))
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)

    async def aclose(self) -> None:
        """Let a commit in flight finish (on shutdown)."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
