"""Webhook deliveries counted in memory and added to the database's running totals in batches.

The webhook path is the busiest there is, so a delivery costs a dict increment here, not a write. The
counts reach `webhook_counts` at most FLUSH_EVERY_S after a delivery (the first delivery after that
starts a flush), before every /metrics scrape this process answers (so what a scrape shows is already
stored and no later scrape can show less) and when the process stops. A process killed in between loses
the deliveries since its last flush: they were never shown, so no counter goes down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.store.db import session_scope
from engine.store.models import WebhookCount

log = logging.getLogger(__name__)


class DeliveryTally:
    FLUSH_EVERY_S = 10.0

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.pending: Counter[tuple[str, int]] = Counter()
        self._lock = asyncio.Lock()
        self._last_flush = time.monotonic()
        self._background: asyncio.Task[None] | None = None

    def count(self, event: str, status: int) -> None:
        self.pending[(event, status)] += 1
        if self._background is None and time.monotonic() - self._last_flush >= self.FLUSH_EVERY_S:
            self._background = asyncio.create_task(self._flush_in_background())

    async def _flush_in_background(self) -> None:
        try:
            await self.flush()
        finally:
            self._background = None

    async def flush(self) -> None:
        """Add the pending counts to the stored totals; on failure they stay pending for the next try."""
        async with self._lock:
            self._last_flush = time.monotonic()
            batch, self.pending = self.pending, Counter()
            if not batch:
                return
            try:
                async with session_scope(self.sessions) as session:
                    await _add(session, batch)
            except Exception as exc:  # the database is away: keep counting, store them next time
                self.pending.update(batch)
                log.warning("webhook counts not stored (%s); kept for the next flush", type(exc).__name__)

    async def aclose(self) -> None:
        if self._background is not None:
            await asyncio.gather(self._background, return_exceptions=True)
        await self.flush()


async def _add(session: AsyncSession, batch: Counter[tuple[str, int]]) -> None:
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    rows = [{"event": event, "status": status, "count": n} for (event, status), n in sorted(batch.items())]
    statement = insert(WebhookCount).values(rows)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[WebhookCount.event, WebhookCount.status],
            set_={"count": WebhookCount.count + statement.excluded.count},
        )
    )
