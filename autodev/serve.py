"""Running the service: the web app and/or an ARQ worker in one event loop, stopped cleanly on a signal.

On SIGINT/SIGTERM the web server stops taking connections, the worker stops picking jobs and gives
running ones a bounded time to reach their end (the engine's steps are checkpoints; whatever is still
running after that is cancelled and ARQ puts it back on the queue for the next worker), then the clients,
the database pool and the embedded Redis are closed, in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Generator
from typing import Any

import uvicorn
from arq.worker import Worker

from autodev.app import create_app
from autodev.runtime import Runtime
from engine.settings import Settings
from engine.store.db import upgrade
from workers.settings import AutodevWorker, worker_options

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 25.0


class _Server(uvicorn.Server):
    # We own the signals (one handler stops web and worker together); uvicorn must not re-raise them.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def build_worker(runtime: Runtime, *, burst: bool = False) -> AutodevWorker:
    return AutodevWorker(
        **worker_options(runtime.settings, burst=burst),
        redis_pool=runtime.redis,
        ctx=worker_context(runtime),
    )


def worker_context(runtime: Runtime) -> dict[str, Any]:
    """What the worker's tasks find in ARQ's `ctx` (workers/jobs.py, workers/deliveries.py)."""
    return {
        "deps": runtime.engine_deps(),
        "queue": runtime.queue,
        "deliveries": runtime.github.deliveries,
        "approvals": runtime.github.approvals,
    }


async def stop_worker(worker: Worker, grace: float) -> None:
    """Stop taking jobs, give running ones `grace` seconds, then cancel the rest (ARQ requeues them)."""
    worker.allow_pick_jobs = False
    running = [t for t in worker.tasks.values() if not t.done()]
    if running:
        log.info("waiting up to %.0fs for %d running job(s)", grace, len(running))
        _, pending = await asyncio.wait(running, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)
    if worker.main_task is not None:
        worker.main_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await worker.main_task
    with contextlib.suppress(Exception):
        await worker.pool.delete(worker.health_check_key)


async def run_service(
    settings: Settings, *, host: str, port: int, web: bool = True, worker: bool = True
) -> None:
    await upgrade(settings.database_url)
    runtime = await Runtime.start(settings, start_embedded_redis=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    server: _Server | None = None
    arq_worker: Worker | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        if web:
            runtime.slack.start()  # the bot token's check, in the background
            await runtime.slack.start_socket_mode()
            config = uvicorn.Config(
                create_app(runtime), host=host, port=port, log_config=None, lifespan="off"
            )
            server = _Server(config)
            tasks.append(asyncio.create_task(server.serve(), name="web"))
        if worker:
            arq_worker = build_worker(runtime)
            arq_worker.main_task = asyncio.create_task(arq_worker.main(), name="worker")
            tasks.append(arq_worker.main_task)
        # Everything built so far (modules, models, the app) lives as long as the process: move it out of
        # the collector's sight, or every full collection walks it again — 20-25 % of the web process's
        # CPU under a burst of webhooks (docs/benchmarks.md).
        gc.collect()
        gc.freeze()
        parts = "+".join(name for name, on in (("web", web), ("worker", worker)) if on)
        log.info("autodev %s on http://%s:%d", parts, host, port)
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        stopper.cancel()
    finally:
        log.info("shutting down")
        if server is not None:
            server.should_exit = True
        if arq_worker is not None:
            await stop_worker(arq_worker, SHUTDOWN_GRACE_S)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 10)
        await runtime.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
