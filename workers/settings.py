"""The ARQ worker's options; the composition root adds redis, ctx and the start-up/shut-down hooks."""

from __future__ import annotations

import socket
from typing import Any

from arq import cron
from arq.constants import default_queue_name, health_check_key_suffix
from arq.worker import Worker

from engine.settings import Settings
from workers.deliveries import DELIVERY_TIMEOUT_S, handle_delivery
from workers.jobs import job_timeout_s, reconcile, run_job
from workers.queue import HANDLE_DELIVERY, RUN_JOB

# How often a worker records its heartbeat in Redis; the key lives one second longer (ARQ's rule), so a
# worker that stopped polling is unhealthy within ~11 s. One SET per interval.
HEALTH_CHECK_INTERVAL_S = 10


def health_check_key(host: str | None = None) -> str:
    """The heartbeat key of the workers on `host` (machine or container), read by `autodev worker --check`.

    ARQ's default is one key per queue: any live worker keeps it fresh, so a dead one would look healthy."""
    return f"{default_queue_name}{health_check_key_suffix}:{host or socket.gethostname()}"


def worker_options(settings: Settings, *, burst: bool = False, reconciler: bool = True) -> dict[str, Any]:
    from arq.worker import func

    job_timeout = job_timeout_s(settings)
    return {
        "functions": [
            func(run_job, name=RUN_JOB, max_tries=settings.job_max_tries, timeout=job_timeout),
            func(
                handle_delivery,
                name=HANDLE_DELIVERY,
                max_tries=settings.trigger_max_tries,
                timeout=DELIVERY_TIMEOUT_S,
            ),
        ],
        "cron_jobs": [cron(reconcile, second={0, 15, 30, 45}, run_at_startup=True, unique=True)]
        if reconciler
        else [],
        "max_jobs": settings.worker_max_jobs,
        "job_timeout": job_timeout,
        "max_tries": settings.job_max_tries,
        "allow_abort_jobs": True,
        "keep_result": 3600,
        "burst": burst,
        "poll_delay": settings.worker_poll_delay_s if not burst else 0.05,
        "handle_signals": False,
        "health_check_key": health_check_key(),
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
    }


class AutodevWorker(Worker):
    """ARQ's worker, minus a needless Redis round trip per running job per poll.

    A job stays in ARQ's queue (a sorted set) until it ends, so while any slot is free every poll reads
    the running jobs' ids again and asks Redis, three round trips each, whether each is already running.
    The ones this worker runs are known here: with 59 jobs running and a poll every 50 ms that was up to
    ~3,500 Redis commands a second. Other workers' jobs are still checked in Redis, as ARQ does.
    """

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        running_here = {job_id for job_id, task in self.tasks.items() if not task.done()}
        await super().start_jobs([j for j in job_ids if j.decode() not in running_here])
