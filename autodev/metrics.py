"""Prometheus metrics: counters the adapters bump, and gauges read from the store at scrape time."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Gauge, generate_latest
from sqlalchemy import func, select

from engine.jobs import JobStore
from engine.models import Job
from workers.queue import ArqJobQueue

CONTENT_TYPE = CONTENT_TYPE_LATEST


async def render(store: JobStore, queue: ArqJobQueue) -> bytes:
    """The process's own metrics plus job and queue gauges computed now (any web process answers alike)."""
    scrape = CollectorRegistry()
    jobs = Gauge("autodev_jobs", "Jobs by state and trigger", ["state", "trigger"], registry=scrape)
    async with store.sessions() as session:
        query = select(Job.state, Job.trigger, func.count()).group_by(Job.state, Job.trigger)
        rows = await session.execute(query)
        for state, trigger, count in rows:
            jobs.labels(state=state, trigger=trigger).set(count)
    depth, oldest_age = await queue.depth()
    Gauge("autodev_queue_depth", "Jobs waiting in the queue", registry=scrape).set(depth)
    oldest = Gauge("autodev_queue_oldest_age_seconds", "Age of the oldest queued job", registry=scrape)
    oldest.set(oldest_age or 0)
    return generate_latest(REGISTRY) + generate_latest(scrape)
