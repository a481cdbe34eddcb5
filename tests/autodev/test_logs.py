"""Structured logs: job_id, delivery_id and repo on every line of a piece of work; secrets never."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from autodev.logs import configure_logging
from engine import logctx


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    configure_logging("INFO", json_lines=True, secrets=["sk-very-secret-key"], stream=stream)
    yield stream
    root.handlers[:], root.level = saved


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_ids_bound_for_a_piece_of_work_are_on_each_of_its_lines(
    json_logs: io.StringIO,
) -> None:
    log = logging.getLogger("engine.somewhere")
    with logctx.bind(job_id="j1", repo="octo/widgets"), logctx.bind(delivery_id="d-9"):
        log.info("planning")
    log.info("idle")

    working, idle = lines(json_logs)
    assert (working["job_id"], working["delivery_id"], working["repo"]) == ("j1", "d-9", "octo/widgets")
    assert working["message"] == "planning" and working["level"] == "info"
    assert (idle["job_id"], idle["delivery_id"], idle["repo"]) == (None, None, None)


def test_an_explicit_id_wins_and_secrets_are_scrubbed(json_logs: io.StringIO) -> None:
    with logctx.bind(job_id="outer"):
        logging.getLogger("x").warning("key sk-very-secret-key refused", extra={"job_id": "inner"})

    [line] = lines(json_logs)
    assert line["job_id"] == "inner"
    assert line["message"] == "key *** refused"


async def test_ids_follow_the_tasks_a_job_starts() -> None:
    import asyncio

    async def child() -> dict[str, str]:
        return logctx.current()

    with logctx.bind(job_id="j2"):
        seen = await asyncio.create_task(child())

    assert seen == {"job_id": "j2"}
    assert logctx.current() == {}
