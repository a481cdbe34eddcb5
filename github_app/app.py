"""GitHubApp: the one object the composition root builds; routes, reporters and code hosts for GitHub."""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from fastapi import APIRouter

from engine.errors import PermanentFailure
from engine.ports import ApprovalWatcher, CodeHost, DeliveryHandler, JobQueue, Reporter
from engine.settings import Settings
from engine.store.deliveries import NewDelivery
from engine.store.intake import Intake
from engine.store.jobs import JobStore
from engine.views import JobView
from github_app.approvals import ReactionApprovals
from github_app.client import GitHubApi
from github_app.code_host import GitHubCodeHost
from github_app.deliveries import DeliveryWork
from github_app.permissions import Permissions
from github_app.reporter import GitHubReporter
from github_app.setup import setup_router
from github_app.tally import DeliveryTally
from github_app.triggers import Triggers
from github_app.webhooks import webhook_router

log = logging.getLogger(__name__)


class GitHubApp:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        queue: JobQueue | None,
        redis: aioredis.Redis | None,
        render_page: Callable[..., str] | None = None,
    ) -> None:
        """`render_page` (the web package's page renderer, from the composition root) serves /github/setup."""
        self.settings = settings
        self.api: GitHubApi | None = None
        triggers: Triggers | None = None
        # The web side stores deliveries (group commit); the worker side decides them (DeliveryWork).
        self.intake: Intake[NewDelivery] | None = None
        self.deliveries: DeliveryHandler | None = None
        self.approvals: ApprovalWatcher | None = None  # 👍 on plans, polled by the reconciler
        if settings.github_configured:
            try:
                self.api = GitHubApi(settings, redis)
            except (ValueError, TypeError, OSError) as exc:
                log.error(
                    "GitHub App disabled: GITHUB_PRIVATE_KEY is not a usable PEM key (%s)", type(exc).__name__
                )
            else:
                triggers = Triggers(settings, store, queue, self.api, redis)
                self.intake = Intake.for_deliveries(store.deliveries, queue)
                self.deliveries = DeliveryWork(triggers, store.deliveries)
                self.approvals = ReactionApprovals(self.api, Permissions(self.api, redis))
        else:
            log.info("GitHub App not configured (GITHUB_APP_ID, GITHUB_PRIVATE_KEY, GITHUB_WEBHOOK_SECRET)")
        self.triggers = triggers
        self.reporter = GitHubReporter(self.api, store, settings) if self.api else None
        if triggers is not None:
            triggers.reporter = self.reporter
        # Deliveries by event and answer, for /metrics (autodev_webhook_requests_total).
        self.webhook_counts = DeliveryTally(store.sessions)
        self.router = APIRouter()
        self.router.include_router(
            webhook_router(settings, store, self.intake, self.api, self.webhook_counts)
        )
        if render_page is not None:
            self.router.include_router(setup_router(settings, render_page))

    def reporter_for(self, view: JobView) -> Reporter | None:
        """The GitHub reporter for jobs on a GitHub repository made through an installation."""
        if self.reporter is None or view.installation_id is None or view.repo.startswith("local:"):
            return None
        return self.reporter

    async def code_host(self, view: JobView) -> CodeHost:
        if self.api is None:
            raise PermanentFailure("the GitHub App is not configured on this worker")
        if view.installation_id is None:
            raise PermanentFailure(f"job {view.id} has no GitHub installation to act as")
        return GitHubCodeHost(self.api, view.installation_id)

    async def aclose(self) -> None:
        await self.webhook_counts.aclose()
        if self.intake is not None:
            await self.intake.aclose()
        if self.triggers is not None:
            await self.triggers.intake.aclose()
        if self.reporter is not None:
            await self.reporter.aclose()
        if self.api is not None:
            await self.api.aclose()
