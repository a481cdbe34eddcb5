"""/metrics at scale: a scrape's database part and the endpoint, with and without ix_job_events_type.

    flock /tmp/bench.lock .venv/bin/python bench/metrics_scrape.py [--events 200000] [--jobs 2500]
        [--cost-entries 75000] [--scrapes 200] [--seconds 10] [--rounds 2]
        [--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench_metrics] [--redis-url URL]

Builds a database at head (a SQLite file in a temp dir by default; a PostgreSQL database whose name starts
with `bench` is emptied first) and fills it with Core bulk inserts: --jobs finished jobs, --events
job_events spread over them with the pipeline's mix of types (0.5 % `reporter_error`), --cost-entries LLM
calls. Then, per phase — "before" with the index dropped, "after" with it created, alternated --rounds
times in the same run:

- the database part of a scrape (autodev.metrics.database_families in its own session, as /metrics runs
  it), --scrapes times: p50 / p90 in ms, and the reporter-error count alone;
- the endpoint, served by a real `autodev web` process on the same database (one uvicorn worker): scrapes
  answered per second by a closed loop of one client for --seconds, and /healthz p50 / p99 alone and
  while four clients scrape in closed loops (the issue's symptom: health checks slowing under a scraper).

Prints one JSON object with the machine, the versions and every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from autodev import metrics
from autodev.metrics import REPORTER_ERRORS, database_families
from engine.store.db import make_engine, make_sessionmaker, upgrade_sync
from engine.store.models import CostEntry, Job, JobEvent

ROOT = Path(__file__).resolve().parents[1]
INDEX = "ix_job_events_type"
# The pipeline's mix, roughly: most events are LLM calls, phases and state changes.
EVENT_MIX = {
    "llm_call": 40, "phase": 14, "state": 6, "tests": 9, "context": 6, "step_started": 5, "step_finished": 5,
    "edit_refused": 3, "note": 3, "plan": 2, "submitted": 2, "pushed": 2, "pr": 2, "reporter_error": 0.5,
    "reporter_caught_up": 0.5,
}  # fmt: skip
MODELS = [("gpt-4.1-mini", "planner"), ("gpt-4.1", "coder")]
TRIGGERS = ["github_issue", "github_comment", "slack", "cli"]
STATES = ["succeeded"] * 7 + ["failed"] * 2 + ["cancelled"]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def reset(url: str) -> None:
    if make_url(url).get_backend_name() != "postgresql":
        return
    name = make_url(url).database or ""
    if not name.startswith("bench"):
        raise SystemExit(f"refusing to empty {name!r}: give a database whose name starts with 'bench'")
    admin = make_engine(str(make_url(url).set(database="postgres")), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        if not await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


async def seed(engine: AsyncEngine, *, jobs: int, events: int, cost_entries: int) -> dict[str, int]:
    rng = random.Random(7)
    now = datetime.now(UTC)
    job_rows = []
    for i in range(jobs):
        started = now - timedelta(days=30) + timedelta(seconds=i * 900)
        job_rows.append(
            {
                "id": f"job{i:08d}", "dedupe_key": f"bench:{i}", "access_token": "t", "kind": "implement",
                "trigger": rng.choice(TRIGGERS), "repo": f"acme/repo{i % 40}", "title": "t", "task": "t",
                "requester": "bench", "origin": {}, "reporter_state": {}, "state": rng.choice(STATES),
                "cancel_requested": False, "attempts": 1, "last_seq": 0, "budget_usd": 5.0,
                "max_requests": 300, "max_minutes": 60.0, "cost_usd": 0.0, "tokens_in": 0, "tokens_out": 0,
                "requests": 0, "context_diagnostics": [], "created_at": started, "updated_at": started,
                "started_at": started, "finished_at": started + timedelta(seconds=rng.uniform(40, 3000)),
            }
        )  # fmt: skip
    types = list(EVENT_MIX)
    weights = list(EVENT_MIX.values())
    per_job = events // jobs
    async with engine.begin() as conn:
        for start in range(0, jobs, 1000):
            await conn.execute(insert(Job), job_rows[start : start + 1000])
        batch: list[dict[str, Any]] = []
        for i in range(events):
            job = min(i // per_job, jobs - 1)
            seq = i - job * per_job + 1
            batch.append(
                {
                    "job_id": f"job{job:08d}", "seq": seq, "type": rng.choices(types, weights)[0],
                    "data": {"index": seq % 5, "note": "x" * rng.randint(10, 120)}, "created_at": now,
                }
            )  # fmt: skip
            if len(batch) == 5000:
                await conn.execute(insert(JobEvent), batch)
                batch = []
        if batch:
            await conn.execute(insert(JobEvent), batch)
        batch = []
        for i in range(cost_entries):
            model, role = rng.choice(MODELS)
            batch.append(
                {
                    "job_id": f"job{i % jobs:08d}", "step_index": i % 4, "role": role, "model": model,
                    "tokens_in": rng.randint(2000, 20000), "tokens_out": rng.randint(100, 2000),
                    "usd": rng.uniform(0.001, 0.05), "latency_ms": rng.randint(300, 9000), "repo": "acme/r",
                    "created_at": now,
                }
            )  # fmt: skip
            if len(batch) == 5000:
                await conn.execute(insert(CostEntry), batch)
                batch = []
        if batch:
            await conn.execute(insert(CostEntry), batch)
        # What the pipeline's add_cost keeps beside the entries (engine/totals.py), as revision 0004 fills it.
        await conn.execute(
            text(
                "INSERT INTO llm_totals (model, role, calls, tokens_in, tokens_out, usd) SELECT model, role, "
                "count(*), sum(tokens_in), sum(tokens_out), sum(usd) FROM cost_entries GROUP BY model, role"
            )
        )
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    async with engine.connect() as conn:
        count = await conn.scalar(select(func.count()).select_from(JobEvent))
        errors = await conn.scalar(REPORTER_ERRORS)
    return {
        "jobs": jobs,
        "events": int(count or 0),
        "reporter_errors": int(errors or 0),
        "llm_calls": cost_entries,
    }


async def set_index(engine: AsyncEngine, present: bool) -> None:
    async with engine.begin() as conn:
        if present:
            await conn.execute(text(f"CREATE INDEX IF NOT EXISTS {INDEX} ON job_events (type)"))
        else:
            await conn.execute(text(f"DROP INDEX IF EXISTS {INDEX}"))
        await conn.execute(text("ANALYZE job_events"))


async def session_start_scrape(session: AsyncSession) -> None:
    """The database reads of /metrics at the session's start (main at 3bd6bb1), for the "before" figures."""
    await session.execute(select(Job.state, Job.trigger, func.count()).group_by(Job.state, Job.trigger))
    await session.execute(
        select(
            CostEntry.model,
            CostEntry.role,
            func.count(),
            func.sum(CostEntry.tokens_in),
            func.sum(CostEntry.tokens_out),
            func.sum(CostEntry.usd),
        ).group_by(CostEntry.model, CostEntry.role)
    )
    await session.scalar(select(func.count()).where(JobEvent.type == "reporter_error"))
    finished = await session.execute(
        select(Job.state, Job.started_at, Job.finished_at).where(
            Job.finished_at >= datetime.now(UTC) - timedelta(days=7), Job.started_at.is_not(None)
        )
    )
    for _state, started, ended in finished:
        (ended - started).total_seconds()


