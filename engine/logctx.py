"""Ids that belong on every log line of a piece of work (job_id, delivery_id, repo), set once where it starts.

Context variables follow asyncio tasks, so a job's id reaches the log lines of everything it awaits
without being passed along; the log formatter (autodev.logs) reads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

FIELDS = ("job_id", "delivery_id", "repo")
_current: ContextVar[dict[str, str] | None] = ContextVar("autodev_log_context", default=None)


def current() -> dict[str, str]:
    return _current.get() or {}


@contextmanager
def bind(**values: str | None) -> Iterator[None]:
    """Add ids for the duration of the block (and of the tasks it starts)."""
    token = _current.set({**current(), **{k: v for k, v in values.items() if v}})
    try:
        yield
    finally:
        _current.reset(token)
