"""Stored GitHub deliveries: one per delivery id and per signed body, in batches and across processes."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from arq.connections import ArqRedis
from sqlalchemy import update

from engine.store.db import SqliteWriter, make_engine, make_sessionmaker
from engine.store.deliveries import DELIVERIES, DONE, Deliveries, NewDelivery
from engine.store.intake import Intake
from engine.store.models import utcnow
from workers.queue import ArqJobQueue, connect, delivery_job_id


def new(delivery_id: str, body: str | None = None) -> NewDelivery:
    digest = hashlib.sha256((body or delivery_id).encode()).hexdigest()
    return NewDelivery(delivery_id, digest, "issues", {"action": "labeled", "n": delivery_id})


@pytest.fixture
async def deliveries(any_database_url: str) -> AsyncIterator[Deliveries]:
    engine = make_engine(any_database_url)
    writer = SqliteWriter.for_url(any_database_url)
    yield Deliveries(make_sessionmaker(engine), writer=writer)
    if writer is not None:
        await writer.aclose()
    await engine.dispose()


async def test_a_delivery_is_stored_once_by_its_id_and_once_by_its_body(deliveries: Deliveries) -> None:
    assert await deliveries.store_many([new("a")]) == [("a", True)]
    assert await deliveries.store_many([new("a")]) == [("a", False)]  # a redelivery
    assert await deliveries.store_many([new("b", body="a")]) == [("a", False)]  # the body replayed
    stored = await deliveries.get("a")
    assert stored is not None and (stored.event, stored.state, stored.payload["n"]) == (
        "issues",
        "pending",
        "a",
    )
    assert await deliveries.get("b") is None


async def test_a_batch_settles_its_own_repeats(deliveries: Deliveries) -> None:
    batch = [new("x"), new("y"), new("x"), new("z", body="y"), new("w")]
    assert await deliveries.store_many(batch) == [
        ("x", True),
        ("y", True),
        ("x", False),
        ("y", False),
        ("w", True),
    ]


async def test_batches_racing_over_the_same_deliveries_store_each_once(deliveries: Deliveries) -> None:
    ids = [f"race-{n}" for n in range(30)]
    answers = await asyncio.gather(
        deliveries.store_many([new(i) for i in ids]),
        deliveries.store_many([new(i) for i in reversed(ids)]),
        deliveries.store_many([new(f"other-{i}", body=i) for i in ids]),
    )
    new_count = sum(created for batch in answers for _, created in batch)
    assert new_count == 30
    # Whichever of race-n and other-n (the same body) was stored first, every answer for it names that one.
    first, second, other = answers
    for n, (a, b, c) in enumerate(zip(first, reversed(second), other, strict=True)):
        assert a[0] == b[0] == c[0] in (f"race-{n}", f"other-race-{n}")


async def test_pending_ones_are_listed_and_finished_old_ones_purged(deliveries: Deliveries) -> None:
    await deliveries.store_many([new("old-done"), new("old-pending"), new("fresh")])
    async with deliveries.sessions() as session, session.begin():
        old = utcnow() - timedelta(hours=80)
        await session.execute(update(DELIVERIES).where(DELIVERIES.c.id.like("old-%")).values(received_at=old))
    await deliveries.finish("old-done", DONE, "job submitted", job_id="j" * 32)
    assert await deliveries.pending_ids(utcnow() - timedelta(seconds=30)) == ["old-pending"]
    assert await deliveries.purge(utcnow() - timedelta(hours=72)) == 1
    assert await deliveries.get("old-done") is None and await deliveries.get("old-pending") is not None
    assert await deliveries.store_many([new("again", body="old-done")]) == [("again", True)]  # window over


@pytest.fixture
async def pool(clean_redis: str) -> AsyncIterator[ArqRedis]:
    redis = await connect(clean_redis)
    yield redis
    await redis.aclose()


async def test_the_intake_stores_a_burst_in_few_commits_and_queues_each_new_one_once(
    deliveries: Deliveries, pool: ArqRedis
) -> None:
    queue = ArqJobQueue(pool)
    intake = Intake.for_deliveries(deliveries, queue)
    answers = await asyncio.gather(*(intake.submit(new(f"d-{n % 25}")) for n in range(40)))
    assert sum(created for _, created in answers) == 25
    assert (await queue.depth())[0] == 25
    assert str(await queue.status(delivery_job_id("d-3"))) == "JobStatus.queued"
