"""`SlackBot`: the Slack surface the composition root wires in (router, reporters, Socket Mode)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.internals import parse_body
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot import listeners
from bot.identity import SlackIdentity
from bot.replay import ReplayGuard
from bot.reporter import SlackReporter
from bot.service import SlackService
from bot.tasks import TaskGroup
from engine.ports import JobQueue, Reporter
from engine.settings import Settings
from engine.store.jobs import JobStore
from engine.views import JobView

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # enforced while the body streams (autodev.body_limit), before Bolt reads it
# Slack's Retry-After is honoured up to this long; a longer wait would hold up the job, so the call fails
# instead and the reporter catches up at the next event.
MAX_RATE_LIMIT_WAIT_S = 30


class BoundedRateLimitRetry(AsyncRateLimitErrorRetryHandler):
    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        values = {k.lower(): v for k, v in response.headers.items()}.get("retry-after") or ["1"]
        try:
            return int(values[0]) <= MAX_RATE_LIMIT_WAIT_S
        except ValueError:
            return False  # the SDK would fail to parse it too; give up and catch up at the next event


def make_client(settings: Settings) -> AsyncWebClient | None:
    if settings.slack_bot_token is None:
        return None
    handlers: list[AsyncRetryHandler] = [
        AsyncConnectionErrorRetryHandler(max_retry_count=1),
        BoundedRateLimitRetry(max_retry_count=2),
    ]
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=15,
        retry_handlers=handlers,
    )


class SlackBot:
    """Bolt app + `/slack/events` route + `SlackReporter` factory; inert (503) without Slack credentials."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        queue: JobQueue | None,
        *,
        redis: aioredis.Redis | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.tasks = TaskGroup()
        self.client = make_client(settings) if settings.slack_configured else None
        self.app: AsyncApp | None = None
        self.service: SlackService | None = None
        self.identity = SlackIdentity(self.client) if self.client is not None else None
        self._socket_handler: Any = None
        self._socket_task: asyncio.Task[None] | None = None
        secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
        self.replay = ReplayGuard(secret, redis) if secret else None
        self.verifier = SignatureVerifier(secret) if secret else None
        if self.client is not None and self.identity is not None:
            self.service = SlackService(settings, store, queue, self.client)
            # Socket Mode alone has no signing secret; HTTP is then off (below), so nothing goes unverified.
            self.app = AsyncApp(
                # Bolt's own client carries no token: it gets the bot's from `authorize`, which never calls
                # Slack (bot/identity.py); the listeners post through self.client.
                client=AsyncWebClient(
                    base_url=self.client.base_url,
                    timeout=self.client.timeout,
                    retry_handlers=self.client.retry_handlers,
                ),
                authorize=self.identity.authorizer(),
                signing_secret=secret or None,
                request_verification_enabled=bool(secret),
                process_before_response=False,
            )
            listeners.register(self.app, self.service, self.tasks)
        else:
            log.info("Slack disabled: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN)")
        # Without a signing secret nothing over HTTP can be trusted (Socket Mode needs none).
        self._handler = AsyncSlackRequestHandler(self.app) if self.app is not None and secret else None
        self.router = APIRouter()
        self.router.add_api_route("/slack/events", self._events, methods=["POST"], include_in_schema=False)

    async def _events(self, request: Request) -> Response:
        if self._handler is None or self.replay is None or self.verifier is None:
            reason = "Slack not configured" if self.app is None else "Slack HTTP mode not configured"
            return PlainTextResponse(reason, status_code=503)
        body = await request.body()
        # Checked here because Bolt parses the body before it checks the signature.
        if not self.verifier.is_valid_request(body, dict(request.headers)):
            return PlainTextResponse("invalid request signature", status_code=401)
        if not _parses(body, request.headers.get("content-type")):
            return PlainTextResponse("body is not a Slack request", status_code=400)
        if await self.replay.is_replay(body, request.headers):
            log.warning("refused a replayed Slack request")
            return PlainTextResponse("replayed request", status_code=401)
        return await self._handler.handle(request)

    @property
    def problem(self) -> str | None:
        """What is wrong with the Slack surface now (a rejected token, not verified yet), if anything."""
        return self.identity.problem if self.identity is not None else None

    def start(self) -> None:
        """Background work of a web process: check the bot's token once (Socket Mode has its own start)."""
        if self.identity is not None:
            self.identity.start()

    def reporter_for(self, view: JobView) -> Reporter | None:
        """Jobs started from Slack, and any job on a repo a channel follows (looked up at the first event)."""
        if self.client is None or view.repo.startswith("local:"):
            return None
        return SlackReporter(self.client, self.store, self.settings)

    async def start_socket_mode(self) -> None:
        """Connect over Socket Mode in the background when SLACK_APP_TOKEN is set; returns at once."""
        if self.app is None or self.settings.slack_app_token is None or self._socket_task is not None:
            return
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        self._socket_handler = AsyncSocketModeHandler(
            self.app, self.settings.slack_app_token.get_secret_value()
        )
        self._socket_task = asyncio.get_running_loop().create_task(self._connect(), name="slack-socket-mode")

    async def _connect(self) -> None:
        try:
            await self._socket_handler.connect_async()
            log.info("Slack Socket Mode connected")
        except Exception as exc:  # the HTTP surface and the workers go on without it
            log.error("Slack Socket Mode could not connect: %s: %s", type(exc).__name__, exc)

    async def wait_idle(self) -> None:
        """Wait for the work started after acks (job submission, replies) to finish."""
        await self.tasks.wait()

    async def aclose(self) -> None:
        try:
            await asyncio.wait_for(self.tasks.wait(), timeout=10)
        except TimeoutError:
            await self.tasks.cancel()
        if self.identity is not None:
            await self.identity.aclose()
        if self._socket_task is not None:
            self._socket_task.cancel()
            await asyncio.gather(self._socket_task, return_exceptions=True)
            self._socket_task = None
        if self._socket_handler is not None:
            await self._socket_handler.close_async()
            self._socket_handler = None


def _parses(body: bytes, content_type: str | None) -> bool:
    """Whether Bolt can parse the body (it would raise on bad or deeply nested JSON: a 500, not a 400)."""
    try:
        parse_body(body.decode("utf-8"), content_type)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return False
    return True