async def timed(engine: AsyncEngine, read: Any, scrapes: int) -> dict[str, float]:
    sessions = make_sessionmaker(engine)
    took = []
    for _ in range(scrapes):
        async with sessions() as session:
            started = time.perf_counter()
            await read(session)
            took.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(statistics.median(took), 2), "p90_ms": round(percentile(took, 90), 2)}


async def database_part(engine: AsyncEngine, scrapes: int) -> dict[str, float]:
    sessions = make_sessionmaker(engine)
    parts: dict[str, Any] = {
        "jobs": metrics._jobs, "llm totals": metrics._llm, "reporter errors": REPORTER_ERRORS,
        "webhooks": metrics._webhooks, "durations": metrics._durations,
    }  # fmt: skip
    whole: list[float] = []
    each: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(scrapes):
        async with sessions() as session:
            started = time.perf_counter()
            await database_families(session)
            whole.append((time.perf_counter() - started) * 1000)
        for name, part in parts.items():
            async with sessions() as session:
                started = time.perf_counter()
                await (session.scalar(part) if part is REPORTER_ERRORS else part(session))
                each[name].append((time.perf_counter() - started) * 1000)
    return {
        "db_part_p50_ms": round(statistics.median(whole), 2),
        "db_part_p90_ms": round(percentile(whole, 90), 2),
        "p50_ms_by_query": {name: round(statistics.median(v), 3) for name, v in each.items()},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def web_process(database_url: str, redis_url: str | None, data_dir: Path) -> Any:
    port = free_port()
    env = {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "DATABASE_URL": database_url,
        "DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT),
    }  # fmt: skip
    if redis_url:
        env["REDIS_URL"] = redis_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "autodev", "web", "--port", str(port)],
        cwd=data_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("autodev web did not become ready")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(30)


