"""`/orchestrate`: parse and `ack` at once (errors and help in the ack), then the rest in a task."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.parsing import USAGE, CancelJob, ChangeGrant, CommandError, ShowHelp, ShowStatus, StartJob, parse
from bot.service import SlackService
from bot.tasks import TaskGroup

COMMAND = "/orchestrate"
MAX_BUDGET_FACTOR = 10  # `--budget` may raise the configured per-job budget at most tenfold


def register(app: AsyncApp, service: SlackService, tasks: TaskGroup) -> None:
    @app.command(COMMAND)
    async def orchestrate(ack: AsyncAck, command: dict[str, Any]) -> None:
        try:
            parsed = parse(
                command.get("text", ""),
                max_budget_usd=service.settings.job_budget_usd * MAX_BUDGET_FACTOR,
            )
        except CommandError as exc:
            await ack(text=str(exc))
            return
        if isinstance(parsed, ShowHelp):
            await ack(text=USAGE)
            return
        channel, user = command["channel_id"], command["user_id"]
        response_url = command.get("response_url")
        if isinstance(parsed, StartJob):
            issue = f"#{parsed.issue_number}" if parsed.issue_number else ""
            await ack(text=f"Starting a job on `{parsed.repo}{issue}`…")
            tasks.spawn(
                service.start_job(
                    parsed,
                    channel=channel,
                    user=user,
                    trigger_id=command.get("trigger_id") or _fallback_key(command),
                    response_url=response_url,
                ),
                name=f"slack-start-{parsed.repo}",
            )
            return
        await ack()

        async def answer() -> None:
            if isinstance(parsed, ShowStatus):
                text = await service.status(parsed, channel=channel, user=user)
            elif isinstance(parsed, CancelJob):
                text = await service.cancel_command(parsed, channel=channel, user=user)
            elif isinstance(parsed, ChangeGrant):
                text = await service.change_grant(parsed, user=user)
            await service.tell(channel=channel, user=user, text=text, response_url=response_url)

        tasks.spawn(answer(), name=f"slack-{type(parsed).__name__}")


def _fallback_key(command: dict[str, Any]) -> str:
    # Every real slash command has a trigger_id; this keeps a malformed one from sharing a key.
    return "body-" + hashlib.sha256(json.dumps(command, sort_keys=True).encode()).hexdigest()[:32]
