"""How the GitHub client decides to retry: 5xx with jittered backoff, rate limits by GitHub's headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from githubkit.exception import PrimaryRateLimitExceeded, RequestFailed
from githubkit.response import Response

from github_app.client import MAX_RATE_LIMIT_WAIT, MAX_RETRIES, GitHubApi, retry_decision
from tests.conftest import make_settings
from tests.github_app.conftest import private_key as private_key


def response(status: int) -> Response[Any]:
    request = httpx.Request("GET", "https://api.github.com/repos/octo/hello")
    return Response(httpx.Response(status, request=request), Any)


def failed(status: int) -> RequestFailed:
    return RequestFailed(response(status))


def test_a_5xx_is_retried_after_a_jittered_backoff_that_grows() -> None:
    first = {retry_decision(failed(502), 0).retry_after for _ in range(50)}
    third = {retry_decision(failed(502), 2).retry_after for _ in range(50)}
    assert len(first) > 1, "jittered: workers that met the same outage do not retry in lockstep"
    assert all(timedelta(seconds=0.1) <= d <= timedelta(seconds=0.3) for d in first if d is not None)
    assert all(timedelta(seconds=0.4) <= d <= timedelta(seconds=1.2) for d in third if d is not None)


def test_a_refusal_is_not_retried_and_nothing_is_retried_for_ever() -> None:
    assert retry_decision(failed(403), 0).do_retry is False
    assert retry_decision(failed(422), 0).do_retry is False
    assert retry_decision(failed(502), MAX_RETRIES).do_retry is False


def test_a_rate_limit_waits_what_github_says_within_a_cap() -> None:
    soon = PrimaryRateLimitExceeded(response(429), timedelta(seconds=7))
    late = PrimaryRateLimitExceeded(response(429), timedelta(hours=1))
    assert retry_decision(soon, 0).retry_after == timedelta(seconds=7)
    assert retry_decision(late, 0).retry_after == MAX_RATE_LIMIT_WAIT


@dataclass
class Seen:
    url: str
    peers: list[tuple[str, int]] = field(default_factory=list)
    authorizations: dict[str, str] = field(default_factory=dict)


@pytest.fixture
async def api_server() -> AsyncIterator[Seen]:
    """A GitHub on 127.0.0.1 that grants installation tokens and answers every other call with `{}`."""

    async def answer(request: web.Request) -> web.Response:
        seen.peers.append(request.transport.get_extra_info("peername") if request.transport else ("?", 0))
        seen.authorizations[request.path] = request.headers.get("Authorization", "")
        if request.path.endswith("/access_tokens"):
            return web.json_response({"token": "ghs_x", "expires_at": "2099-01-01T00:00:00Z"}, status=201)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    seen = Seen(f"http://127.0.0.1:{port}")
    try:
        yield seen
    finally:
        await runner.cleanup()


def app_api(tmp_path: Path, private_key: str, server: Seen, *, app_id: int) -> GitHubApi:
    settings = make_settings(
        tmp_path, github_app_id=app_id, github_private_key=private_key, github_api_url=server.url
    )
    return GitHubApi(settings, None)


async def test_a_process_reuses_one_connection_for_its_github_calls(
    tmp_path: Path, private_key: str, api_server: Seen
) -> None:
    """githubkit makes a client per call; the shared transport keeps the connection (and TLS setup) alive."""
    api = app_api(tmp_path, private_key, api_server, app_id=1)
    try:
        for _ in range(3):
            await api.request(7, "GET", "/repos/octo/hello")
        await api.request(None, "GET", "/app")
    finally:
        await api.aclose()
    assert len(api_server.peers) == 5  # the installation token once, then four calls
    assert len(set(api_server.peers)) == 1, (
        f"{len(set(api_server.peers))} connections for {len(api_server.peers)} calls"
    )


async def test_the_app_signs_its_jwt_with_its_private_key(
    tmp_path: Path, private_key: str, api_server: Seen
) -> None:
    """The key is parsed once at start; the JWT GitHub receives is still signed by it, as the App."""
    api = app_api(tmp_path, private_key, api_server, app_id=4242)
    try:
        await api.request(None, "GET", "/app")
        await api.request(7, "GET", "/repos/octo/hello")
    finally:
        await api.aclose()
    public_key = serialization.load_pem_private_key(private_key.encode(), password=None).public_key()
    for path in ("/app", "/app/installations/7/access_tokens"):
        scheme, token = api_server.authorizations[path].split(" ", 1)
        claims = jwt.decode(token, public_key, algorithms=["RS256"])  # type: ignore[arg-type]
        assert scheme == "Bearer" and claims["iss"] == "4242"
        assert 0 < claims["exp"] - claims["iat"] <= 10 * 60
    assert api_server.authorizations["/repos/octo/hello"] == "token ghs_x"
