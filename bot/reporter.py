"""`SlackReporter`: a job's parent message (status edited in place) and its thread, in every channel that
shows the job. Each call renders the whole job and posts only what the thread does not have yet."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot import queries
from bot.render import digest, parent_message, thread_blocks, thread_replies
from engine import events
from engine.errors import ReporterBehind
from engine.ports import JobEventView
from engine.settings import Settings
from engine.store.jobs import JobStore
from engine.views import JobView

log = logging.getLogger(__name__)

# What a Slack outage or refusal looks like from here; anything else is a bug and is left to the runner.
SLACK_ERRORS = (SlackApiError, SlackClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError)
STATE_KEY = "slack"
QUIET_EVENTS = frozenset({events.LLM_CALL, events.CONTEXT, events.NOTE, events.EDIT_REFUSED})


def thread_key(channel: str) -> str:
    return f"thread:{channel}"


class SlackReporter:
    """Implements `engine.ports.Reporter`. A Slack failure is logged and raised as ReporterBehind, so the job
    records it; the next event catches up, and after the job's end the reconciler does."""

    name = "slack"

    def __init__(self, client: AsyncWebClient, store: JobStore, settings: Settings) -> None:
        self.client = client
        self.store = store
        self.settings = settings
        self._followers: list[str] | None = None

    async def on_event(self, view: JobView, event: JobEventView) -> None:
        if event.type in QUIET_EVENTS:
            return  # only the cost moved; the next visible event shows it, within Slack's rate limits
        if not await self.sync(view):
            raise ReporterBehind("Slack update failed; the next event or the reconciler catches up")

    async def sync(self, view: JobView) -> bool:
        """Bring every thread of the job up to date; False when Slack failed (a later call retries)."""
        ok = True
        for channel in await self.channels(view):
            try:
                await self._sync_thread(view, channel)
            except SLACK_ERRORS as exc:
                ok = False
                log.warning(
                    "Slack update failed, will catch up later: %s",
                    _describe(exc),
                    extra={"job_id": view.id, "channel": channel},
                )
        return ok

    async def refresh_parents(self, view: JobView) -> None:
        """Only edit the parent messages (e.g. 'Cancelling…'), leaving the thread to the worker."""
        for channel in await self.channels(view):
            thread = dict(view.reporter_state.get(STATE_KEY, {}).get(thread_key(channel)) or {})
            if thread.get("ts"):
                try:
                    await self._update_parent(view, channel, thread)
                except SLACK_ERRORS as exc:
                    log.warning("Slack update failed: %s", _describe(exc), extra={"job_id": view.id})

    async def channels(self, view: JobView) -> list[str]:
        found: list[str] = []
        origin_channel = view.origin.get("channel") if view.trigger == "slack" else None
        if isinstance(origin_channel, str) and origin_channel:
            found.append(origin_channel)
        if self._followers is None:  # one lookup per run: a channel starting to follow joins at the next run
            self._followers = await queries.follow_channels(self.store.sessions, view.repo)
        found += [c for c in self._followers if c not in found]
        return found

    async def _sync_thread(self, view: JobView, channel: str) -> None:
        thread: dict[str, Any] = dict(view.reporter_state.get(STATE_KEY, {}).get(thread_key(channel)) or {})
        if not thread.get("ts"):
            text, blocks = parent_message(view, self.settings)
            response = await self.client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, unfurl_links=False, unfurl_media=False
            )
            thread = {"ts": response["ts"], "posted": [], "parent": digest(text, blocks)}
            await self._save(view.id, channel, thread)
        posted = list(thread.get("posted") or [])
        for key, text in thread_replies(view, self.settings):
            if key in posted:
                continue
            await self.client.chat_postMessage(
                channel=channel,
                thread_ts=thread["ts"],
                text=text,
                blocks=thread_blocks(view, key, text),  # None: a plain reply (the SDK leaves it out)
                unfurl_links=False,
                unfurl_media=False,
            )
            posted.append(key)
            thread["posted"] = posted
            await self._save(view.id, channel, thread)  # one by one, so a failure midway never reposts
        await self._update_parent(view, channel, thread)

    async def _update_parent(self, view: JobView, channel: str, thread: dict[str, Any]) -> None:
        text, blocks = parent_message(view, self.settings)
        if digest(text, blocks) == thread.get("parent"):
            return
        await self.client.chat_update(channel=channel, ts=thread["ts"], text=text, blocks=blocks)
        thread["parent"] = digest(text, blocks)
        await self._save(view.id, channel, thread)

    async def _save(self, job_id: str, channel: str, thread: dict[str, Any]) -> None:
        await self.store.merge_reporter_state(job_id, STATE_KEY, {thread_key(channel): dict(thread)})


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        data = exc.response.data  # a str when Slack answered with something other than JSON
        error = data.get("error", "") if isinstance(data, dict) else ""
        return f"HTTP {exc.response.status_code} {error}".strip()
    return f"{type(exc).__name__}: {exc}"
