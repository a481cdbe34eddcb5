"""Trigger to first sign of life: a signed `issues.labeled` delivery → 👀 and the first comment or check run.

    .venv/bin/python bench/first_sign_of_life.py [--deliveries 200] [--gap 0.3] [--jitter 0.5]
        [--mode split|serve|both] [--redis-url redis://127.0.0.1:6379/12] [--database-url URL]
        [--idle 15] [--source DIR] [--env NAME=VALUE …]

Runs the service the way a user does, as real processes configured by environment variables only:
`autodev web` + `autodev worker` (mode `split`) or `autodev serve` (mode `serve`), on SQLite and the embedded
Redis by default, in a temp dir of its own. GitHub and the LLM are the fakes from tests/support, served on
127.0.0.1 from this process, which timestamps every call the service makes to them.

Once the worker is up and idle it measures the idle cost of waiting for jobs (CPU of each process, Redis
commands per second) over --idle seconds. Then it sends --deliveries signed `issues.labeled` deliveries, one
at a time, each with a unique delivery id and issue number. Per delivery: t0 just before the POST; accept when
the 202 (with a job id) is back; eyes when the fake GitHub gets the 👀 reaction; first when it gets the first
issue comment or check-run create (a check run needs a pushed commit, so for a new issue job the first sign is
its sticky comment); end when the comment shows the job's terminal state. The fake LLM has no
scripted replies, so it answers 400 at the plan and every job fails fast after its first signs; the next
delivery goes --gap + uniform(0, --jitter) seconds after the previous job ended, so the worker is idle for
each (the jitter keeps deliveries from locking onto a phase of the worker's polling). The worker's own log
line for each job gives ARQ's queue wait. Latencies are from t0, in ms: p50, p90, p99 (nearest rank), max.

--source DIR runs the service from another checkout (put first on PYTHONPATH), to compare a patch with the
baseline in one run; --env passes extra settings to the service. Prints one JSON object; exits 1 when a
delivery was not accepted or showed no first sign.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from githubkit.webhooks import sign

from tests.support.fake_github import Call, FakeGitHub
from tests.support.fake_llm import FakeLLM
from workers.settings import health_check_key

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "fixtures" / "github-webhooks" / "examples" / "issues" / "labeled.payload.json"
REPO = "Codertocat/Hello-World"
INSTALLATION = 77
SECRET = "bench-webhook-secret"
TARGET_P50_MS, TARGET_P99_MS = 150.0, 400.0
JOB_URL = re.compile(r"/jobs/([^?/\s)]+)\?t=")
ISSUE_CALL = re.compile(r"/repos/[^/]+/[^/]+/issues/(\d+)/(reactions|comments)")
TERMINAL = ("· Failed", "· Succeeded", "· Cancelled")
NUMBER = re.compile(r"/\d+")
ARQ_START = re.compile(r"^\s*([\d.]+)s → ([^:\s]+):run_job\(")
# Nothing from the caller's shell configures the service behind the bench's back.
SETTINGS_PREFIXES = ("GITHUB_", "SLACK_", "OPENAI_", "MODEL_", "JOB_", "AUTODEV_", "WORKER_", "LLM_")
SETTINGS_NAMES = {"DATABASE_URL", "REDIS_URL", "DATA_DIR", "PUBLIC_URL", "LOG_LEVEL", "LOG_JSON"}


class TimedGitHub(FakeGitHub):
    """The tests' fake GitHub, plus the arrival time of the first sign of each kind for each job."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict[tuple[str, str], float] = {}  # (kind, job id or issue number) → perf_counter()
        self.job_of_issue: dict[str, str] = {}  # from the job's links in its comments on the issue
        self.changed = asyncio.Event()

    async def _dispatch(self, request: web.Request) -> web.Response:
        arrived = time.perf_counter()
        response = await super()._dispatch(request)
        body = (await request.read()).decode(errors="replace")  # aiohttp keeps the body it read
        for kind, key in self.classify(request.method, request.path, body):
            self.first.setdefault((kind, key), arrived)
        issue, found = ISSUE_CALL.fullmatch(request.path), JOB_URL.search(body)
        if request.method == "POST" and issue and issue.group(2) == "comments" and found:
            self.job_of_issue.setdefault(issue.group(1), found.group(1))
        self.changed.set()
        return response

    @staticmethod
    def classify(method: str, path: str, body: str) -> list[tuple[str, str]]:
        found = JOB_URL.search(body)
        job = found.group(1) if found else ""
        issue = ISSUE_CALL.fullmatch(path)
        if method == "POST" and issue and issue.group(2) == "reactions" and '"eyes"' in body:
            return [("eyes", issue.group(1))]
        if method == "POST" and issue and issue.group(2) == "comments" and job:
            return [("first", job)]
        if method == "POST" and path.endswith("/check-runs") and job:
            return [("first", job)]
        if method == "PATCH" and job and any(mark in body for mark in TERMINAL):
            return [("end", job)]
        return []

    async def job_for(self, issue: str, within: float) -> str | None:
        deadline = time.monotonic() + within
        while issue not in self.job_of_issue:
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return self.job_of_issue[issue]

    async def wait_for(self, kind: str, key: str, within: float) -> float | None:
        deadline = time.monotonic() + within
        while (kind, key) not in self.first:
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return self.first[(kind, key)]


