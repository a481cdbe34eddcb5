"""Shared by the worker tests: an ARQ pool on the real Redis, and a burst worker around a given pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq.connections import ArqRedis

from engine.pipeline.jobrun import EngineDeps, Pipeline
from engine.settings import Settings
from engine.store.jobs import JobStore
from workers.queue import ArqJobQueue, connect
from workers.settings import AutodevWorker, worker_options


@pytest.fixture
async def pool(clean_redis: str) -> AsyncIterator[ArqRedis]:
    redis = await connect(clean_redis)
    yield redis
    await redis.aclose()


async def no_code_host(view: Any) -> Any:
    raise AssertionError("these tests never touch a repository")


def worker_ctx(
    settings: Settings, store: JobStore, pool: ArqRedis, pipeline: Pipeline | None = None
) -> dict[str, Any]:
    """What the composition root puts in ARQ's ctx: the engine's deps and the queue."""
    queue = ArqJobQueue(pool)
    deps = EngineDeps(
        settings=settings, store=store, code_host_for=no_code_host, pipeline=pipeline, queue=queue
    )
    return {"deps": deps, "queue": queue}


def burst_worker(
    settings: Settings, store: JobStore, pool: ArqRedis, pipeline: Pipeline | None = None
) -> AutodevWorker:
    """A worker that runs what is queued and stops, without the reconciler's cron."""
    return AutodevWorker(
        **worker_options(settings, burst=True, reconciler=False),
        redis_pool=pool,
        ctx=worker_ctx(settings, store, pool, pipeline),
    )
