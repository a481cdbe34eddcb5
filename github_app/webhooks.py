"""POST /github/webhooks: signature over the raw bytes → parse → filter → store → 2xx; the worker decides.

Store first, decide later: a delivery that may trigger something is made durable (with its id and the hash
of its signed body, so neither a redelivery nor a replay under a new id counts twice) and answered 202;
what needs GitHub — the sender's permission, a pull request — happens in the worker, with retries
(github_app.deliveries). GitHub never redelivers by itself, so the only 5xx is "could not store": the
database is down and the delivery must be redelivered. The body's size is bounded before this route runs
(autodev.body_limit).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pydantic_core
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from githubkit.webhooks import verify
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from engine import logctx
from engine.settings import Settings
from engine.store.deliveries import NewDelivery
from engine.store.intake import Intake
from engine.store.jobs import JobStore
from engine.store.waits import waits_on
from github_app import manifest
from github_app.ci_failures import is_ci_result
from github_app.client import GitHubApi
from github_app.installations import record_installation, record_repositories
from github_app.payloads import (
    EVENT_MODELS,
    InstallationEvent,
    InstallationReposEvent,
    IssueCommentEvent,
    ReviewCommentEvent,
)
from github_app.tally import DeliveryTally
from github_app.triggers import NOT_ADDRESSED, worth_storing

log = logging.getLogger(__name__)

# The events that reach a handler of the same name (in github_app.triggers or .review_triggers). app.yml
# subscribes to these (and to those the next work will handle); installation* events reach every App
# unasked and are recorded below.
HANDLED_EVENTS = (
    "issues",
    "issue_comment",
    "pull_request_review",
    "pull_request_review_comment",
    "check_run",
    "check_suite",
)
SIGNATURE_PREFIX = "sha256="
MAX_DELIVERY_ID = 100
DATABASE_ERRORS = (SQLAlchemyError, OSError)  # asyncpg lets a refused connection through as OSError


def answer(status: int, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def refused_payload(name: str, exc: ValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e["type"] == "json_invalid" for e in errors):  # also JSON nested past pydantic-core's limit
        return answer(400, error="body is not JSON")
    if any(e["type"] == "model_type" and not e["loc"] for e in errors):
        return answer(400, error="body is not a JSON object")
    log.warning("GitHub %s payload missing fields: %s", name, errors[:3])
    return answer(400, error=f"{name} payload is missing fields autodev needs")


def signed(secret: str, body: bytes, signature: str) -> bool:
    """HMAC-SHA256 only: githubkit's `verify` checks any other prefix as SHA-1, so a `sha1=` value in
    X-Hub-Signature-256 would pass it."""
    return signature.startswith(SIGNATURE_PREFIX) and verify(secret, body, signature)


def webhook_router(
    settings: Settings,
    store: JobStore,
    intake: Intake[NewDelivery] | None,
    api: GitHubApi | None,
    deliveries: DeliveryTally,
) -> APIRouter:
    router = APIRouter()
    secret = settings.github_webhook_secret.get_secret_value() if settings.github_webhook_secret else None
    label = settings.autodev_trigger_label
    app_id = settings.github_app_id
    # Only names we know become label values: the header arrives before the signature is checked.
    known = frozenset(EVENT_MODELS) | {"ping", *manifest.events()}

    async def github_webhook(request: Request) -> JSONResponse:
        name = request.headers.get("x-github-event", "")
        with logctx.bind(delivery_id=request.headers.get("x-github-delivery")):
            response = await handle(request)
        event = name if name in known else "other"
        deliveries.count(event, response.status_code)
        return response

    async def handle(request: Request) -> JSONResponse:
        if intake is None or api is None or secret is None:
            log.warning("GitHub webhook refused: GitHub App not configured (set GITHUB_APP_ID, …)")
            return answer(503, error="GitHub App not configured")
        body = await request.body()
        if not signed(secret, body, request.headers.get("x-hub-signature-256", "")):
            log.warning("GitHub webhook with a missing, wrong or non-SHA-256 signature refused")
            return answer(401, error="bad signature")
        name = request.headers.get("x-github-event", "")
        model = EVENT_MODELS.get(name)
        if model is None:
            try:
                data = pydantic_core.from_json(body)  # a depth limit, where json.loads raises RecursionError
            except ValueError:
                return answer(400, error="body is not JSON")
            if not isinstance(data, dict):
                return answer(400, error="body is not a JSON object")
            if name == "ping":
                return answer(200, ok=True)
            return answer(202, ignored=f"event {name or '(none)'} not handled")
        try:
            event = model.model_validate_json(body)  # parsed and checked in one pass (pydantic-core)
        except ValidationError as exc:
            return refused_payload(name, exc)
        try:
            if isinstance(event, InstallationEvent):
                return answer(200, installation=await record_installation(store.sessions, event))
            if isinstance(event, InstallationReposEvent):
                return answer(200, installation=await record_repositories(store.sessions, event))
        except DATABASE_ERRORS:
            log.exception("database unavailable while recording %s", name)
            return answer(503, error="database unavailable, please redeliver")
        if event.sender is None or event.repository is None or event.installation is None:
            return answer(202, ignored="no sender, repository or installation")
        if event.sender.is_bot and not is_ci_result(event):  # CI results come from bots (autodev's push)
            return answer(202, ignored="sent by a bot")
        # Only comments name it.
        slug = api.known_slug() if isinstance(event, IssueCommentEvent | ReviewCommentEvent) else None
        if (reason := worth_storing(name, event, label=label, slug=slug, app_id=app_id)) is not None:
            if reason != NOT_ADDRESSED or not isinstance(event, IssueCommentEvent):
                return answer(202, ignored=reason)
            # A plain comment may answer the question of a job waiting on its issue: one indexed lookup.
            try:
                waiting = await waits_on(store, event.repository.full_name, event.issue.number)
            except DATABASE_ERRORS:
                log.exception("database unavailable while looking for a waiting job")
                return answer(503, error="database unavailable, please redeliver")
            if not waiting:
                return answer(202, ignored=reason)
        delivery = request.headers.get("x-github-delivery", "")
        if not delivery or len(delivery) > MAX_DELIVERY_ID or not delivery.isprintable():
            return answer(400, error="missing or malformed X-GitHub-Delivery")
        new = NewDelivery(
            id=delivery,
            body_sha256=hashlib.sha256(body).hexdigest(),
            event=name,
            payload=event.model_dump(mode="json"),
        )
        try:
            stored_id, created = await intake.submit(new)  # committed, then queued for the worker
        except DATABASE_ERRORS:
            log.exception("could not store %s delivery %s", name, delivery)
            return answer(503, error="could not store the delivery, please redeliver")
        if not created:
            same = "delivery" if stored_id == delivery else f"body as delivery {stored_id}"
            log.info("duplicate of a stored %s; ignored", same)
            return answer(202, delivery=stored_id, duplicate=True)
        return answer(202, delivery=delivery, stored=True)

    # A plain Starlette route: the endpoint reads the raw request itself, so FastAPI's dependency solving
    # (query parameters, an exit stack per request) is work with no use on the hottest path.
    router.add_route("/github/webhooks", github_webhook, methods=["POST"])
    return router
