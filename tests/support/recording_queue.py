"""The `JobQueue` port as lists of ids, for tests of adapters (ARQ itself is tested in tests/workers)."""

from __future__ import annotations

from collections.abc import Sequence


class RecordingQueue:
    def __init__(self, fail_with: Exception | None = None) -> None:
        self.enqueued: list[str] = []
        self.aborted: list[str] = []
        self.deliveries: list[str] = []
        self.forgotten: list[str] = []
        self.fail_with = fail_with  # set it to make every enqueue raise, as a queue that is down

    async def enqueue(self, job_id: str) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.enqueued.append(job_id)

    async def enqueue_many(self, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            await self.enqueue(job_id)

    async def enqueue_deliveries(self, delivery_ids: Sequence[str]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.deliveries.extend(delivery_ids)

    async def abort(self, job_id: str) -> None:
        self.aborted.append(job_id)

    async def forget(self, job_id: str) -> None:
        self.forgotten.append(job_id)
