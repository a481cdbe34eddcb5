"""Buttons on the job's messages: Cancel and Approve (authorized like the command), Details (a link)."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.render import APPROVE_ACTION, CANCEL_ACTION, DETAILS_ACTION
from bot.service import SlackService
from bot.tasks import TaskGroup


def register(app: AsyncApp, service: SlackService, tasks: TaskGroup) -> None:
    @app.action(CANCEL_ACTION)
    async def cancel(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id", "")
        job_id = str(action.get("value", ""))

        async def run() -> None:
            text = await service.cancel(job_id, channel=channel, user=user)
            await service.tell(channel=channel, user=user, text=text, response_url=body.get("response_url"))

        tasks.spawn(run(), name=f"slack-cancel-{job_id}")

    @app.action(APPROVE_ACTION)
    async def approve(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id", "")
        job_id = str(action.get("value", ""))

        async def run() -> None:
            text = await service.approve(job_id, channel=channel, user=user)
            await service.tell(channel=channel, user=user, text=text, response_url=body.get("response_url"))

        tasks.spawn(run(), name=f"slack-approve-{job_id}")

    @app.action(DETAILS_ACTION)
    async def details(ack: AsyncAck) -> None:
        await ack()  # a link button: Slack opens the URL, the app only has to answer