@dataclass
class Delivery:
    number: int
    status: int = 0
    job_id: str = ""
    accept: float | None = None
    eyes: float | None = None
    first: float | None = None
    end: float | None = None


@dataclass
class Service:
    mode: str
    port: int
    data: Path
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)


def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def make_remote(root: Path) -> Path:
    """A tiny bare repository, the fake GitHub's clone_url (file://), so each job gets as far as the plan."""
    seed, bare = root / "seed", root / "hello.git"
    (seed / "src").mkdir(parents=True)
    (seed / "README.md").write_text("Hello\n")
    (seed / "src" / "hello.py").write_text("def hello() -> str:\n    return 'hello'\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "bench"}
    env["GIT_COMMITTER_EMAIL"] = "b@x"
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "seed"]):
        subprocess.run(["git", "-C", str(seed), *command], check=True, env=env)
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(bare)], check=True)
    return bare


def delivery_body(number: int, label: str) -> bytes:
    """The corpus's real `issues.labeled` payload (a minimal one without it), as the App receives it."""
    data: dict[str, Any] = json.loads(CORPUS.read_text()) if CORPUS.exists() else {"action": "labeled"}
    issue = data.setdefault("issue", {"title": "Spelling error in the README file", "body": "It's broken."})
    issue.update(number=number, user={"login": "alice", "type": "User"})
    data["label"] = {**data.get("label", {}), "name": label}
    data["repository"] = {**data.get("repository", {}), "full_name": REPO}
    data["installation"] = {"id": INSTALLATION}
    data["sender"] = {**data.get("sender", {}), "login": "alice", "type": "User"}
    return json.dumps(data).encode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def service_env(
    args: argparse.Namespace, tmp: Path, github: FakeGitHub, llm: FakeLLM, port: int
) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_PREFIXES) and k not in SETTINGS_NAMES
    }
    env.update(
        DATA_DIR=str(tmp / "data"),
        DATABASE_URL=args.database_url or f"sqlite+aiosqlite:///{tmp / 'data' / 'autodev.db'}",
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        GITHUB_APP_ID=str(github.app_id),
        GITHUB_PRIVATE_KEY=args.private_key,
        GITHUB_WEBHOOK_SECRET=SECRET,
        GITHUB_API_URL=github.api_url,
        OPENAI_BASE_URL=llm.base_url,
        OPENAI_API_KEY="sk-bench",
        LLM_MAX_RETRIES="0",
        LOG_JSON="true",
    )
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    if args.source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.source, env.get("PYTHONPATH")]))
    env.update(item.split("=", 1) for item in args.env)
    return env


def redis_url_of(args: argparse.Namespace, data: Path) -> str:
    return args.redis_url or f"unix://{data / 'redis' / 'redis.sock'}"


async def start_service(mode: str, env: dict[str, str], tmp: Path, args: argparse.Namespace) -> Service:
    port = int(env["PUBLIC_URL"].rsplit(":", 1)[1])
    service = Service(mode, port, Path(env["DATA_DIR"]), tmp / f"logs-{mode}")
    service.logs.mkdir()
    commands = {"serve": ["serve", "--port", str(port)]}
    if mode == "split":
        commands = {"web": ["web", "--port", str(port)], "worker": ["worker"]}
    async with httpx.AsyncClient() as http:
        for name, command in commands.items():
            service.processes[name] = spawn(command, tmp, env, service.logs / f"{name}.log")
            if name in ("web", "serve"):  # the web side migrates the database and starts the embedded Redis
                await wait_until(lambda: healthy(http, port), 60, service, "the web app")
    redis = aioredis.Redis.from_url(redis_url_of(args, service.data))
    try:
        await wait_until(lambda: worker_polling(redis), 60, service, "the worker")
    finally:
        await redis.aclose()
    return service


def spawn(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "autodev", *command], cwd=cwd, env=env, stdout=out, stderr=out
        )


async def healthy(http: httpx.AsyncClient, port: int) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
    return False


async def worker_polling(redis: aioredis.Redis) -> bool:
    with contextlib.suppress(OSError, aioredis.RedisError):
        return bool(await redis.exists(health_check_key()))  # set by the worker's first poll
    return False


