"""Logging: plain lines for a terminal, JSON lines (LOG_JSON=true) for a log pipeline; secrets scrubbed."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import IO, Any

from engine import logctx
from engine.redact import Redactor

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_STANDARD.add("_scrubbed")
CONTEXT_FIELDS = logctx.FIELDS


class _Scrubber(logging.Filter):
    """Adds the bound ids and masks secrets in every field a record carries from its caller: the message
    and its arguments, the exception's text and traceback, the stack, and each `extra` field (nested
    values too). The fields logging fills in itself (logger, file, function, thread) come from code.

    Masked: each configured secret (the credentials, the passwords inside DATABASE_URL, REDIS_URL and the
    other URLs, the App key's lines) and the password of any URL (engine/redact.py). Not the guesses by
    shape that test output gets: logs carry no attacker's text to encode secrets, the entropy guess would
    swallow the ids logs exist for, and the key-shape patterns cost ~6 µs a line, 3 % of a webhook's CPU
    (every request writes an access line); the exact values cost ~0.4 µs."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.redact = Redactor(
            secrets, placeholder="***", encoded_forms=False, key_shapes=False, high_entropy=False
        )
        self._exceptions = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in logctx.current().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        if getattr(record, "_scrubbed", False):  # a record reaches each handler (and each filter) once more
            return True
        record.msg, record.args = self.redact(record.getMessage()), None
        if record.exc_info:
            # Rendered here, masked, and kept as the text every Formatter prints; the live exception goes,
            # so no handler can render it again unmasked.
            record.exc_text = record.exc_text or self._exceptions.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key in record.__dict__.keys() - _STANDARD:
            record.__dict__[key] = self._scrub(record.__dict__[key])
        record._scrubbed = True
        return True

    def _scrub(self, value: Any, depth: int = 0) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self.redact(value)
        if depth < 5 and isinstance(value, dict):
            return {self._scrub(k, depth + 1): self._scrub(v, depth + 1) for k, v in value.items()}
        if depth < 5 and isinstance(value, list | tuple | set | frozenset):
            return [self._scrub(v, depth + 1) for v in value]
        text = str(value)  # what the formatters would print (JSON's default=str)
        masked = self.redact(text)
        return value if masked == text else masked


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
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exc"] = record.exc_text
        if record.stack_info:
            payload["stack"] = record.stack_info
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
