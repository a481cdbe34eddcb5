"""Prometheus metrics.

Job, cost and queue figures are computed at scrape time from the database and Redis, which every web and
worker process shares — so any web process answers for the whole deployment, and nothing is lost when a
worker restarts. Counters of things that happen in the web process itself (webhook requests) live in
the process's default registry, bumped by the adapters.
"""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import HistogramMetricFamily
from sqlalchemy import func, select

from engine import events
from engine.store.jobs import JobStore
from engine.store.models import CostEntry, Job, JobEvent, utcnow
from workers.queue import ArqJobQueue

CONTENT_TYPE = CONTENT_TYPE_LATEST
DURATION_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
DURATION_WINDOW = timedelta(days=7)


async def render(store: JobStore, queue: ArqJobQueue) -> bytes:
    scrape = CollectorRegistry()
    jobs = Gauge("autodev_jobs", "Jobs by state and trigger", ["state", "trigger"], registry=scrape)
    tokens = Gauge("autodev_llm_tokens", "LLM tokens spent, by model and direction", ["model", "direction"],
                   registry=scrape)  # fmt: skip
    dollars = Gauge("autodev_llm_dollars", "LLM dollars spent, by model", ["model"], registry=scrape)
    calls = Gauge("autodev_llm_calls", "LLM calls, by model and role", ["model", "role"], registry=scrape)
    reporter_errors = Gauge(
        "autodev_reporter_errors", "Reporter failures (GitHub, Slack) recorded on jobs", registry=scrape
    )
    async with store.sessions() as session:
        for state, trigger, count in await session.execute(
            select(Job.state, Job.trigger, func.count()).group_by(Job.state, Job.trigger)
        ):
            jobs.labels(state=state, trigger=trigger).set(count)
        for model, role, n, t_in, t_out, usd in await session.execute(
            select(
                CostEntry.model,
                CostEntry.role,
                func.count(),
                func.sum(CostEntry.tokens_in),
                func.sum(CostEntry.tokens_out),
                func.sum(CostEntry.usd),
            ).group_by(CostEntry.model, CostEntry.role)
        ):
            calls.labels(model=model, role=role).set(n)
            tokens.labels(model=model, direction="in").inc(t_in or 0)
            tokens.labels(model=model, direction="out").inc(t_out or 0)
            dollars.labels(model=model).inc(usd or 0.0)
        reporter_errors.set(
            await session.scalar(select(func.count()).where(JobEvent.type == events.REPORTER_ERROR)) or 0
        )
        finished = await session.execute(
            select(Job.state, Job.started_at, Job.finished_at).where(
                Job.finished_at >= utcnow() - DURATION_WINDOW, Job.started_at.is_not(None)
            )
        )
        durations: dict[str, list[float]] = {}
        for state, started, ended in finished:
            if started is None or ended is None:
                continue
            durations.setdefault(state, []).append((ended - started).total_seconds())
    scrape.register(_DurationCollector(durations))
    depth, oldest_age = await queue.depth()
    Gauge("autodev_queue_depth", "Jobs waiting in the queue", registry=scrape).set(depth)
    oldest = Gauge("autodev_queue_oldest_age_seconds", "Age of the oldest queued job", registry=scrape)
    oldest.set(oldest_age or 0)
    return generate_latest(REGISTRY) + generate_latest(scrape)


class _DurationCollector:
    """Job durations of the last week as a histogram per final state."""

    def __init__(self, durations: dict[str, list[float]]) -> None:
        self.durations = durations

    def collect(self) -> list[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "autodev_job_duration_seconds",
            "Wall time of jobs that ended in the last 7 days",
            labels=["state"],
        )
        for state, values in sorted(self.durations.items()):
            buckets = [(str(b), sum(1 for v in values if v <= b)) for b in DURATION_BUCKETS]
            buckets.append(("+Inf", len(values)))
            family.add_metric([state], buckets, sum_value=sum(values))
        return [family]
