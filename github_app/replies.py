"""Comments the App posts in answer to a trigger, and the limit on answering people who may not use it.

Help, refusals and "I don't know that" to someone without write access, and notices that GitHub kept
failing, are posted at most once per issue per hour (per kind): anyone may comment on a public issue, and
the App must not be made to talk on every comment. Writers are answered every time.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from githubkit.exception import GraphQLFailed, RateLimitExceeded, RequestFailed

from github_app.client import GitHubApi, GitHubUnavailable

log = logging.getLogger(__name__)

ONCE_PER_SECONDS = 3600


class GitHubFailed(Exception):
    """A GitHub call failed while the worker was `doing` something; `transient` when a later try may work."""

    def __init__(self, doing: str, cause: RequestFailed | GitHubUnavailable | GraphQLFailed) -> None:
        self.doing = doing
        self.cause = cause
        status = cause.response.status_code if isinstance(cause, RequestFailed) else None
        self.status = status
        # Unreachable, 5xx and rate limits pass; a 4xx (no access, not found) or a GraphQL error (no such
        # node) will say the same next time.
        unreachable = isinstance(cause, GitHubUnavailable)
        self.transient = (
            unreachable or (status is not None and status >= 500) or isinstance(cause, RateLimitExceeded)
        )
        what = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"GitHub failed while {doing} ({what})")


class Replies:
    """Posts issue comments as the installation; `once_an_hour` keeps the limit (Redis, else in process)."""

    def __init__(self, api: GitHubApi, redis: aioredis.Redis | None) -> None:
        self.api = api
        self.redis = redis
        self._said: dict[str, float] = {}

    async def post(self, repo: str, installation_id: int, number: int, text: str) -> None:
        path = f"/repos/{repo}/issues/{number}/comments"
        try:
            await self.api.request(installation_id, "POST", path, json={"body": text})
        except (RequestFailed, GitHubUnavailable) as exc:
            raise GitHubFailed(f"replying on {repo}#{number}", exc) from exc

    async def once_an_hour(self, kind: str, repo: str, installation_id: int, number: int, text: str) -> bool:
        """Post unless a reply of this kind went to this issue in the last hour; whether it was posted."""
        key = f"autodev:github:said:{kind}:{repo}#{number}"
        if not await self._claim(key):
            log.info("not answering %s#%s again within the hour (%s)", repo, number, kind)
            return False
        try:
            await self.post(repo, installation_id, number, text)
        except GitHubFailed:
            await self._release(key)  # not said after all: a later try may say it
            raise
        return True

    async def _claim(self, key: str) -> bool:
        if self.redis is not None:
            return bool(await self.redis.set(key, "1", nx=True, ex=ONCE_PER_SECONDS))
        now = time.monotonic()
        if self._said.get(key, float("-inf")) > now:
            return False
        self._said = {k: until for k, until in self._said.items() if until > now}
        self._said[key] = now + ONCE_PER_SECONDS
        return True

    async def _release(self, key: str) -> None:
        if self.redis is not None:
            await self.redis.delete(key)
        else:
            self._said.pop(key, None)
