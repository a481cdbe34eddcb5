"""GitHub App auth and a thin REST client: app JWT, installation tokens cached (Redis when given), retries."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import timedelta
from typing import Any, cast

import httpx
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization
from githubkit import AppAuthStrategy, GitHub
from githubkit.cache import AsyncRedisCacheStrategy, BaseCacheStrategy, MemCacheStrategy
from githubkit.exception import GitHubException, GraphQLFailed, RateLimitExceeded, RequestFailed
from githubkit.typing import RetryOption

from engine.settings import Settings

log = logging.getLogger(__name__)

# Bounded: a rate-limited or failing GitHub delays a reporter a little, never a job for long.
MAX_RETRIES = 3
MAX_RATE_LIMIT_WAIT = timedelta(seconds=60)


class GitHubUnavailable(RuntimeError):
    """GitHub could not be reached or kept failing; the caller decides what the user sees."""


def retry_decision(exc: GitHubException, retry_count: int) -> RetryOption:
    """Honour Retry-After / X-RateLimit-Reset (capped) and back off briefly on 5xx, a few times at most."""
    if retry_count >= MAX_RETRIES:
        return RetryOption(False)
    if isinstance(exc, RateLimitExceeded):
        # At least a second: githubkit reads a zero delay as "unknown" and would sleep a full minute.
        wait = min(max(exc.retry_after, timedelta(seconds=1)), MAX_RATE_LIMIT_WAIT)
        log.warning("GitHub rate limit hit; retrying in %ss", wait.total_seconds())
        return RetryOption(True, wait)
    if isinstance(exc, RequestFailed) and exc.response.status_code >= 500:
        # Jittered, so the workers that met the same outage do not all come back at the same instant.
        return RetryOption(True, timedelta(seconds=0.2 * 2**retry_count * random.uniform(0.5, 1.5)))
    return RetryOption(False)


class SharedTransport(httpx.AsyncBaseTransport):
    """One connection pool and TLS context for all of a process's GitHub calls.

    githubkit builds an httpx client per call (outside `async with GitHub(...)`, which a long-lived process
    cannot hold across tasks) and closes it after. A client's own transport costs 20-80 ms of CPU to build
    (it loads the CA bundle) and opens a new connection (TCP + TLS) per call; this one is built once, keeps
    connections alive, and outlives the per-call clients that close it.
    """

    def __init__(self) -> None:
        self._pool = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool.handle_async_request(request)

    async def aclose(self) -> None:
        pass  # a per-call client closing; the pool stays for the next call

    async def close_pool(self) -> None:
        await self._pool.aclose()


class GitHubApi:
    """One per process: the App's identity plus a client per installation (githubkit renews tokens)."""

    def __init__(self, settings: Settings, redis: aioredis.Redis | None) -> None:
        pem = settings.github_private_key_pem()  # OSError when it names a file that is not there
        if settings.github_app_id is None or pem is None:
            raise ValueError("GITHUB_APP_ID and GITHUB_PRIVATE_KEY are required for the GitHub API")
        # Fail now, with a clear message, rather than at the first webhook.
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        self.base_url = settings.github_api_url.rstrip("/") + "/"
        # githubkit hands the key to PyJWT, which signs with a loaded key as it does with PEM text; given
        # the text, it parses it again for every JWT: ~35 ms of CPU on the event loop each time, several at
        # once when a burst of webhooks finds no installation token cached.
        self._auth = AppAuthStrategy(settings.github_app_id, cast(str, key))
        # Shared through Redis so every web and worker process reuses one installation token until expiry.
        self._cache: BaseCacheStrategy = (
            AsyncRedisCacheStrategy(redis, prefix="autodev:githubkit") if redis else MemCacheStrategy()
        )
        self._slug = settings.github_app_slug
        self._slug_asked_at = float("-inf")
        self._slug_task: asyncio.Task[None] | None = None
        self._transport = SharedTransport()
        self._app = self._client(self._auth)
        self._installations: dict[int, GitHub[Any]] = {}

    def _client(self, auth: Any) -> GitHub[Any]:
        return GitHub(
            auth,
            base_url=self.base_url,
            cache_strategy=self._cache,
            http_cache=False,
            auto_retry=retry_decision,
            timeout=30.0,
            user_agent="autodev",
            async_transport=self._transport,
        )

    def installation(self, installation_id: int) -> GitHub[Any]:
        client = self._installations.get(installation_id)
        if client is None:
            client = self._client(self._auth.as_installation(installation_id))
            self._installations[installation_id] = client
        return client

    async def request(
        self,
        installation_id: int | None,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """Call the REST API as the installation (or the App itself when `installation_id` is None)."""
        client = self._app if installation_id is None else self.installation(installation_id)
        try:
            response = await client.arequest(method, path.lstrip("/"), json=json, params=params)
        except RequestFailed:
            raise
        except (GitHubException, httpx.HTTPError) as exc:
            raise GitHubUnavailable(f"{method} {path}: {exc}") from exc
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def graphql(self, installation_id: int, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """A GraphQL call: GraphQLFailed when GitHub answers errors, GitHubUnavailable when unreachable."""
        try:
            return await self.installation(installation_id).async_graphql(query, variables)
        except (RequestFailed, GraphQLFailed):
            raise
        except (GitHubException, httpx.HTTPError) as exc:
            raise GitHubUnavailable(f"GraphQL: {exc}") from exc

    async def download_tail(
        self, installation_id: int, path: str, *, max_bytes: int, keep_bytes: int
    ) -> bytes:
        """The last `keep_bytes` of a download such as a job's log: GitHub answers the API path with a
        redirect to a short-lived URL, which is fetched without the token (it is on another host), asking for
        the tail (Range) and reading at most `max_bytes` whatever the server sends. GitHubUnavailable when it
        cannot be had."""
        token = await self.token(installation_id)
        api_headers = {"Authorization": f"token {token}", "Accept": "application/vnd.github+json"}
        try:
            async with httpx.AsyncClient(
                transport=self._transport, timeout=30.0, headers={"User-Agent": "autodev"}
            ) as http:
                first = await http.get(self.base_url + path.lstrip("/"), headers=api_headers)
                if first.is_redirect and "location" in first.headers:
                    tail = {"Range": f"bytes=-{keep_bytes}"}
                    async with http.stream("GET", first.headers["location"], headers=tail) as response:
                        if response.status_code not in (200, 206):
                            raise GitHubUnavailable(f"GET {path}: download answered {response.status_code}")
                        return await _read_tail(response, max_bytes, keep_bytes)
                if first.status_code != 200:
                    raise GitHubUnavailable(f"GET {path}: HTTP {first.status_code}")
                return first.content[-keep_bytes:]
        except httpx.HTTPError as exc:
            raise GitHubUnavailable(f"GET {path}: {exc}") from exc

    async def token(self, installation_id: int) -> str:
        """The installation's access token (cached; githubkit renews it a minute before it expires)."""
        client = self.installation(installation_id)
        probe = httpx.Request("GET", self.base_url + "installation/repositories")
        flow = client.auth.get_auth_flow(client).async_auth_flow(probe)
        request = await flow.__anext__()
        while request is not probe:
            async with httpx.AsyncClient(timeout=30.0, transport=self._transport) as http:
                response = await http.send(request)
            request = await flow.asend(response)
        header = probe.headers.get("Authorization", "")
        if not header.startswith("token "):
            raise GitHubUnavailable("could not obtain an installation token")
        return header.removeprefix("token ")

    async def slug(self) -> str:
        """The App's mention name: GITHUB_APP_SLUG, else asked once from `GET /app`."""
        if self._slug is None:
            app = await self.request(None, "GET", "/app")
            self._slug = str(app["slug"])
        return self._slug

    def known_slug(self) -> str | None:
        """The mention name if known without a call. When it is not (GITHUB_APP_SLUG unset), `GET /app` is
        asked in the background, at most once a minute, for the next caller; this one is not held up."""
        if self._slug is None and time.monotonic() - self._slug_asked_at > 60:
            self._slug_asked_at = time.monotonic()
            self._slug_task = asyncio.get_running_loop().create_task(self._learn_slug(), name="github-slug")
        return self._slug

    async def _learn_slug(self) -> None:
        try:
            await self.slug()
        except Exception as exc:
            log.warning("could not read the App's name from GitHub (GET /app): %s", exc)

    async def aclose(self) -> None:
        if self._slug_task is not None:
            self._slug_task.cancel()
            await asyncio.gather(self._slug_task, return_exceptions=True)
        self._installations.clear()
        await self._transport.close_pool()


async def _read_tail(response: httpx.Response, max_bytes: int, keep_bytes: int) -> bytes:
    """The last `keep_bytes` of the first `max_bytes` of the body (a log can be gigabytes)."""
    kept = b""
    read = 0
    async for chunk in response.aiter_bytes():
        read += len(chunk)
        kept = (kept + chunk)[-keep_bytes:]
        if read >= max_bytes:
            break
    return kept