async def wait_until(check: Any, within: float, service: Service, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        for name, process in service.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited ({process.returncode}); see {service.logs / (name + '.log')}"
                )
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {within:.0f}s; see {service.logs}")
        await asyncio.sleep(0.1)


def stop_service(service: Service) -> None:
    for name in ("worker", "serve", "web"):  # the web process owns the embedded Redis: last
        process = service.processes.get(name)
        if process is None or process.poll() is not None:
            continue
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle_cost(service: Service, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """CPU of each process and Redis commands per second while the worker waits for work."""
    pids = {name: p.pid for name, p in service.processes.items()}
    pid_file = service.data / "redis" / "redis.pid"
    if not args.redis_url and pid_file.exists():
        pids["embedded_redis"] = int(pid_file.read_text().split()[0])
    redis = aioredis.Redis.from_url(redis_url_of(args, service.data))
    try:
        before_cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
        before_cmds = int((await redis.info("stats"))["total_commands_processed"])
        started = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        after_cmds = int((await redis.info("stats"))["total_commands_processed"])
        after_cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    finally:
        await redis.aclose()
    result: dict[str, Any] = {
        f"{name}_cpu_pct": round(100 * (after_cpu[name] - before_cpu[name]) / elapsed, 2) for name in pids
    }
    result["redis_commands_per_s"] = round((after_cmds - before_cmds - 1) / elapsed, 1)
    result["seconds"] = round(elapsed, 1)
    if args.redis_url:
        result["note"] = "shared Redis server: commands/s include other clients"
    return result


async def deliver_all(
    args: argparse.Namespace, service: Service, github: TimedGitHub, rng: random.Random, base: int
) -> list[Delivery]:
    results: list[Delivery] = []
    url = f"http://127.0.0.1:{service.port}/github/webhooks"
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(args.deliveries):
            delivery = Delivery(number=base + i)
            body = delivery_body(delivery.number, args.label)
            issue = json.loads(body)["issue"]  # the worker reads it back (title, body, comments)
            github.repos[REPO].issues[delivery.number] = {k: issue.get(k) for k in ("title", "body", "user")}
            headers = {
                "X-GitHub-Event": "issues",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": sign(SECRET, body),
                "Content-Type": "application/json",
                "User-Agent": "GitHub-Hookshot/bench",
            }
            t0 = time.perf_counter()
            response = await http.post(url, content=body, headers=headers)
            delivery.accept = time.perf_counter() - t0
            delivery.status = response.status_code
            results.append(delivery)
            if response.status_code != 202 or not response.json().get("stored"):
                continue
            # The webhook stores the delivery; the worker makes the job, whose id its comment links.
            arrived = await github.wait_for("eyes", str(delivery.number), args.timeout)
            delivery.eyes = None if arrived is None else arrived - t0
            delivery.job_id = await github.job_for(str(delivery.number), args.timeout) or ""
            if not delivery.job_id:
                continue
            arrived = await github.wait_for("first", delivery.job_id, args.timeout)
            delivery.first = None if arrived is None else arrived - t0
            ended = await github.wait_for("end", delivery.job_id, args.timeout)
            delivery.end = None if ended is None else ended - t0
            await asyncio.sleep(args.gap + rng.uniform(0, args.jitter))
    return results


def queue_waits(logs: Path) -> dict[str, float]:
    """ARQ's own figure per job: seconds from enqueue to the worker starting it (10 ms resolution)."""
    waits: dict[str, float] = {}
    for path in logs.glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                message = json.loads(line).get("message", "")
                if found := ARQ_START.match(message):
                    waits[found.group(2)] = float(found.group(1))
    return waits


def calls_per_delivery(calls: list[Call], deliveries: int) -> dict[str, float]:
    """What the service asked the fake GitHub, by route (numbers folded), per delivery."""
    routes = Counter(c.method + " " + NUMBER.sub("/N", c.path) for c in calls)
    return {route: round(n / max(deliveries, 1), 2) for route, n in routes.most_common()}


def log_problems(logs: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in logs.glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError, AttributeError):
                entry = json.loads(line)
                if entry.get("level") in ("warning", "error", "critical"):
                    key = f"{entry['level']}: {entry.get('message', '')[:60]}"
                    counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:8])


def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)] * 1000

    return {
        "n": len(ordered),
        "p50": round(rank(0.50), 1),
        "p90": round(rank(0.90), 1),
        "p99": round(rank(0.99), 1),
        "max": round(ordered[-1] * 1000, 1),
    }


