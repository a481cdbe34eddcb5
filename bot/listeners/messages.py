"""Messages in a job's thread: a reply there answers the job's question (`message.channels` events)."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.service import SlackService
from bot.tasks import TaskGroup


def register(app: AsyncApp, service: SlackService, tasks: TaskGroup) -> None:
    @app.event("message")
    async def message(event: dict[str, Any]) -> None:
        # Only people's replies in a thread: no edits, joins or bots (Bolt already drops the bot's own).
        thread_ts, user = event.get("thread_ts"), event.get("user")
        if event.get("subtype") or event.get("bot_id") or not thread_ts or not user:
            return
        if thread_ts == event.get("ts"):
            return  # the thread's parent itself
        channel = str(event.get("channel", ""))

        async def run() -> None:
            text = await service.thread_reply(
                channel=channel, user=str(user), thread_ts=str(thread_ts), text=str(event.get("text") or "")
            )
            if text is not None:
                await service.tell(channel=channel, user=str(user), text=text)

        tasks.spawn(run(), name="slack-thread-reply")
