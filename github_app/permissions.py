"""Who may trigger jobs: the sender's permission on the repository, asked of GitHub and cached briefly."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
from githubkit.exception import RequestFailed

from github_app.client import GitHubApi

WRITERS = frozenset({"admin", "maintain", "write"})
PERMISSION_TTL_SECONDS = 60
LOCAL_PERMISSION_TTL_SECONDS = 10
LOCAL_PERMISSION_ENTRIES = 10_000


class Permissions:
    """A sender's permission on a repository: from this process (10 s), Redis (60 s), else GitHub.

    Lookups in flight are shared: a burst of triggers from one sender asks Redis (or GitHub) once. A lookup
    that fails is not remembered; every caller waiting on it gets the error."""

    def __init__(self, api: GitHubApi, redis: aioredis.Redis | None) -> None:
        self.api = api
        self.redis = redis
        self._known: dict[tuple[str, str], tuple[str, float]] = {}
        self._asking: dict[tuple[str, str], asyncio.Task[str]] = {}

    async def of(self, repo: str, user: str, installation_id: int) -> str:
        key = (repo, user)
        if (hit := self._known.get(key)) is not None and hit[1] > time.monotonic():
            return hit[0]
        asking = self._asking.get(key)
        if asking is None:
            asking = asyncio.create_task(self._shared(repo, user, installation_id))
            self._asking[key] = asking
            asking.add_done_callback(lambda task: self._remember(key, task))
        # Shielded: a caller that goes away does not cancel the others' answer.
        return await asyncio.shield(asking)

    async def is_writer(self, repo: str, user: str, installation_id: int) -> bool:
        return await self.of(repo, user, installation_id) in WRITERS

    def _remember(self, key: tuple[str, str], task: asyncio.Task[str]) -> None:
        del self._asking[key]
        if task.cancelled() or task.exception() is not None:
            return
        if len(self._known) >= LOCAL_PERMISSION_ENTRIES:
            self._known.clear()
        self._known[key] = (task.result(), time.monotonic() + LOCAL_PERMISSION_TTL_SECONDS)

    async def _shared(self, repo: str, user: str, installation_id: int) -> str:
        key = f"autodev:github:permission:{repo}:{user}"
        if self.redis is not None and (cached := await self.redis.get(key)) is not None:
            return cached.decode() if isinstance(cached, bytes) else str(cached)
        path = f"/repos/{repo}/collaborators/{user}/permission"
        try:
            answer = await self.api.request(installation_id, "GET", path)
            role = str(answer.get("role_name") or "")
            permission = role if role in WRITERS else str(answer.get("permission") or "none")
        except RequestFailed as exc:
            if exc.response.status_code != 404:
                raise
            permission = "none"  # not a collaborator at all
        if self.redis is not None:
            await self.redis.set(key, permission, ex=PERMISSION_TTL_SECONDS)
        return permission
