"""`autodev worker --check`: is a worker on this host alive? ARQ's `arq --check`, for autodev's settings.

A running worker sets its heartbeat key in Redis at every poll (at most every HEALTH_CHECK_INTERVAL_S) with a
time to live one second longer; the key is there only while a worker on this host keeps polling.
"""

from __future__ import annotations

import sys

import redis

from autodev.runtime import resolve_redis
from engine.settings import Settings
from workers.settings import HEALTH_CHECK_INTERVAL_S, health_check_key


def check_worker(settings: Settings) -> int:
    key = health_check_key()
    try:
        url, _ = resolve_redis(settings, start_embedded=False)
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            heartbeat: bytes | None = client.get(key)  # type: ignore[assignment]  # sync client
        finally:
            client.close()
    except (RuntimeError, redis.RedisError) as exc:
        print(f"unhealthy: Redis does not answer: {exc}", file=sys.stderr)
        return 1
    if heartbeat is None:
        since = HEALTH_CHECK_INTERVAL_S + 1
        print(
            f"unhealthy: no heartbeat of a worker on this host in the last {since} s ({key})", file=sys.stderr
        )
        return 1
    print(f"healthy: {heartbeat.decode(errors='replace')}")
    return 0
