"""Wiring: everything the web app and the worker share, built once from `Settings`.

This is the only place that knows every package; each of them gets what it needs handed in.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from arq.connections import ArqRedis

from autodev.embedded_redis import EmbeddedRedis
from engine import tracing
from engine.pipeline.run import EngineDeps
from engine.ports import CodeHost, Reporter
from engine.settings import Settings
from engine.store.db import SqliteWriter, make_engine, make_sessionmaker
from engine.store.jobs import JobLimits, JobStore
from engine.views import JobView
from engine.workspace.local_host import LocalCodeHost
from workers.queue import ArqJobQueue, connect

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from bot import SlackBot
    from github_app import GitHubApp
from web import render_html

log = logging.getLogger(__name__)


def resolve_redis(settings: Settings, *, start_embedded: bool) -> tuple[str, EmbeddedRedis | None]:
    """REDIS_URL when set; else the embedded Redis under data_dir, started here unless already running."""
    if settings.redis_url:
        return settings.redis_url, None
    embedded = EmbeddedRedis(settings.data_dir)
    if embedded.socket.exists():
        import redis as sync_redis

        try:
            sync_redis.Redis(unix_socket_path=str(embedded.socket)).ping()
            return embedded.url, None  # started by `autodev serve` or another `autodev web/worker`
        except sync_redis.ConnectionError:
            pass
    if not start_embedded:
        raise RuntimeError("REDIS_URL is not set and no embedded Redis is running")
    return embedded.start(), embedded


@dataclass
class Runtime:
    settings: Settings
    db: AsyncEngine
    store: JobStore
    redis: ArqRedis
    queue: ArqJobQueue
    github: GitHubApp
    slack: SlackBot
    embedded_redis: EmbeddedRedis | None = None

    @classmethod
    async def start(cls, settings: Settings, *, start_embedded_redis: bool = True) -> Runtime:
        from bot import SlackBot
        from github_app import GitHubApp

        tracing.start()  # OTLP traces when OTEL_EXPORTER_OTLP_ENDPOINT is set (and autodev[otel] installed)
        redis_url, embedded = resolve_redis(settings, start_embedded=start_embedded_redis)
        db = make_engine(settings.database_url)
        store = JobStore(
            make_sessionmaker(db),
            JobLimits(settings.job_budget_usd, settings.job_max_requests, settings.job_max_minutes),
            writer=SqliteWriter.for_url(settings.database_url),
        )
        pool = await connect(redis_url)
        queue = ArqJobQueue(pool)
        github = GitHubApp(settings, store, queue, pool, render_page=render_html)
        slack = SlackBot(settings, store, queue, redis=pool)
        _log_surfaces(settings)
        return cls(settings, db, store, pool, queue, github, slack, embedded)

    def engine_deps(self) -> EngineDeps:
        return EngineDeps(
            settings=self.settings,
            store=self.store,
            code_host_for=self.code_host_for,
            reporters_for=self.reporters_for,
            queue=self.queue,
        )

    async def code_host_for(self, view: JobView) -> CodeHost:
        if view.repo.startswith("local:"):
            return LocalCodeHost(Path(view.repo.removeprefix("local:")))
        return await self.github.code_host(view)

    def reporters_for(self, view: JobView) -> list[Reporter]:
        found = [self.github.reporter_for(view), self.slack.reporter_for(view)]
        return [r for r in found if r is not None]

    async def close(self) -> None:
        for closer in (self.slack.aclose, self.github.aclose):
            try:
                await closer()
            except Exception:
                log.exception("error while closing")
        await self.redis.aclose()
        await self.store.aclose()
        await self.db.dispose()
        if self.embedded_redis is not None:
            self.embedded_redis.stop()
        await asyncio.to_thread(tracing.shutdown)  # the spans still batched are exported first


def _log_surfaces(settings: Settings) -> None:
    if not settings.github_configured:
        log.warning("GitHub App disabled: set GITHUB_APP_ID, GITHUB_PRIVATE_KEY and GITHUB_WEBHOOK_SECRET")
    if not settings.slack_configured:
        log.warning("Slack disabled: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN)")
    if not settings.llm_configured:
        log.warning("LLM disabled: set OPENAI_API_KEY, or OPENAI_BASE_URL for Ollama/vLLM; jobs will fail")
