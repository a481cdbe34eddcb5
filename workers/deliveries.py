"""ARQ job function for a stored GitHub delivery, and the reconciler's part for deliveries.

`ctx["deliveries"]` (an `engine.ports.DeliveryHandler`, the GitHub adapter's) is put there by the
composition root; only the delivery's id goes on the queue.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import Any

from arq import Retry
from arq.jobs import JobStatus

from engine.errors import TransientFailure
from engine.ports import DeliveryHandler
from engine.settings import Settings
from engine.store.deliveries import DEDUPE_WINDOW
from engine.store.jobs import JobStore
from engine.store.models import utcnow
from workers.queue import ArqJobQueue, delivery_job_id

log = logging.getLogger(__name__)

# A pending delivery younger than this may simply not have been enqueued *yet* by the web process.
DELIVERY_GRACE = timedelta(seconds=30)
DELIVERY_TIMEOUT_S = 300
MAX_DEFER_S = 60.0
PURGE_EVERY_S = 3600
PURGE_KEY = "autodev:deliveries:purged"


def delivery_backoff(settings: Settings, try_number: int) -> float:
    base = settings.trigger_retry_base_s * 2 ** (try_number - 1)
    return min(MAX_DEFER_S, base) * random.uniform(0.8, 1.2)


async def handle_delivery(ctx: dict[str, Any], delivery_id: str) -> str:
    handler: DeliveryHandler | None = ctx.get("deliveries")
    settings: Settings = ctx["deps"].settings
    if handler is None:
        # The web process has a GitHub App and this worker has none: it stays pending for one that has.
        log.error("a GitHub delivery reached a worker without the GitHub App configured; left pending")
        return "no GitHub App on this worker"
    try_number: int = ctx.get("job_try", 1)
    last_try = try_number >= settings.trigger_max_tries
    try:
        return await handler.handle(delivery_id, last_try=last_try)
    except TransientFailure as exc:
        if last_try:
            # Only the database fails a last try this way (GitHub's failures are told to the user): the
            # delivery stays pending and the reconciler hands it out again once the database is back.
            log.error("delivery %s left pending after %d tries: %s", delivery_id, try_number, exc.reason)
            return "left pending"
        defer = exc.retry_after if exc.retry_after is not None else delivery_backoff(settings, try_number)
        log.warning("delivery %s: %s; trying again in %.1fs", delivery_id, exc.reason, defer)
        raise Retry(defer=defer) from exc


async def reconcile_deliveries(store: JobStore, queue: ArqJobQueue) -> dict[str, int]:
    """Queue again the pending deliveries ARQ does not hold (an enqueue that failed, a Redis restart, a
    last try during a database outage); forget finished ones past their dedupe window, once an hour."""
    counts = {"deliveries_enqueued": 0, "deliveries_purged": 0}
    again: list[str] = []
    for delivery_id in await store.deliveries.pending_ids(utcnow() - DELIVERY_GRACE):
        status = await queue.status(delivery_job_id(delivery_id))
        if status in (JobStatus.queued, JobStatus.deferred, JobStatus.in_progress):
            continue
        await queue.forget(delivery_job_id(delivery_id))  # a finished try's result would refuse the enqueue
        again.append(delivery_id)
    if again:
        await queue.enqueue_deliveries(again)
        counts["deliveries_enqueued"] = len(again)
    if await queue.redis.set(PURGE_KEY, "1", nx=True, ex=PURGE_EVERY_S):
        counts["deliveries_purged"] = await store.deliveries.purge(utcnow() - DEDUPE_WINDOW)
    return counts