async def endpoint(base: str, seconds: float) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        await client.get("/metrics")  # warm: connections, statement caches

        async def healthz(n: int) -> list[float]:
            latencies = []
            for _ in range(n):
                started = time.perf_counter()
                (await client.get("/healthz")).raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.01)
            return latencies

        alone = await healthz(200)
        done = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            (await client.get("/metrics")).raise_for_status()
            done += 1
        scrapes_per_s = done / seconds

        stop = asyncio.Event()

        async def scraper() -> None:
            while not stop.is_set():
                (await client.get("/metrics")).raise_for_status()

        scrapers = [asyncio.create_task(scraper()) for _ in range(4)]
        await asyncio.sleep(0.5)
        loaded = await healthz(200)
        stop.set()
        await asyncio.gather(*scrapers)
    return {
        "scrapes_per_s": round(scrapes_per_s, 1),
        "healthz_alone_p50_ms": round(statistics.median(alone), 2),
        "healthz_alone_p99_ms": round(percentile(alone, 99), 2),
        "healthz_under_4_scrapers_p50_ms": round(statistics.median(loaded), 2),
        "healthz_under_4_scrapers_p99_ms": round(percentile(loaded, 99), 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--jobs", type=int, default=2_500)
    parser.add_argument("--cost-entries", type=int, default=75_000)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        data_dir = Path(tmp)
        url = args.database_url or f"sqlite+aiosqlite:///{data_dir / 'autodev.db'}"
        await reset(url)
        await asyncio.to_thread(upgrade_sync, url)
        engine = make_engine(url)
        started = time.perf_counter()
        sizes = await seed(engine, jobs=args.jobs, events=args.events, cost_entries=args.cost_entries)
        sizes["seed_s"] = round(time.perf_counter() - started, 1)
        phases: list[dict[str, Any]] = []
        for round_ in range(args.rounds):
            for present in (False, True):
                await set_index(engine, present)
                figures: dict[str, Any] = {"round": round_ + 1, "index": present}
                if not present:
                    figures["session_start_db_part"] = await timed(engine, session_start_scrape, args.scrapes)
                figures |= await database_part(engine, args.scrapes)
                with web_process(url, args.redis_url, data_dir) as base:
                    figures |= await endpoint(base, args.seconds)
                phases.append(figures)
                print(json.dumps(figures), file=sys.stderr)
        await engine.dispose()

    packages = ("sqlalchemy", "aiosqlite", "asyncpg", "prometheus-client", "uvicorn", "fastapi")
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
                "python": sys.version.split()[0],
                "versions": {name: version(name) for name in packages},
                "database": make_url(url).get_backend_name(),
                "sizes": sizes,
                "phases": phases,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
