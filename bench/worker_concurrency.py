"""Worker concurrency benchmark: N jobs at once in ONE `autodev worker` process, against a slow scripted LLM.

    .venv/bin/python bench/worker_concurrency.py [--jobs 60] [--llm-delay 1.0] [--steps 2] [--tests unittest]
        [--sandbox bwrap|none]
        [--database-url postgresql+asyncpg://…] [--redis-url redis://127.0.0.1:6379/11] [--py-spy OUT.json]

Builds --jobs real git repositories (a tiny Python project whose `.github/autodev.yml` names its test
command) in /tmp/bench-worker-*, starts a scripted OpenAI-compatible server in its own process (every
/v1/chat/completions answers after --llm-delay seconds: a plan of --steps steps, then per step one
`create_file` tool call and one plain "done"), starts a real `autodev worker` subprocess with
WORKER_MAX_JOBS=--jobs (SQLite and the embedded Redis by default, as on a fresh machine), runs one warm-up
job, then submits the N jobs through JobStore and enqueues them on ARQ at once. The test command is
`python -m unittest` by default (--tests pytest for pytest, ~1 CPU-s a run here: on a small machine 60 jobs'
test runs then compete with the worker for the CPU); the test script logs its own start and end times.

Measures: peak jobs in flight (the database's `running` jobs and ARQ's in-progress keys, sampled every 100 ms,
and the exact overlap of the jobs' started/finished times); per job wall time (started_at → finished_at),
LLM wait (the delay the server served to that job), test time (the test command timing itself) and the
orchestration overhead = wall − LLM wait − test time, as a share of wall (median, p90); the worker's RSS idle
and at its peak → memory per in-flight job; total wall time for all N. Every job must succeed: a failure
prints why and the bench exits 1. Targets (issue 9): >= 50 in flight, overhead < 10% per job.
Also reports the worker's CPU seconds per job (its own, and its children's: git and the tests): one worker
is one Python process, so its jobs per second cannot exceed 1 / (its CPU per job). Exit status: 0 when the
targets are met, 1 otherwise or when a job failed. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
JOB_TAG = re.compile(r"\[bench-job-(\w+)\]")
STEP_OF = re.compile(r"# Your step \((\d+) of (\d+)\)")
TEST_SCRIPT = """\
#!/bin/sh
# The repository's test command, timing itself: one line in its own output (it runs in the sandbox, which
# can write nothing outside the worktree); the bench reads it back from the job's `tests` events.
start=$(date +%s.%N)
{command}
rc=$?
echo "BENCH-TEST $start $(date +%s.%N) $rc"
exit $rc
"""
TIMED = re.compile(r"^BENCH-TEST (\S+) (\S+) -?\d+$", re.M)
TEST_COMMANDS = {
    # unittest costs ~0.05 CPU-s a run; pytest with this venv's plugins ~1 CPU-s, which on a small machine
    # turns 60 concurrent jobs' tests into CPU contention that slows every other part of the worker too.
    "unittest": "{python} -m unittest -q",
    "pytest": "{python} -m pytest -q -p no:cacheprovider",
}
REPO_FILES = {
    "README.md": "# tiny\n\nA tiny project for the worker benchmark.\n",
    "src/tiny/__init__.py": "",
    "src/tiny/core.py": 'def greet(name: str) -> str:\n    return f"Hello, {name}!"\n',
    "tests/__init__.py": "",
    "tests/test_core.py": "import sys\n\nsys.path.insert(0, 'src')\n\nfrom tiny.core import greet\n\n\n"
    "def test_greet():\n    assert greet('x') == 'Hello, x!'\n",
    "pyproject.toml": '[project]\nname = "tiny"\nversion = "0.1"\n',
}


# -- the scripted LLM (runs in its own process: `--serve-llm`) --------------------------------------------


@dataclass
class Served:
    calls: int = 0
    seconds: float = 0.0
    roles: dict[str, int] = field(default_factory=dict)


def llm_answer(body: dict[str, Any], steps: int) -> tuple[dict[str, Any], str]:
    """The assistant message for a request, decided from the request alone; and the role it answered."""
    messages = body.get("messages", [])
    text = "\n".join(str(m.get("content") or "") for m in messages)
    if not body.get("tools"):
        plan = {
            "summary": "Add the requested feature.",
            "steps": [
                {
                    "title": f"Add feature module {i + 1}",
                    "rationale": "the task asks for it",
                    "acceptance": "the module exists and the tests pass",
                    "files": [f"src/tiny/feature_{i + 1}.py"],
                }
                for i in range(steps)
            ],
        }
        return {"role": "assistant", "content": json.dumps(plan)}, "planner"
    if any(m.get("role") == "tool" for m in messages):
        return {"role": "assistant", "content": "done: the module is added and the tests pass."}, "coder"
    step = STEP_OF.search(text)
    number = step.group(1) if step else "1"
    args = {"path": f"src/tiny/feature_{number}.py", "content": f"FEATURE = {number}\n"}
    call = {
        "id": f"call_{number}",
        "type": "function",
        "function": {"name": "create_file", "arguments": json.dumps(args)},
    }
    return {"role": "assistant", "content": None, "tool_calls": [call]}, "coder"


async def serve_llm(delay: float, steps: int) -> None:
    from aiohttp import web

    from tests.support.fake_llm import chat_completion

    served: dict[str, Served] = {}

    async def chat(request: web.Request) -> web.Response:
        began = time.monotonic()
        body = await request.json()
        tag = JOB_TAG.search(json.dumps(body.get("messages", [])))
        if tag is None:
            return web.json_response({"error": {"message": "bench LLM: no [bench-job-…] tag"}}, status=400)
        message, role = llm_answer(body, steps)
        await asyncio.sleep(max(0.0, delay - (time.monotonic() - began)))
        record = served.setdefault(tag.group(1), Served())
        record.calls += 1
        record.roles[role] = record.roles.get(role, 0) + 1
        record.seconds += time.monotonic() - began
        return chat_completion(f"chatcmpl-{tag.group(1)}-{record.calls}", body, message, 1000, 50)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({k: v.__dict__ for k, v in served.items()})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    server: Any = site._server
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


# -- fixtures: repositories, services ----------------------------------------------------------------------


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_repos(base: Path, count: int, test_script: str) -> list[Path]:
    """`count` git repositories of the tiny project: one made with git, the rest copies of it."""
    seed = base / "repos" / "seed"
    for name, text in {**REPO_FILES, "timed-test.sh": test_script}.items():
        (seed / name).parent.mkdir(parents=True, exist_ok=True)
        (seed / name).write_text(text)
    (seed / ".github").mkdir(exist_ok=True)
    (seed / ".github/autodev.yml").write_text("test_command: 'sh timed-test.sh'\n")
    git(seed, "init", "-q", "-b", "main")
    git(seed, "add", "-A")
    git(seed, "-c", "user.name=bench", "-c", "user.email=b@x", "commit", "-q", "-m", "initial")
    repos = []
    for i in range(count):
        repo = base / "repos" / f"repo-{i:03d}"
        shutil.copytree(seed, repo, symlinks=True)
        repos.append(repo)
    return repos


def rss_kb(pid: int) -> dict[str, int]:
    found = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


def cpu_seconds(pid: int) -> tuple[float, float]:
    """The process's own CPU time, and that of its children it has waited for (git, the tests)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def max_overlap(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    best = current = 0
    for _, step in edges:
        current += step
        best = max(best, current)
    return best


