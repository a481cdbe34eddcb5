"""How the GitHub client decides to retry: 5xx with jittered backoff, rate limits by GitHub's headers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from githubkit.exception import PrimaryRateLimitExceeded, RequestFailed
from githubkit.response import Response

from github_app.client import MAX_RATE_LIMIT_WAIT, MAX_RETRIES, retry_decision


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
