"""Slack adapter: `/orchestrate` and its buttons (Bolt), HTTP at /slack/events or Socket Mode, threads."""

from __future__ import annotations

from bot.app import SlackBot
from bot.reporter import SlackReporter

__all__ = ["SlackBot", "SlackReporter"]