def worker_env(args: argparse.Namespace, base: Path, llm_port: int, redis_url: str | None) -> dict[str, str]:
    drop = ("GITHUB_", "SLACK_", "OPENAI_", "MODEL_", "JOB_", "AUTODEV_", "REDIS_", "DATABASE_", "WORKER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        PYTHONPATH=str(ROOT),
        DATA_DIR=str(base / "data"),
        DATABASE_URL=args.database_url or f"sqlite+aiosqlite:///{base / 'data' / 'autodev.db'}",
        OPENAI_BASE_URL=f"http://127.0.0.1:{llm_port}/v1",
        OPENAI_API_KEY="sk-bench-unused",
        WORKER_MAX_JOBS=str(args.jobs),
        LOG_LEVEL=args.log_level,
        SANDBOX=args.sandbox,
        # The tests run with this venv's python: shown read-only to the sandbox, as an operator's toolchain.
        SANDBOX_READONLY_PATHS=sys.prefix,
    )
    if redis_url:  # unset: the worker finds the embedded Redis under DATA_DIR, as `autodev worker` would
        env["REDIS_URL"] = redis_url
    return env


# -- the run -----------------------------------------------------------------------------------------------


@dataclass
class Samples:
    running_db: list[int] = field(default_factory=list)
    in_progress: list[int] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)


