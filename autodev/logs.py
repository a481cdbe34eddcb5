"""Logging: plain lines for a terminal, JSON lines (LOG_JSON=true) for a log pipeline; secrets scrubbed."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import IO, Any

from engine import logctx

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
CONTEXT_FIELDS = logctx.FIELDS


class _Scrubber(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in logctx.current().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        if self.secrets:
            message = record.getMessage()
            for secret in self.secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        for key in CONTEXT_FIELDS:
            payload.setdefault(key, None)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{k}={record.__dict__[k]}" for k in CONTEXT_FIELDS if record.__dict__.get(k))
        return f"{line} [{extras}]" if extras else line


def configure_logging(
    level: str = "INFO",
    *,
    json_lines: bool = False,
    secrets: Sequence[str] = (),
    stream: IO[str] | None = None,
) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter() if json_lines else TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    handler.addFilter(_Scrubber(list(secrets)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "aiosqlite", "sqlalchemy.engine", "git.cmd"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
