"""Migrations: an empty database upgrades to head, and the models match the migrations exactly."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from engine.states import JobState
from engine.store.db import make_engine, make_sessionmaker, upgrade
from engine.store.jobs import JobLimits, JobStore
from engine.store.models import Base


async def _diff(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:

            def compare(sync_conn: Any) -> list[Any]:
                context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return list(compare_metadata(context, Base.metadata))

            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_an_empty_sqlite_database_upgrades_to_head_with_every_table(sqlite_template: Path) -> None:
    tables = await _tables(f"sqlite+aiosqlite:///{sqlite_template}")

    assert set(Base.metadata.tables) | {"alembic_version"} == tables


async def test_autogenerate_against_the_models_shows_no_difference(any_database_url: str) -> None:
    assert await _diff(any_database_url) == []


async def test_a_database_of_the_first_release_upgrades_and_keeps_its_jobs(tmp_path: Path) -> None:
    """./data/autodev.db from before the engine's subpackages (revision 0001) opens under the new layout."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'autodev.db'}"
    await upgrade(url, "0001")
    with sqlite3.connect(tmp_path / "autodev.db") as db:
        db.execute(
            "INSERT INTO jobs (id, dedupe_key, access_token, kind, trigger, repo, title, task, requester, "
            "origin, reporter_state, state, cancel_requested, attempts, last_seq, budget_usd, max_requests, "
            "max_minutes, cost_usd, tokens_in, tokens_out, requests, context_diagnostics, created_at, "
            "updated_at) VALUES ('old', 'k', 't', 'implement', 'cli', 'o/r', 't', 't', 'u', '{}', '{}', "
            "'succeeded', 0, 1, 1, 5, 300, 60, 0.5, 10, 20, 1, '[]', '2026-11-20 00:00:00', "
            "'2026-11-20 00:00:00')"
        )

    await upgrade(url)

    engine = make_engine(url)
    try:
        store = JobStore(make_sessionmaker(engine), JobLimits(5.0, 300, 60.0))
        view = await store.view("old")
    finally:
        await engine.dispose()
    assert (view.state, view.cost_usd, view.sandbox) == (JobState.SUCCEEDED, 0.5, {})
    assert await _diff(url) == []
