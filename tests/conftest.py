"""Shared fixtures: real databases (SQLite always, PostgreSQL when TEST_DATABASE_URL is set) and real Redis.

Redis is the server at REDIS_URL when that is set (CI), else an embedded one started once per session.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from autodev.embedded_redis import EmbeddedRedis
from engine.settings import Settings
from engine.store.db import SqliteWriter, make_engine, make_sessionmaker, session_scope, upgrade_sync
from engine.store.jobs import JobLimits, JobStore
from engine.store.models import Base, Installation, InstallationRepo
from engine.workspace.sandbox import bwrap_problem
from tests.support import skip_policy

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# The repositories the tests make run their tests with this interpreter (pytest is in autodev's dev tools),
# inside bubblewrap wherever it works (CI installs it), with this venv shown to them read-only; where no
# bubblewrap can start the tests choose SANDBOX=none, as an operator would (tests/engine/workspace and the
# e2e sandbox test then skip, saying how to enable them).
BWRAP_PROBLEM = bwrap_problem()
SANDBOX_SETTINGS: dict[str, object] = (
    {"sandbox": "bwrap", "sandbox_readonly_paths": [Path(sys.prefix)]}
    if BWRAP_PROBLEM is None
    else {"sandbox": "none"}
)

# Nothing a developer has in their shell or .env leaks into the tests' settings.
for _name in list(os.environ):
    if _name.startswith(("GITHUB_", "SLACK_", "OPENAI_", "MODEL_", "JOB_", "AUTODEV_")):
        del os.environ[_name]


def pytest_configure(config: pytest.Config) -> None:
    skip_policy.install(config)  # only a missing server may skip a test; CI=true fails on any other skip


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated to head; each test gets a copy (migrating per test is slow)."""
    path = tmp_path_factory.mktemp("db") / "template.db"
    with ThreadPoolExecutor(1) as pool:
        pool.submit(upgrade_sync, f"sqlite+aiosqlite:///{path}").result()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    if not TEST_DATABASE_URL:
        skip_policy.skip_without(
            "PostgreSQL", "set TEST_DATABASE_URL, e.g. postgresql+asyncpg://postgres@127.0.0.1/test"
        )
    import asyncio

    async def reset() -> None:
        engine = make_engine(TEST_DATABASE_URL)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    def reset_and_migrate() -> None:
        asyncio.run(reset())
        upgrade_sync(TEST_DATABASE_URL)

    # This fixture may be asked for from inside a running event loop; asyncio.run needs a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(reset_and_migrate).result()
    return TEST_DATABASE_URL


def _sqlite_copy(template: Path, tmp_path: Path) -> str:
    path = tmp_path / "autodev.db"
    shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite database of this test's own."""
    return _sqlite_copy(sqlite_template, tmp_path)


@pytest.fixture(params=["sqlite", "postgres"])
async def any_database_url(
    request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path
) -> AsyncIterator[str]:
    """The same test on SQLite and on PostgreSQL (the latter emptied after the test)."""
    if request.param == "sqlite":
        yield _sqlite_copy(sqlite_template, tmp_path)
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    engine = make_engine(url)
    async with engine.begin() as conn:
        names = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
        await conn.execute(text(f"TRUNCATE {names} CASCADE"))
    await engine.dispose()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False)
    yield server.start()
    server.stop()


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    """The Redis URL, emptied before and after the test."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield redis_url
    client.flushdb()
    client.close()


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'autodev.db'}",
        "data_dir": tmp_path / "data",
        "workspace_dir": tmp_path / "work",
        "public_url": "http://testserver",
        **SANDBOX_SETTINGS,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def install(sessions: async_sessionmaker[AsyncSession], repo: str, installation: int = 4242) -> None:
    """The GitHub App installed on `repo`, as its installation webhook records it."""
    async with session_scope(sessions) as session:
        session.add(Installation(id=installation, account=repo.split("/")[0]))
        await session.flush()
        session.add(InstallationRepo(installation_id=installation, repo=repo))


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def store(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> AsyncIterator[JobStore]:
    """The store as the service builds it: on SQLite, new jobs go through the writer thread."""
    store = JobStore(
        sessions,
        JobLimits(settings.job_budget_usd, settings.job_max_requests, settings.job_max_minutes),
        writer=SqliteWriter.for_url(settings.database_url),
    )
    yield store
    await store.aclose()


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    """Headless Chromium (Debian's package) driven by Playwright; a `playwright.async_api.Browser`."""
    if not HAVE_CHROMIUM:
        skip_policy.skip_without("Chromium", "install it, e.g. apt-get install chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()
