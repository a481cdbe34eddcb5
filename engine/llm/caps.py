"""Spending caps across jobs: dollars per UTC day, for all repositories and for each one."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.llm.money import usd
from engine.settings import Settings
from engine.store.jobs import JobStore


def start_of_day(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


async def cap_headroom(store: JobStore, settings: Settings, repo: str) -> tuple[float | None, str | None]:
    """Dollars still allowed today under the tighter cap (None: no cap), and that cap's name."""
    since = start_of_day()
    found: list[tuple[float, str]] = []
    if settings.daily_budget_usd is not None:
        spent = await store.spent_since(since)
        found.append(
            (settings.daily_budget_usd - spent, f"the daily cap of {usd(settings.daily_budget_usd)}")
        )
    if settings.repo_daily_budget_usd is not None:
        spent = await store.spent_since(since, repo=repo)
        cap = settings.repo_daily_budget_usd
        found.append((cap - spent, f"{repo}'s daily cap of {usd(cap)}"))
    if not found:
        return None, None
    headroom, name = min(found)
    return max(0.0, headroom), name


async def cap_refusal(store: JobStore, settings: Settings, repo: str) -> str | None:
    """Why a new job on `repo` may not start now, or None when it may."""
    headroom, name = await cap_headroom(store, settings, repo)
    if headroom is None or headroom > 0:
        return None
    return (
        f"{name} is spent; the job did not start. It can be retried after midnight UTC, "
        "or after an operator raises DAILY_BUDGET_USD / REPO_DAILY_BUDGET_USD."
    )
