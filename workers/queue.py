"""The ARQ side of the `JobQueue` port: only job ids go on the queue, the worker loads the rest."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import unquote, urlparse

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import abort_jobs_ss, job_key_prefix, result_key_prefix
from arq.jobs import Job as ArqJob
from arq.jobs import JobStatus, serialize_job
from arq.utils import timestamp_ms

log = logging.getLogger(__name__)

RUN_JOB = "run_job"
HANDLE_DELIVERY = "handle_delivery"
# What run_job returns for a job it let go of because another job has its branch (engine.store.conversations).
WAITED = "queued"
DELIVERY_JOB_PREFIX = "delivery:"  # ARQ ids of delivery tasks: never the same as a job's (a uuid hex)

# ARQ's enqueue_job for many ids at once: an id whose job or result key exists is skipped, as ARQ does.
# ARGV: now_ms, expires_ms, then (job id, serialized job) pairs; KEYS[1]: the queue.
ENQUEUE_MANY = f"""
local added = 0
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('EXISTS', '{job_key_prefix}' .. id, '{result_key_prefix}' .. id) == 0 then
    redis.call('PSETEX', '{job_key_prefix}' .. id, ARGV[2], ARGV[i + 1])
    redis.call('ZADD', KEYS[1], ARGV[1], id)
    added = added + 1
  end
end
return added
"""


def delivery_job_id(delivery_id: str) -> str:
    return DELIVERY_JOB_PREFIX + delivery_id


def redis_settings_from_url(url: str) -> RedisSettings:
    """ARQ settings for redis://, rediss:// and unix:// URLs (the embedded Redis listens on a socket)."""
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        from urllib.parse import parse_qs

        query = parse_qs(parsed.query)
        return RedisSettings(
            unix_socket_path=unquote(parsed.path),
            database=int(query.get("db", ["0"])[0]),
            password=unquote(parsed.password) if parsed.password else None,
        )
    return RedisSettings.from_dsn(url)


async def connect(url: str) -> ArqRedis:
    return await create_pool(redis_settings_from_url(url))


class ArqJobQueue:
    """Enqueue with `_job_id=job_id`, so a second enqueue of a queued or running job does nothing."""

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis
        self._enqueue_script = redis.register_script(ENQUEUE_MANY)

    async def enqueue(self, job_id: str) -> None:
        """Also wakes a job whose last run let go of it while another job had its branch (its result is
        `waited`): that result is dropped so the id can be queued again."""
        job = await self.redis.enqueue_job(RUN_JOB, job_id, _job_id=job_id)
        if job is None and await self.waited(job_id):
            await self.forget(job_id)
            job = await self.redis.enqueue_job(RUN_JOB, job_id, _job_id=job_id)
        if job is None:
            log.info("job already on the queue", extra={"job_id": job_id})

    async def waited(self, job_id: str) -> bool:
        """Whether ARQ's last run of the job ended with the job still queued (it waits behind another)."""
        info = await ArqJob(job_id, self.redis).result_info()
        return info is not None and info.success and info.result == WAITED

    async def enqueue_many(self, job_ids: Sequence[str]) -> None:
        """What `enqueue` does for each id (skipping ids ARQ already holds), in one atomic round trip."""
        await self._enqueue_many(RUN_JOB, [(job_id, job_id) for job_id in job_ids])

    async def enqueue_deliveries(self, delivery_ids: Sequence[str]) -> None:
        """`handle_delivery` for each stored delivery, as `enqueue_many` does for jobs."""
        await self._enqueue_many(HANDLE_DELIVERY, [(delivery_job_id(d), d) for d in delivery_ids])

    async def _enqueue_many(self, function: str, calls: Sequence[tuple[str, str]]) -> None:
        """`function(argument)` under each (ARQ id, argument), skipping ids ARQ holds, in one round trip."""
        if not calls:
            return
        now = timestamp_ms()
        serializer = self.redis.job_serializer
        args: list[bytes | str | int] = [now, self.redis.expires_extra_ms]
        for arq_id, argument in calls:
            args += [arq_id, serialize_job(function, (argument,), {}, None, now, serializer=serializer)]
        added = await self._enqueue_script(keys=[self.redis.default_queue_name], args=args)
        if int(added) < len(calls):
            log.info(
                "%d of %d %s calls were already on the queue", len(calls) - int(added), len(calls), function
            )

    async def abort(self, job_id: str) -> None:
        # ArqJob.abort() waits for the result; a cancel from a web request must not, so set the flag only.
        await self.redis.zadd(abort_jobs_ss, {job_id: timestamp_ms()})

    async def status(self, job_id: str) -> JobStatus:
        return await ArqJob(job_id, self.redis).status()

    async def forget(self, job_id: str) -> None:
        """Drop ARQ's finished result for the id, so the same id can be enqueued again."""
        await self.redis.delete(result_key_prefix + job_id)

    async def depth(self) -> tuple[int, float | None]:
        """How many jobs wait in the queue, and the age in seconds of the oldest."""
        from arq.constants import default_queue_name

        count = await self.redis.zcard(default_queue_name)
        oldest = await self.redis.zrange(default_queue_name, 0, 0, withscores=True)
        age = (timestamp_ms() - oldest[0][1]) / 1000 if oldest else None
        return int(count), age
