"""Bolt listeners, one module per kind, each with `register(app, …)` (bolt's starter layout)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.listeners import actions, commands, messages
from bot.service import SlackService
from bot.tasks import TaskGroup

log = logging.getLogger(__name__)


def register(app: AsyncApp, service: SlackService, tasks: TaskGroup) -> None:
    commands.register(app, service, tasks)
    actions.register(app, service, tasks)
    messages.register(app, service, tasks)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        # The user was already acknowledged; what failed is logged with enough to find the request.
        log.error(
            "Slack listener failed: %s: %s",
            type(error).__name__,
            error,
            exc_info=error,
            extra={"slack_type": body.get("type") or body.get("command"), "user": _user(body)},
        )


def _user(body: dict[str, Any]) -> str | None:
    user = body.get("user")
    if isinstance(user, dict):
        return user.get("id")
    return body.get("user_id")
