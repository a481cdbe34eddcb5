"""Structured logs: job_id, delivery_id and repo on every line of a piece of work; secrets never."""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from autodev.logs import configure_logging
from engine import logctx
from tests.conftest import make_settings


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


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield
    root.handlers[:], root.level = saved


@pytest.mark.parametrize("json_lines", [True, False], ids=["json", "text"])
def test_no_field_of_a_record_carries_a_secret(
    tmp_path: Path, restore_logging: None, json_lines: bool
) -> None:
    """Only the message was scrubbed: exception text, extras and the URLs' passwords went out as they were."""
    webhook_secret = "whsec-" + secrets.token_urlsafe(18)
    llm_key = "sk-" + secrets.token_urlsafe(30)
    db_password = "pg-" + secrets.token_urlsafe(12)
    redis_password = "rd-" + secrets.token_urlsafe(12)
    key_body = [secrets.token_urlsafe(48)[:64] for _ in range(3)]
    pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(key_body) + "\n-----END PRIVATE KEY-----\n"
    (tmp_path / "app.pem").write_text(pem)
    database_url = f"postgresql+asyncpg://autodev:{db_password}@db:5432/autodev"
    settings = make_settings(
        tmp_path,
        github_webhook_secret=webhook_secret,
        github_private_key=str(tmp_path / "app.pem"),  # a path: the key's text is what must not leak
        openai_api_key=llm_key,
        database_url=database_url,
        redis_url=f"redis://:{redis_password}@cache:6379/0",
    )
    stream = io.StringIO()
    configure_logging("INFO", json_lines=json_lines, secrets=settings.secret_values(), stream=stream)
    log = logging.getLogger("tests.leaky")

    try:
        raise RuntimeError(f"refused {llm_key} for {database_url}; key starts {key_body[0]}")
    except RuntimeError:
        log.exception(
            "connecting to %s",
            database_url,
            extra={
                "secret": webhook_secret,
                "request": {"headers": {"authorization": f"Bearer {llm_key}"}, "body": [pem]},
                "password": db_password,
            },
        )
    record = logging.LogRecord("tests.leaky", logging.ERROR, __file__, 1, "stack", None, None)
    record.stack_info = f"Stack (most recent call last):\n  connect(password={redis_password!r})"
    log.handle(record)

    out = stream.getvalue()
    for value in (webhook_secret, llm_key, db_password, redis_password, *key_body):
        assert value not in out
    assert "RuntimeError: refused ***" in out and "Traceback" in out  # the traceback is there, masked
    assert "postgresql+asyncpg://autodev:***@db:5432/autodev" in out
    if json_lines:
        first, second = lines(stream)
        assert first["secret"] == "***" and first["password"] == "***"
        assert first["request"] == {"headers": {"authorization": "Bearer ***"}, "body": ["***"]}
        assert second["stack"] == "Stack (most recent call last):\n  connect(password='***')"


def test_a_weak_url_password_equal_to_its_user_is_masked_only_in_url_form(tmp_path: Path) -> None:
    """docker-compose.yml's autodev:autodev: masking the word would mangle every line naming the service."""
    settings = make_settings(tmp_path, database_url="postgresql+asyncpg://autodev:autodev@postgres/autodev")

    assert "autodev" not in settings.secret_values()


async def test_ids_follow_the_tasks_a_job_starts() -> None:
    import asyncio

    async def child() -> dict[str, str]:
        return logctx.current()

    with logctx.bind(job_id="j2"):
        seen = await asyncio.create_task(child())

    assert seen == {"job_id": "j2"}
    assert logctx.current() == {}
