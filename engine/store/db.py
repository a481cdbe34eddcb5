"""Database engines and sessions: SQLite (WAL, busy timeout, serialised writers) or PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_S = 30

T = TypeVar("T")
log = logging.getLogger(__name__)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; for SQLite the file's folder is made and every transaction takes the write lock."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, **kwargs)
        _serialise_sqlite_writers(engine.sync_engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_async_engine(url, **kwargs)


def _serialise_sqlite_writers(
    engine: Engine, *, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S, autocheckpoint: bool = True
) -> None:
    # SQLite upgrades a deferred transaction's read lock to a write lock only if no other writer got there
    # first, and fails at once ("database is locked") when one did, busy timeout or not. Taking the write
    # lock at BEGIN makes concurrent transactions wait their turn instead — the recipe of SQLAlchemy's docs.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class SqliteWriter:
    """A whole write transaction on the SQLite file in one call, for the webhook's group commit.

    Through aiosqlite every statement, cursor and commit is a round trip between the event loop and the
    driver's thread: ~15 for one small transaction, 1.1 ms of CPU beyond the work itself. Here the
    transaction (same file, same pragmas, same `BEGIN IMMEDIATE`) runs in one go: on the event loop's own
    connection when the write lock is free (a batch takes ~0.1 ms plus ~40 µs a job, and handing it to a
    thread cost more in GIL hand-offs than the work: 1,840-2,110 -> 2,220-2,400 webhooks/s), else in a thread
    of its own that waits for the lock as long as any other connection would. The loop's connection never
    waits (busy timeout 0) and never checkpoints (an fsync); the thread checkpoints every
    CHECKPOINT_EVERY commits made on the loop.
    """

    CHECKPOINT_EVERY = 500

    def __init__(self, url: str) -> None:
        sync_url = make_url(url).set(drivername="sqlite")
        self.engine = create_engine(
            sync_url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, pool_size=1, max_overflow=0
        )
        _serialise_sqlite_writers(self.engine)
        self.loop_engine = create_engine(sync_url, connect_args={"timeout": 0}, pool_size=1, max_overflow=0)
        _serialise_sqlite_writers(self.loop_engine, busy_timeout_s=0, autocheckpoint=False)
        # One thread: its connection is made, used and closed there (sqlite3 connections stay in theirs).
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._since_checkpoint = 0
        self._checkpointing: asyncio.Future[None] | None = None
        self.in_thread = 0  # transactions that found the lock taken and went to the thread
        self.checkpoints = 0

    @classmethod
    def for_url(cls, url: str) -> SqliteWriter | None:
        """A writer for a SQLite file; None for another database or an in-memory one (not shared)."""
        if not is_sqlite(url) or make_url(url).database in (None, "", ":memory:"):
            return None
        return cls(url)

    async def run(self, work: Callable[[Connection], T]) -> T:
        """`work(connection)` inside one transaction: committed when it returns, rolled back if it raises
        (then nothing of it is kept, so a transaction refused the lock is simply run again in the thread)."""
        try:
            result = _transaction(self.loop_engine, work)
        except OperationalError as exc:
            if "database is locked" not in str(exc):
                raise
            self.in_thread += 1
            return await asyncio.get_running_loop().run_in_executor(
                self._thread, _transaction, self.engine, work
            )
        self._since_checkpoint += 1
        if self._since_checkpoint >= self.CHECKPOINT_EVERY and self._checkpointing is None:
            self._since_checkpoint = 0
            self._checkpointing = asyncio.get_running_loop().run_in_executor(self._thread, self._checkpoint)
            self._checkpointing.add_done_callback(self._checkpointed)
        return result

    def _checkpoint(self) -> None:
        connection = self.engine.raw_connection()  # autocommit (see the connect hook): no BEGIN around it
        try:
            cursor = connection.cursor()
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
            cursor.fetchall()
            cursor.close()
        finally:
            connection.close()
        self.checkpoints += 1

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpointing = None
        if not done.cancelled() and done.exception() is not None:
            log.warning("WAL checkpoint failed (the next one retries): %s", done.exception())

    async def aclose(self) -> None:
        if self._checkpointing is not None:
            await asyncio.gather(self._checkpointing, return_exceptions=True)
        self.loop_engine.dispose()
        await asyncio.get_running_loop().run_in_executor(self._thread, self.engine.dispose)
        self._thread.shutdown(wait=True)


def _transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    with engine.begin() as connection:
        return work(connection)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def session_scope(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    async with sessions() as session, session.begin():
        yield session


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_sync(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (Alembic; never `create_all`)."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


async def upgrade(url: str, revision: str = "head") -> None:
    # Alembic's async env runs its own event loop; keep it off ours.
    await asyncio.to_thread(upgrade_sync, url, revision)
