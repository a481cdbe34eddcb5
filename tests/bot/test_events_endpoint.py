"""POST /slack/events: only signed, fresh, first-time requests from Slack get through."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI

from bot import SlackBot
from engine.store.jobs import JobStore
from tests.bot.conftest import RecordingQueue, SlackClient, slack_settings
from tests.conftest import make_settings
from tests.support.fake_slack import FakeSlack


def _client(bot: SlackBot) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(bot.router)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_without_slack_credentials_the_endpoint_answers_503(tmp_path: Path, store: JobStore) -> None:
    bot = SlackBot(make_settings(tmp_path), store, None)
    async with _client(bot) as http:
        response = await http.post("/slack/events", content="command=%2Forchestrate")
    assert response.status_code == 503
    assert response.text == "Slack not configured"
    assert bot.reporter_for is not None
    await bot.aclose()


async def test_a_signed_command_is_answered(slack: SlackClient) -> None:
    response = await slack.command("help")
    assert response.status_code == 200
    assert "/orchestrate owner/repo <task>" in response.text


async def test_an_unsigned_request_is_refused(slack: SlackClient, fake_slack: FakeSlack) -> None:
    body = slack.command_body("help")
    response = await slack.post(body, {"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 401
    forged = slack.signed(body) | {"x-slack-signature": "v0=" + "0" * 64}
    assert (await slack.post(body, forged)).status_code == 401


async def test_a_request_signed_with_another_secret_is_refused(slack: SlackClient) -> None:
    body = slack.command_body("help")
    headers = SlackClient(slack.http, secret="someone-elses-secret").signed(body)
    assert (await slack.post(body, headers)).status_code == 401


async def test_a_stale_request_is_refused(slack: SlackClient) -> None:
    body = slack.command_body("help")
    six_minutes_ago = int(time.time()) - 6 * 60
    response = await slack.post(body, slack.signed(body, timestamp=six_minutes_ago))
    assert response.status_code == 401


async def test_a_replayed_request_is_refused(slack: SlackClient) -> None:
    body = slack.command_body("help")
    headers = slack.signed(body)
    assert (await slack.post(body, headers)).status_code == 200
    replay = await slack.post(body, headers)
    assert replay.status_code == 401
    assert replay.text == "replayed request"


async def test_a_replay_to_another_web_process_is_refused_through_redis(
    tmp_path: Path, database_url: str, store: JobStore, fake_slack: FakeSlack, clean_redis: str
) -> None:
    settings = slack_settings(tmp_path, database_url, fake_slack)
    redis = aioredis.Redis.from_url(clean_redis)
    first = SlackBot(settings, store, RecordingQueue(), redis=redis)
    second = SlackBot(settings, store, RecordingQueue(), redis=redis)
    async with _client(first) as http_first, _client(second) as http_second:
        sender = SlackClient(http_first)
        body = sender.command_body("help")
        headers = sender.signed(body)
        assert (await sender.post(body, headers)).status_code == 200
        assert (await SlackClient(http_second).post(body, headers)).status_code == 401
    await first.aclose()
    await second.aclose()
    await redis.aclose()


async def test_http_mode_is_off_without_a_signing_secret(
    tmp_path: Path, database_url: str, store: JobStore, fake_slack: FakeSlack
) -> None:
    """Socket Mode needs no signing secret; HTTP must then refuse everything rather than trust it."""
    settings = slack_settings(
        tmp_path, database_url, fake_slack, slack_signing_secret=None, slack_app_token="xapp-test"
    )
    bot = SlackBot(settings, store, None)
    async with _client(bot) as http:
        sender = SlackClient(http)
        body = sender.command_body("help")
        ts = str(int(time.time()))
        empty_key = hmac.new(b"", f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
        headers = sender.signed(body) | {
            "x-slack-request-timestamp": ts,
            "x-slack-signature": f"v0={empty_key}",
        }
        response = await sender.post(body, headers)
    assert response.status_code == 503
    await bot.aclose()


DEEP = "[" * 100_000 + "]" * 100_000


async def test_bodies_bolt_cannot_parse_are_a_400_signed_or_a_401_unsigned_never_a_500(
    slack: SlackClient,
) -> None:
    """Regression: Bolt parses a body before checking its signature; bad or deeply nested JSON was a 500."""
    for body in ("payload=" + DEEP, "{" + DEEP, "payload=%7Bnot+json", "{not json"):
        unsigned = await slack.post(body, {"content-type": "application/x-www-form-urlencoded"})
        assert unsigned.status_code == 401
        signed = await slack.post(body, slack.signed(body))
        assert (signed.status_code, signed.text) == (400, "body is not a Slack request")


async def test_no_request_waits_on_auth_test_and_the_token_is_checked_once_in_the_background(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack
) -> None:
    """Regression: Bolt called auth.test inline on the first request (a 500 while Slack was unreachable)."""
    fake_slack.down = True
    assert (await slack.command("help")).status_code == 200
    assert slack_bot.identity is not None and await slack_bot.identity.verify() is False
    assert slack_bot.problem == "not verified yet: auth.test answered HTTP 503"
    fake_slack.down = False
    assert await slack_bot.identity.verify() is True and slack_bot.problem is None
    assert len(fake_slack.calls["auth.test"]) == 1


async def test_a_token_slack_rejects_is_reported_not_retried(
    tmp_path: Path, store: JobStore, fake_slack: FakeSlack
) -> None:
    fake_slack.rejected_tokens.add("xoxb-test-token")
    bot = SlackBot(slack_settings(tmp_path, "sqlite+aiosqlite://", fake_slack), store, RecordingQueue())
    assert bot.identity is not None
    bot.start()
    for _ in range(100):
        if bot.identity.bad_token:
            break
        await asyncio.sleep(0.02)
    assert bot.problem == "Slack rejected SLACK_BOT_TOKEN (invalid_auth)"
    assert len(fake_slack.calls["auth.test"]) == 1
    await bot.aclose()