async def sample(stop: asyncio.Event, pid: int, db: Any, redis: Any, ids: list[str], out: Samples) -> None:
    from arq.constants import in_progress_key_prefix
    from sqlalchemy import bindparam, text

    keys = [in_progress_key_prefix + i for i in ids]
    query = text("SELECT count(*) FROM jobs WHERE state = 'running' AND id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    while not stop.is_set():
        async with db.connect() as conn:
            out.running_db.append(int((await conn.execute(query, {"ids": ids})).scalar_one()))
        out.in_progress.append(int(await redis.exists(*keys)))
        out.rss_kb.append(rss_kb(pid)["VmRSS"])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


async def wait_terminal(
    store: Any, ids: list[str], limit_s: float, worker: asyncio.subprocess.Process
) -> None:
    from engine.store.models import JobState

    deadline = time.monotonic() + limit_s
    pending = set(ids)
    while pending:
        if worker.returncode is not None:
            raise SystemExit(f"the worker exited with {worker.returncode} while jobs were running")
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(pending)} job(s) did not finish within {limit_s:.0f}s")
        for job_id in list(pending):
            if JobState((await store.get(job_id)).state).terminal:
                pending.discard(job_id)
        await asyncio.sleep(0.5)


async def submit(store: Any, queue: Any, repos: list[Path], tags: list[str]) -> list[str]:
    from engine.store.jobs import JobRequest

    ids = []
    for repo, tag in zip(repos, tags, strict=True):
        job, _ = await store.submit(
            JobRequest(
                dedupe_key=f"bench:{repo}:{time.time_ns()}",
                trigger="cli",
                repo=f"local:{repo}",
                title=f"Add a feature module [bench-job-{tag}]",
                task=f"Add a feature module to the tiny package. [bench-job-{tag}]",
                requester="bench",
            )
        )
        ids.append(job.id)
    await asyncio.gather(*(queue.enqueue(i) for i in ids))
    return ids


