"""POST /github/webhooks: size limit → signature over the raw bytes → parse → bot filter → dispatch."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from githubkit.exception import RequestFailed
from githubkit.webhooks import verify
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from engine import logctx
from engine.settings import Settings
from engine.store.jobs import JobStore
from github_app import manifest
from github_app.client import GitHubUnavailable
from github_app.installations import record_installation, record_repositories
from github_app.payloads import EVENT_MODELS, Event, InstallationEvent, InstallationReposEvent
from github_app.tally import DeliveryTally
from github_app.triggers import Outcome, Triggers, ignored

log = logging.getLogger(__name__)

# The events that reach a Triggers method of the same name. app.yml subscribes to these (and to those the
# next work will handle); installation* events reach every App unasked and are recorded below.
HANDLED_EVENTS = ("issues", "issue_comment", "pull_request_review", "check_run")


class BodyTooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it passes `limit` bytes (whatever Content-Length claims)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def answer(status: int, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def refused_payload(name: str, exc: ValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e["type"] == "json_invalid" for e in errors):
        return answer(400, error="body is not JSON")
    if any(e["type"] == "model_type" and not e["loc"] for e in errors):
        return answer(400, error="body is not a JSON object")
    log.warning("GitHub %s payload missing fields: %s", name, errors[:3])
    return answer(400, error=f"{name} payload is missing fields autodev needs")


def webhook_router(
    settings: Settings, store: JobStore, triggers: Triggers | None, deliveries: DeliveryTally
) -> APIRouter:
    router = APIRouter()
    secret = settings.github_webhook_secret.get_secret_value() if settings.github_webhook_secret else None
    handlers: dict[str, Callable[[Any, str], Awaitable[Outcome]]] = {}
    if triggers is not None:
        handlers = {name: getattr(triggers, name) for name in HANDLED_EVENTS}
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
        if triggers is None or secret is None:
            log.warning("GitHub webhook refused: GitHub App not configured (set GITHUB_APP_ID, …)")
            return answer(503, error="GitHub App not configured")
        try:
            body = await read_limited(request, settings.webhook_max_body_bytes)
        except BodyTooLarge:
            return answer(413, error="payload too large")
        signature = request.headers.get("x-hub-signature-256", "")
        if not signature or not verify(secret, body, signature):
            log.warning("GitHub webhook with a missing or wrong signature refused")
            return answer(401, error="bad signature")
        name = request.headers.get("x-github-event", "")
        delivery = request.headers.get("x-github-delivery", "")
        model = EVENT_MODELS.get(name)
        if model is None:
            try:
                data = json.loads(body)
            except (UnicodeDecodeError, ValueError):
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
            with logctx.bind(repo=event.repository.full_name if event.repository else None):
                outcome = await dispatch(name, event, delivery)
        except (SQLAlchemyError, OSError):  # asyncpg lets a refused connection through as OSError
            log.exception("database unavailable while handling %s %s", name, delivery)
            return answer(503, error="database unavailable, please redeliver")
        except (RequestFailed, GitHubUnavailable) as exc:
            log.warning("GitHub API failed while handling %s %s: %s", name, delivery, exc)
            return answer(503, error="GitHub API unavailable, please redeliver")
        return answer(outcome.status, **outcome.body)

    async def dispatch(name: str, event: Event, delivery: str) -> Outcome:
        if isinstance(event, InstallationEvent):
            return Outcome(200, {"installation": await record_installation(store.sessions, event)})
        if isinstance(event, InstallationReposEvent):
            return Outcome(200, {"installation": await record_repositories(store.sessions, event)})
        if event.sender is None or event.repository is None or event.installation is None:
            return ignored("no sender, repository or installation")
        if event.sender.is_bot:
            return ignored("sent by a bot")
        if not delivery:
            return Outcome(400, {"error": "missing X-GitHub-Delivery"})
        return await handlers[name](event, delivery)

    # A plain Starlette route: the endpoint reads the raw request itself, so FastAPI's dependency solving
    # (query parameters, an exit stack per request) is work with no use on the hottest path.
    router.add_route("/github/webhooks", github_webhook, methods=["POST"])
    return router
