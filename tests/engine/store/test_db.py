"""The SQLite writer: a batch in one call, on the loop when the lock is free, else in a thread of its own."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from engine.store.db import SqliteWriter


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[tuple[Path, SqliteWriter]]:
    path = tmp_path / "autodev.db"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE notes (body TEXT)")
    writer = SqliteWriter(f"sqlite+aiosqlite:///{path}")
    yield path, writer
    await writer.aclose()


def note(body: str) -> Callable[[Connection], int]:
    def work(connection: Connection) -> int:
        connection.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": body})
        return int(connection.execute(text("SELECT count(*) FROM notes")).scalar_one())

    return work


async def test_a_free_lock_commits_at_once_on_the_loops_connection(
    database: tuple[Path, SqliteWriter],
) -> None:
    path, writer = database
    assert await writer.run(note("one")) == 1
    assert await writer.run(note("two")) == 2
    assert writer.in_thread == 0
    with sqlite3.connect(path) as reader:
        assert reader.execute("SELECT body FROM notes ORDER BY rowid").fetchall() == [("one",), ("two",)]


async def test_a_taken_lock_is_waited_for_in_the_thread_while_the_loop_runs_on(
    database: tuple[Path, SqliteWriter],
) -> None:
    path, writer = database
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer (the worker, a job page action) holds the lock
    waiting = asyncio.create_task(writer.run(note("after the other")))
    ticks = 0
    for _ in range(5):
        await asyncio.sleep(0.02)  # the loop is not blocked on the lock
        ticks += 1
    assert ticks == 5 and not waiting.done()
    other.execute("INSERT INTO notes (body) VALUES ('first')")
    other.execute("COMMIT")
    assert await asyncio.wait_for(waiting, 10) == 2
    assert writer.in_thread == 1
    other.close()


async def test_other_database_errors_are_not_retried(database: tuple[Path, SqliteWriter]) -> None:
    _, writer = database

    def broken(connection: Connection) -> None:
        connection.execute(text("INSERT INTO missing (x) VALUES (1)"))

    with pytest.raises(OperationalError, match="no such table"):
        await writer.run(broken)
    assert writer.in_thread == 0


async def test_the_thread_checkpoints_the_wal_for_the_loops_commits(
    database: tuple[Path, SqliteWriter], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, writer = database
    monkeypatch.setattr(writer, "CHECKPOINT_EVERY", 3)
    for n in range(3):
        await writer.run(note(f"n{n}"))
    assert writer._checkpointing is not None
    await writer._checkpointing
    assert writer.checkpoints == 1 and writer._checkpointing is None
