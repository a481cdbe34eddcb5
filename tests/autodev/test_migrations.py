"""Migrations: an empty database upgrades to head, and the models match the migrations exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from engine.store.db import make_engine
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
