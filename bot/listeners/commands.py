"""`/orchestrate`: parse; for a new job authorize and store it, then `ack` (refusals, errors and help are
the ack's text); the parent message, the queue, status, cancel and grants follow in tasks."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from sqlalchemy.exc import SQLAlchemyError

from bot.parsing import USAGE, CancelJob, ChangeGrant, CommandError, ShowHelp, ShowStatus, StartJob, parse
from bot.render import short_id
from bot.service import SlackService, Submission
from bot.tasks import TaskGroup

COMMAND = "/orchestrate"
MAX_BUDGET_FACTOR = 10  # `--budget` may raise the configured per-job budget at most tenfold
ACK_DEADLINE_S = 2.5  # Slack shows the user an error when the ack takes more than 3 s
DATABASE_ERRORS = (SQLAlchemyError, OSError)  # asyncpg lets a refused connection through as OSError

log = logging.getLogger(__name__)


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
            await start(ack, parsed, channel=channel, user=user, command=command)
            return
        await ack()

        async def answer() -> None:
            try:
                if isinstance(parsed, ShowStatus):
                    text = await service.status(parsed, channel=channel, user=user)
                elif isinstance(parsed, CancelJob):
                    text = await service.cancel_command(parsed, channel=channel, user=user)
                elif isinstance(parsed, ChangeGrant):
                    text = await service.change_grant(parsed, user=user)
            except DATABASE_ERRORS as exc:
                log.error("Slack command failed on the database: %s: %s", type(exc).__name__, exc)
                text = "The database is unavailable right now; please try again in a minute."
            await service.tell(channel=channel, user=user, text=text, response_url=response_url)

        tasks.spawn(answer(), name=f"slack-{type(parsed).__name__}")

    async def start(
        ack: AsyncAck, parsed: StartJob, *, channel: str, user: str, command: dict[str, Any]
    ) -> None:
        """The job is in the database before the ack says it started: Slack never sends a command twice
        on an error, so an answer that promised a job must not lose it."""
        response_url = command.get("response_url")
        submitting = asyncio.ensure_future(
            service.submit_job(
                parsed,
                channel=channel,
                user=user,
                trigger_id=command.get("trigger_id") or _fallback_key(command),
                response_url=response_url,
            )
        )
        where = f"`{parsed.repo}{f'#{parsed.issue_number}' if parsed.issue_number else ''}`"
        try:
            submission = await asyncio.wait_for(asyncio.shield(submitting), ACK_DEADLINE_S)
        except TimeoutError:
            # Slack wants the ack within 3 s; the save goes on and its outcome is told when it is known.
            await ack(text=f"Saving a job on {where}… the database is slow; I'll tell you when it starts.")
            tasks.spawn(announce_later(submitting, channel, user, response_url), name="slack-start-late")
            return
        except DATABASE_ERRORS as exc:
            await ack(text=unsaved(exc))
            return
        await answer_submission(ack, submission, where, channel, user, response_url)

    async def answer_submission(
        ack: AsyncAck, submission: Submission, where: str, channel: str, user: str, response_url: str | None
    ) -> None:
        if submission.refusal is not None or submission.job_id is None:
            await ack(text=submission.refusal or "Nothing was started.")
            return
        await ack(text=f"Job `{short_id(submission.job_id)}` on {where} is saved and starting…")
        if submission.created:
            announce = service.announce_job(
                submission.job_id, channel=channel, user=user, response_url=response_url
            )
            tasks.spawn(announce, name=f"slack-start-{submission.repo}")

    async def announce_later(
        submitting: asyncio.Future[Submission], channel: str, user: str, response_url: str | None
    ) -> None:
        try:
            submission = await submitting
        except DATABASE_ERRORS as exc:
            await service.tell(channel=channel, user=user, text=unsaved(exc), response_url=response_url)
            return
        if submission.refusal is not None or submission.job_id is None:
            text = submission.refusal or "Nothing was started."
            await service.tell(channel=channel, user=user, text=text, response_url=response_url)
        elif submission.created:
            job_id = submission.job_id
            await service.announce_job(job_id, channel=channel, user=user, response_url=response_url)


def unsaved(exc: BaseException) -> str:
    log.error("could not store a Slack job: %s: %s", type(exc).__name__, exc)
    return (
        "I could not save the job: the database is unavailable right now. Nothing was started; "
        "please run the command again in a minute."
    )


def _fallback_key(command: dict[str, Any]) -> str:
    # Every real slash command has a trigger_id; this keeps a malformed one from sharing a key.
    return "body-" + hashlib.sha256(json.dumps(command, sort_keys=True).encode()).hexdigest()[:32]
