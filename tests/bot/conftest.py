"""The bot wired as in production against a local fake Slack: real FastAPI endpoint, real store."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import SlackBot
from engine.settings import Settings
from engine.store.jobs import JobLimits, JobStore
from tests.conftest import install, make_settings
from tests.support.fake_slack import FakeSlack
from tests.support.recording_queue import RecordingQueue as RecordingQueue

SIGNING_SECRET = "test-signing-secret"
CHANNEL = "CALLOWED"
USER = "UALICE"
ADMIN = "UADMIN"
REPO = "octo/widgets"
INSTALLATION_ID = 4242


def slack_side(api_url: str, allowed: dict[str, list[str]]) -> dict[str, Any]:
    """The Slack side of a service's settings: its bot token and signing secret, its API, who may use it."""
    return {
        "slack_bot_token": "xoxb-test-token",
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": api_url,
        "slack_allowed": allowed,
    }


@dataclass
class SlackClient:
    """Sends requests to the real endpoint the way Slack does: form bodies signed with the secret."""

    http: httpx.AsyncClient
    secret: str = SIGNING_SECRET
    trigger_ids: Any = field(default_factory=lambda: iter(range(1, 10_000)))

    def signed(self, body: str, *, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = SignatureVerifier(self.secret).generate_signature(timestamp=ts, body=body)
        assert signature is not None
        return {
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": ts,
            "x-slack-signature": signature,
        }

    def command_body(self, text: str, **overrides: str) -> str:
        fields = {
            "token": "legacy",
            "team_id": "T1",
            "channel_id": CHANNEL,
            "user_id": USER,
            "user_name": "alice",
            "command": "/orchestrate",
            "text": text,
            "response_url": overrides.pop("response_url", "http://127.0.0.1:9/unused"),
            "trigger_id": f"trigger-{next(self.trigger_ids)}",
            **overrides,
        }
        return urlencode(fields)

    async def post(self, body: str, headers: dict[str, str]) -> httpx.Response:
        return await self.http.post("/slack/events", content=body, headers=headers)

    async def command(self, text: str, **overrides: str) -> httpx.Response:
        body = self.command_body(text, **overrides)
        return await self.post(body, self.signed(body))

    async def click(
        self, action_id: str, value: str, *, user: str = USER, channel: str = CHANNEL
    ) -> httpx.Response:
        payload = {
            "type": "block_actions",
            "team": {"id": "T1"},
            "user": {"id": user},
            "channel": {"id": channel},
            "api_app_id": "A1",
            "trigger_id": f"trigger-{next(self.trigger_ids)}",
            "container": {"type": "message", "message_ts": "1700000001.000100", "channel_id": channel},
            "actions": [
                {"type": "button", "action_id": action_id, "block_id": "b", "value": value, "action_ts": "1"}
            ],
        }
        body = urlencode({"payload": json.dumps(payload)})
        return await self.post(body, self.signed(body))

    async def thread_reply(
        self, text: str, *, thread_ts: str, user: str = USER, channel: str = CHANNEL
    ) -> httpx.Response:
        """A person's reply in a thread, as the Events API sends it (`message.channels`)."""
        number = next(self.trigger_ids)
        event = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": f"1700009999.{number:06d}",
            "thread_ts": thread_ts,
            "channel_type": "channel",
        }
        envelope = {
            "token": "legacy",
            "team_id": "T1",
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": f"Ev{number:08d}",
            "event_time": int(time.time()),
            "event": event,
        }
        body = json.dumps(envelope)
        return await self.post(body, {**self.signed(body), "content-type": "application/json"})


def slack_settings(tmp_path: Path, database_url: str, fake: FakeSlack, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        **slack_side(fake.api_url, {CHANNEL: [REPO], ADMIN: ["*"]}),
        "public_url": "https://autodev.example",
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def bot_settings(tmp_path: Path, database_url: str, fake_slack: FakeSlack) -> Settings:
    return slack_settings(tmp_path, database_url, fake_slack)


@pytest.fixture
async def bot_store(sessions: async_sessionmaker[AsyncSession], bot_settings: Settings) -> JobStore:
    await install(sessions, REPO, INSTALLATION_ID)
    s = bot_settings
    return JobStore(sessions, JobLimits(s.job_budget_usd, s.job_max_requests, s.job_max_minutes))


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
async def slack_bot(
    bot_settings: Settings, bot_store: JobStore, queue: RecordingQueue
) -> AsyncIterator[SlackBot]:
    bot = SlackBot(bot_settings, bot_store, queue)
    yield bot
    await bot.aclose()


@asynccontextmanager
async def slack_client(bot: SlackBot) -> AsyncIterator[SlackClient]:
    """Signed Slack requests to `bot`'s routes, in process."""
    app = FastAPI()
    app.include_router(bot.router)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        yield SlackClient(http)


@pytest.fixture
async def slack(slack_bot: SlackBot) -> AsyncIterator[SlackClient]:
    async with slack_client(slack_bot) as client:
        yield client