def parse_time(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


async def idle_rss_kb(pid: int) -> float:
    readings = []
    for _ in range(5):
        readings.append(rss_kb(pid)["VmRSS"])
        await asyncio.sleep(0.2)
    return statistics.median(readings)


async def stop_process(process: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    if process.returncode is None:
        process.send_signal(sig)
    try:
        await asyncio.wait_for(process.wait(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()


async def run(args: argparse.Namespace, base: Path, repos: list[Path], log: IO[bytes]) -> dict[str, Any]:
    import httpx
    from sqlalchemy.ext.asyncio import create_async_engine

    from autodev.embedded_redis import EmbeddedRedis
    from engine.store.db import make_engine, make_sessionmaker, upgrade
    from engine.store.jobs import JobLimits, JobStore
    from workers.queue import ArqJobQueue, connect
    from workers.settings import health_check_key

    database_url = args.database_url or f"sqlite+aiosqlite:///{base / 'data' / 'autodev.db'}"
    await upgrade(database_url)

    llm = await asyncio.create_subprocess_exec(
        *(sys.executable, __file__, "--serve-llm", "--llm-delay", str(args.llm_delay)),
        *("--steps", str(args.steps)),
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    embedded = None if args.redis_url else EmbeddedRedis(base / "data")
    redis_url = args.redis_url or (embedded.start() if embedded else None)
    assert redis_url is not None and llm.stdout is not None
    llm_port = int(await llm.stdout.readline())
    pool = await connect(redis_url)
    if args.redis_url:
        await pool.flushdb()  # the bench's own db (11 by default on the shared Redis)
    engine = make_engine(database_url)
    store = JobStore(make_sessionmaker(engine), JobLimits(5.0, 300, 60.0))
    reader = create_async_engine(database_url)  # no BEGIN IMMEDIATE: sampling never takes the write lock
    queue = ArqJobQueue(pool)
    worker = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "autodev", "worker"),
        cwd=base,
        env=worker_env(args, base, llm_port, args.redis_url),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    spy: asyncio.subprocess.Process | None = None
    try:
        while not await pool.exists(health_check_key()):
            if worker.returncode is not None:
                raise SystemExit(f"the worker exited at start; see {base / 'worker.log'}")
            await asyncio.sleep(0.1)
        rss_start = rss_kb(worker.pid)["VmRSS"]
        # A warm-up job: the engine's modules load lazily on a worker's first job, once per process.
        warm = await submit(store, queue, repos[:1], ["warmup"])
        await wait_terminal(store, warm, args.timeout, worker)
        await asyncio.sleep(1.0)
        idle = await idle_rss_kb(worker.pid)

        samples = Samples()
        stop = asyncio.Event()
        tags = [f"{i:03d}" for i in range(args.jobs)]
        if args.py_spy:
            spy = await asyncio.create_subprocess_exec(
                *(str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(worker.pid)),
                *("-o", args.py_spy, "-f", "speedscope", "-r", "50"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        cpu_before = cpu_seconds(worker.pid)
        began = time.time()
        ids = await submit(store, queue, repos[1:], tags)
        enqueued = time.time()
        sampler = asyncio.create_task(sample(stop, worker.pid, reader, pool, ids, samples))
        await wait_terminal(store, ids, args.timeout, worker)
        stop.set()
        await sampler
        hwm = rss_kb(worker.pid)["VmHWM"]
        cpu_after = cpu_seconds(worker.pid)
        load = os.getloadavg()[0]
        if spy is not None:
            await stop_process(spy, signal.SIGINT)
        async with httpx.AsyncClient() as client:
            served = (await client.get(f"http://127.0.0.1:{llm_port}/stats")).json()
        views = [await store.view(i) for i in ids]
    finally:
        await stop_process(worker)
        await stop_process(llm)
        await pool.aclose()
        await engine.dispose()
        await reader.dispose()
        if embedded is not None:
            embedded.stop()

    failed = [v for v in views if v.state.value != "succeeded"]
    if failed:
        for v in failed:
            print(f"job {v.id} ({v.repo}) {v.state.value}: {v.failure_reason}", file=sys.stderr)
        tail = (base / "worker.log").read_text(errors="replace").splitlines()[-40:]
        print("worker.log (last 40 lines):\n" + "\n".join(tail), file=sys.stderr)
        raise SystemExit(f"{len(failed)} of {len(views)} jobs failed; figures from failed jobs are worthless")

    test_seconds: dict[str, float] = {}
    for view in views:
        for event in view.events:
            if event.type == "tests":
                for started, ended in TIMED.findall(str(event.data.get("tail", ""))):
                    test_seconds[view.id] = test_seconds.get(view.id, 0.0) + float(ended) - float(started)
    rows = []
    for view, tag in zip(views, tags, strict=True):
        assert view.started_at is not None and view.finished_at is not None
        start, end = parse_time(view.started_at), parse_time(view.finished_at)
        wall = end - start
        llm_wait = served[tag]["seconds"]
        tests = test_seconds.get(view.id, 0.0)
        rows.append(
            {
                "wall": wall,
                "llm": llm_wait,
                "tests": tests,
                "overhead": wall - llm_wait - tests,
                "calls": served[tag]["calls"],
                "span": (start, end),
            }
        )
    overhead_pct = [100 * r["overhead"] / r["wall"] for r in rows]
    peak_rss = max(samples.rss_kb)
    in_flight = max_overlap([r["span"] for r in rows])

    def med_p90(key: str) -> dict[str, float]:
        values = [float(r[key]) for r in rows]
        return {"median": round(statistics.median(values), 3), "p90": round(quantile(values, 0.9), 3)}

    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": sys.version.split()[0],
        "versions": {
            name: version(name) for name in ("arq", "sqlalchemy", "aiosqlite", "openai", "redis", "aiohttp")
        },
        "git": args.git_version,
        "database": "postgresql" if database_url.startswith("postgresql") else "sqlite",
        "redis": "embedded" if embedded else "REDIS_URL",
        "jobs": args.jobs,
        "steps_per_job": args.steps,
        "test_runner": args.tests,
        "sandbox": args.sandbox,
        "llm_delay_s": args.llm_delay,
        "worker_max_jobs": args.jobs,
        "all_succeeded": True,
        "llm_calls_per_job": sorted({r["calls"] for r in rows}),
        "llm_calls_expected": 1 + 2 * args.steps,
        "peak_in_flight": {
            "from_job_times": in_flight,
            "sampled_db_running": max(samples.running_db),
            "sampled_arq_in_progress": max(samples.in_progress),
        },
        "total_wall_s": round(max(r["span"][1] for r in rows) - began, 2),
        "submit_and_enqueue_s": round(enqueued - began, 2),
        "job_wall_s": med_p90("wall"),
        "job_llm_wait_s": med_p90("llm"),
        "job_test_s": med_p90("tests"),
        "job_overhead_s": med_p90("overhead"),
        "job_overhead_pct": {
            "median": round(statistics.median(overhead_pct), 1),
            "p90": round(quantile(overhead_pct, 0.9), 1),
        },
        "worker_cpu_s_per_job": {
            "worker_process": round((cpu_after[0] - cpu_before[0]) / args.jobs, 3),
            "its_children_git_and_tests": round((cpu_after[1] - cpu_before[1]) / args.jobs, 3),
        },
        "loadavg_1min_at_end": round(load, 1),
        "worker_rss_mb": {
            "at_start": round(rss_start / 1024, 1),
            "idle_after_warmup": round(idle / 1024, 1),
            "peak_sampled": round(peak_rss / 1024, 1),
            "high_water_mark": round(hwm / 1024, 1),
        },
        "memory_per_in_flight_job_mb": round((peak_rss - idle) / 1024 / max(1, in_flight), 2),
        "targets": {
            "in_flight_at_least_50": in_flight >= 50,
            "overhead_median_under_10pct": statistics.median(overhead_pct) < 10,
            "overhead_p90_under_10pct": quantile(overhead_pct, 0.9) < 10,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--llm-delay", type=float, default=1.0, help="seconds before every LLM answer")
    parser.add_argument("--steps", type=int, choices=(1, 2), default=2, help="plan steps per job")
    parser.add_argument("--tests", choices=sorted(TEST_COMMANDS), default="unittest", help="test runner")
    parser.add_argument("--sandbox", choices=("bwrap", "none"), default="bwrap", help="SANDBOX of the worker")
    parser.add_argument("--database-url", default=None, help="default: SQLite in the temp dir")
    parser.add_argument("--redis-url", default=None, help="default: embedded Redis; its db is FLUSHED")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the jobs")
    parser.add_argument("--log-level", default="INFO", help="the worker's LOG_LEVEL")
    parser.add_argument("--py-spy", default=None, metavar="OUT", help="py-spy record the worker to OUT")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (repos, logs, database)")
    parser.add_argument("--serve-llm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_llm:
        asyncio.run(serve_llm(args.llm_delay, args.steps))
        return 0
    if args.redis_url and urlparse(args.redis_url).path.strip("/") in ("", "0"):
        parser.error("--redis-url must name a database of the bench's own (it is flushed): e.g. …:6379/11")
    args.git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.split()[-1]
    base = Path(tempfile.mkdtemp(prefix="bench-worker-", dir="/tmp"))
    try:
        command = TEST_COMMANDS[args.tests].format(python=sys.executable)
        repos = make_repos(base, args.jobs + 1, TEST_SCRIPT.format(command=command))
        with open(base / "worker.log", "wb") as log:
            result = asyncio.run(run(args, base, repos, log))
    finally:
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result, indent=2))
    targets: dict[str, bool] = result["targets"]
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