async def measure_mode(
    mode: str, args: argparse.Namespace, tmp: Path, github: TimedGitHub, llm: FakeLLM, base: int
) -> dict[str, Any]:
    run_dir = tmp / mode
    run_dir.mkdir()
    if args.redis_url:
        flusher = aioredis.Redis.from_url(args.redis_url)
        await flusher.flushdb()  # only the bench's own db (give one in the URL)
        await flusher.aclose()
    env = service_env(args, run_dir, github, llm, free_port())
    started = time.monotonic()
    service = await start_service(mode, env, run_dir, args)
    try:
        startup_s = time.monotonic() - started
        await asyncio.sleep(args.settle)  # the reconciler's start-up run and the first poll are done
        idle = await idle_cost(service, args, args.idle)
        mark = len(github.calls)
        rows = await deliver_all(args, service, github, random.Random(args.seed), base)
        calls = github.calls[mark:]
    finally:
        stop_service(service)
    waits = queue_waits(service.logs)
    wait_values = [waits[r.job_id] for r in rows if r.job_id in waits]
    worker_part = [
        r.eyes - r.accept - waits[r.job_id]
        for r in rows
        if r.eyes is not None and r.accept is not None and r.job_id in waits
    ]
    firsts = [r.first for r in rows if r.first is not None]
    result = {
        "processes": "autodev serve (web + worker, one process)"
        if mode == "serve"
        else "autodev web + autodev worker",
        "startup_s": round(startup_s, 1),
        "idle": idle,
        "accepted": sum(r.status == 202 and bool(r.job_id) for r in rows),
        "not_accepted": sorted({r.status for r in rows if r.status != 202 or not r.job_id}),
        "no_first_sign": sum(r.job_id != "" and r.first is None for r in rows),
        "not_ended": sum(r.job_id != "" and r.end is None for r in rows),
        "latency_ms": {
            "accept": percentiles([r.accept for r in rows if r.accept is not None]),
            "eyes": percentiles([r.eyes for r in rows if r.eyes is not None]),
            "first_sign": percentiles(firsts),
            "job_end": percentiles([r.end for r in rows if r.end is not None]),
        },
        "breakdown_ms": {
            "arq_queue_wait": percentiles(wait_values),
            "worker_start_to_eyes": percentiles(worker_part),
        },
        "targets": {
            "first_sign_p50_ms": TARGET_P50_MS,
            "first_sign_p99_ms": TARGET_P99_MS,
            "met": bool(firsts)
            and percentiles(firsts)["p50"] < TARGET_P50_MS
            and percentiles(firsts)["p99"] < TARGET_P99_MS,
        },
        "github_calls_per_delivery": calls_per_delivery(calls, len(rows)),
        "log_warnings": log_problems(service.logs),
    }
    if args.keep:
        result["logs"] = str(service.logs)
    return result


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    modes = ["split", "serve"] if args.mode == "both" else [args.mode]
    github = TimedGitHub()
    async with github, FakeLLM() as llm:
        github.add_repo(REPO, clone_url=f"file://{make_remote(tmp)}", writers={"alice"})
        results = {}
        for index, mode in enumerate(modes):
            results[mode] = await measure_mode(mode, args, tmp, github, llm, 1000 + 100_000 * index)
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": sys.version.split()[0],
        **{name: version(name) for name in ("arq", "githubkit", "httpx", "fastapi", "uvicorn", "sqlalchemy")},
        "redis_py": version("redis"),
        "source": args.source or str(ROOT),
        "database": "custom" if args.database_url else "sqlite (default)",
        "redis": args.redis_url or "embedded (default)",
        "payload": "corpus issues/labeled" if CORPUS.exists() else "minimal inline",
        "llm": "fake, no scripted replies: 400 at the plan, jobs fail fast after their first signs",
        "deliveries": args.deliveries,
        "gap_s": args.gap,
        "jitter_s": args.jitter,
        "service_env": args.env,
        "modes": results,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.3, help="seconds from a job's end to the next POST")
    parser.add_argument("--jitter", type=float, default=0.5, help="plus uniform(0, jitter) seconds")
    parser.add_argument("--mode", choices=["split", "serve", "both"], default="split")
    parser.add_argument("--redis-url", help="an external Redis with a db of the bench's own (it is flushed)")
    parser.add_argument("--database-url", help="an empty database of the bench's own (default: SQLite)")
    parser.add_argument("--idle", type=float, default=15.0, help="seconds of idle measurement")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to let the worker go idle first")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each sign")
    parser.add_argument("--label", default="auto-dev")
    parser.add_argument("--source", help="run the service from this checkout instead (patch vs baseline)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra service env")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = parser.parse_args()
    args.private_key = private_key_pem()
    args.source = str(Path(args.source).resolve()) if args.source else None
    tmp = Path(tempfile.mkdtemp(prefix="first-sign-"))
    try:
        result = asyncio.run(run(args, tmp))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    failed = any(m["not_accepted"] or m["no_first_sign"] for m in result["modes"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
