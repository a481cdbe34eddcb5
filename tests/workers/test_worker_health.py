"""`autodev worker --check`, a container's health check: healthy while a worker on this host polls Redis."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from arq.connections import ArqRedis

from autodev.serve import stop_worker
from engine.settings import Settings
from engine.store.jobs import JobStore
from tests.workers.conftest import worker_ctx
from workers.settings import AutodevWorker, health_check_key, worker_options


async def check(settings: Settings, redis_url: str, tmp_path: Path) -> tuple[int, str]:
    env = {
        "PATH": os.environ["PATH"],
        "REDIS_URL": redis_url,
        "DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "autodev", "worker", "--check",
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return await process.wait(), output.decode()


async def test_the_check_passes_only_while_a_worker_on_this_host_runs(
    settings: Settings, store: JobStore, pool: ArqRedis, clean_redis: str, tmp_path: Path
) -> None:
    code, output = await check(settings, clean_redis, tmp_path)
    assert code == 1 and "unhealthy: no heartbeat" in output

    worker = AutodevWorker(
        **worker_options(settings, reconciler=False), redis_pool=pool, ctx=worker_ctx(settings, store, pool)
    )
    worker.main_task = asyncio.create_task(worker.main())
    try:
        for _ in range(200):
            if await pool.exists(health_check_key()):
                break
            await asyncio.sleep(0.05)
        code, output = await check(settings, clean_redis, tmp_path)
        assert code == 0 and output.startswith("healthy:") and "j_complete=0" in output, output
    finally:
        await stop_worker(worker, grace=1)

    code, output = await check(settings, clean_redis, tmp_path)  # a stopped worker removes its heartbeat
    assert code == 1, output


def test_each_host_has_a_heartbeat_of_its_own(settings: Settings) -> None:
    """With one key per queue (ARQ's default), one live worker made every dead one look healthy."""
    assert worker_options(settings)["health_check_key"] == health_check_key(socket.gethostname())
    assert health_check_key("worker-1") != health_check_key("worker-2")
    assert worker_options(settings)["health_check_interval"] <= 30


async def test_no_redis_is_unhealthy(settings: Settings, tmp_path: Path) -> None:
    code, output = await check(settings, "redis://127.0.0.1:1/0", tmp_path)
    assert code == 1 and "Redis does not answer" in output
