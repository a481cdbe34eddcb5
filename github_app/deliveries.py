"""The worker's side of a stored delivery: decide what it means, retry while GitHub fails, say if it gave up.

The miss-islington pattern: the web stored and acknowledged the delivery; here the slow part runs (the
sender's permission, a pull request's branch), each try once; a GitHub outage makes the worker try again
later with backoff, and when the tries are used up, or GitHub refuses for good, the person who asked is
told on the issue why nothing happened and how to ask again (a CI failure's fix round: on its pull request).
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from engine import logctx
from engine.errors import TransientFailure
from engine.store.deliveries import DONE, FAILED, PENDING, Deliveries
from github_app.ci_failures import is_ci_result
from github_app.payloads import (
    EVENT_MODELS,
    CheckRunEvent,
    CheckSuiteEvent,
    Event,
    IssueCommentEvent,
    IssuesEvent,
    ReviewCommentEvent,
    ReviewEvent,
)
from github_app.replies import GitHubFailed
from github_app.triggers import Triggers

log = logging.getLogger(__name__)


class DeliveryWork:
    """`engine.ports.DeliveryHandler` for GitHub: one call per try of a stored delivery."""

    def __init__(self, triggers: Triggers, deliveries: Deliveries) -> None:
        self.triggers = triggers
        self.deliveries = deliveries

    async def handle(self, delivery_id: str, *, last_try: bool) -> str:
        with logctx.bind(delivery_id=delivery_id):
            try:
                return await self._handle(delivery_id, last_try=last_try)
            except (SQLAlchemyError, OSError) as exc:  # asyncpg lets a refused connection through as OSError
                raise TransientFailure(f"database unavailable: {type(exc).__name__}") from exc

    async def _handle(self, delivery_id: str, *, last_try: bool) -> str:
        stored = await self.deliveries.get(delivery_id)
        if stored is None:
            log.warning("no stored delivery %s (purged?)", delivery_id)
            return "unknown delivery"
        if stored.state != PENDING:
            return f"already {stored.state}"  # a second try after the first one recorded its end
        try:
            event = EVENT_MODELS[stored.event].model_validate(stored.payload)
        except (KeyError, ValidationError) as exc:
            await self.deliveries.finish(delivery_id, FAILED, f"unreadable stored payload: {exc}")
            return "unreadable"
        repo = event.repository.full_name if event.repository else None
        with logctx.bind(repo=repo):
            try:
                outcome = await self.triggers.dispatch(event, delivery_id)
            except GitHubFailed as exc:
                if exc.transient and not last_try:
                    raise TransientFailure(str(exc)) from exc
                log.warning("giving up on delivery %s: %s", delivery_id, exc)
                await self.tell_why(event, exc)
                await self.deliveries.finish(delivery_id, FAILED, str(exc))
                return f"failed: {exc}"
            except Exception as exc:  # a bug: recorded and logged, never retried for ever
                log.exception("delivery %s crashed", delivery_id)
                await self.deliveries.finish(delivery_id, FAILED, f"internal error: {type(exc).__name__}")
                return "crashed"
        await self.deliveries.finish(delivery_id, DONE, outcome.summary, job_id=outcome.job_id)
        log.info("delivery handled: %s", outcome.summary, extra={"job_id": outcome.job_id})
        return outcome.summary

    async def tell_why(self, event: Event, failure: GitHubFailed) -> None:
        """One comment (at most one an hour per issue) on why nothing was started, and how to ask again."""
        number, again = where_to_answer(event, self.triggers.settings.autodev_trigger_label)
        if number is None or event.repository is None or event.installation is None:
            return
        who = f"@{event.sender.login} " if event.sender and not event.sender.is_bot else ""
        if failure.transient:
            why = f"GitHub kept failing while I was {failure.doing} ({failure.status or 'no answer'})"
        else:
            why = f"GitHub refused while I was {failure.doing} (HTTP {failure.status})"
        subject = "this"
        if isinstance(event, CheckSuiteEvent | CheckRunEvent):
            sha = (event.check_suite if isinstance(event, CheckSuiteEvent) else event.check_run).head_sha
            subject = f"the CI failure on {sha[:7]}"
        text = f"{who}I could not act on {subject}: {why}. Nothing was started; {again} to try again."
        try:
            await self.triggers.replies.once_an_hour(
                "failure", event.repository.full_name, event.installation.id, number, text
            )
        except GitHubFailed as exc:
            log.warning("could not tell the user why nothing happened: %s", exc)


def where_to_answer(event: Event, label: str) -> tuple[int | None, str]:
    """The issue or pull request to answer on, and how the person can ask again."""
    if isinstance(event, IssuesEvent):
        return event.issue.number, f"remove the `{label}` label and add it again"
    if isinstance(event, IssueCommentEvent):
        return event.issue.number, "post the command again"
    if isinstance(event, ReviewEvent):
        return event.pull_request.number, "submit the review again"
    if isinstance(event, ReviewCommentEvent):
        return event.pull_request.number, "mention the App in a new comment"
    if isinstance(event, CheckSuiteEvent | CheckRunEvent) and is_ci_result(event):
        return _pull_of(event), "re-run the failed checks"
    return None, ""  # autodev's own check run: the job's page and check run stay as they were


def _pull_of(event: CheckSuiteEvent | CheckRunEvent) -> int | None:
    """The pull request a CI result names (none for a fork's, or a suite made before the PR: no answer)."""
    if isinstance(event, CheckSuiteEvent):
        pulls = event.check_suite.pull_requests
    else:
        suite = event.check_run.check_suite
        pulls = event.check_run.pull_requests or (suite.pull_requests if suite else [])
    return pulls[0].number if pulls else None
