"""The ARQ worker's options; the composition root adds redis, ctx and the start-up/shut-down hooks."""

from __future__ import annotations

from typing import Any

from arq import cron

from engine.settings import Settings
from workers.jobs import job_timeout_s, reconcile, run_job
from workers.queue import RUN_JOB


def worker_options(settings: Settings, *, burst: bool = False, reconciler: bool = True) -> dict[str, Any]:
    from arq.worker import func

    job_timeout = job_timeout_s(settings)
    return {
        "functions": [func(run_job, name=RUN_JOB, max_tries=settings.job_max_tries, timeout=job_timeout)],
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
    }
