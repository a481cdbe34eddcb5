"""One request to the LLM endpoint through the openai SDK, and a name for whatever came back.

The SDK hands a 200 whose body is not JSON back as a plain string (a proxy's HTML error page), so the
raw response is read here and the JSON checked by us; each failure says whether the request may have
been processed upstream (then it is billed at its worst case), whether another attempt may help, and,
when none is left, the reason the job ends with.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import openai
from openai import AsyncOpenAI

from engine.errors import JobStopped, PermanentFailure, TransientFailure
from engine.llm.params import explain_refused_parameter

BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
RETRY_AFTER_MAX_SECONDS = 60.0
SHOWN_CHARS = 200
NOT_SENT = "not sent"
# The connection was never made: the request did not leave the process (httpx and httpx2 name them alike).
_NOT_SENT = {"ConnectError", "ConnectTimeout", "PoolTimeout", "UnsupportedProtocol", "InvalidURL"}
# Statuses a gateway answers when the model behind it may have run anyway: billed at the worst case.
_UPSTREAM_MAY_HAVE_RUN = {408, 502, 504, 520, 521, 522, 523, 524}


class Failed(Exception):
    """One attempt that gave nothing usable."""

    def __init__(
        self,
        outcome: str,
        detail: str,
        *,
        billed: bool,
        retry: bool,
        status: openai.APIStatusError | None = None,
    ) -> None:
        super().__init__(detail)
        self.outcome = outcome  # short: "timed out", "HTTP 503", "not JSON", …; kept on the cost entry
        self.detail = detail
        # A request that never left (no connection was made) is neither billed nor recorded.
        self.left = outcome != NOT_SENT
        self.billed = billed
        self.retry = retry
        self.status = status

    def delay(self, attempt: int) -> float:
        after = retry_after(self.status) if self.status is not None else None
        return backoff(attempt) if after is None else after

    def final(self, *, where: str, model: str, attempts: int) -> JobStopped | TransientFailure:
        """What the job is told when this was the last attempt."""
        if self.status is not None:
            return _status_failure(self.status, where=where, model=model, attempts=attempts)
        if self.outcome == NOT_SENT:
            return PermanentFailure(
                f"the LLM endpoint {where} is unreachable ({self.detail}); check OPENAI_BASE_URL"
            )
        if self.outcome == "timed out":
            return TransientFailure(f"the LLM endpoint {where} timed out {attempts} times")
        if self.outcome == "connection lost":
            return TransientFailure(
                f"the LLM endpoint {where} dropped the connection {attempts} times ({self.detail})"
            )
        return TransientFailure(self.detail)


@dataclass(frozen=True, slots=True)
class Answer:
    body: dict[str, Any]
    text: str  # the body as it came, for messages about it


async def post(client: AsyncOpenAI, kind: str, kwargs: dict[str, Any]) -> Answer:
    """Send one chat completion (`kind` "chat") or embeddings request; raise Failed unless JSON came back."""
    try:
        if kind == "chat":
            raw: Any = await client.chat.completions.with_raw_response.create(**kwargs)
        else:
            raw = await client.embeddings.with_raw_response.create(**kwargs)
    except openai.APITimeoutError as exc:
        sent = not _never_sent(exc)
        raise Failed("timed out" if sent else NOT_SENT, _cause(exc), billed=sent, retry=True) from exc
    except openai.APIConnectionError as exc:
        sent = not _never_sent(exc)
        outcome = "connection lost" if sent else NOT_SENT
        raise Failed(outcome, _cause(exc), billed=sent, retry=True) from exc
    except openai.APIStatusError as exc:
        code = exc.status_code
        retry = code in (408, 409, 429) or code >= 500
        raise Failed(
            f"HTTP {code}", _error_text(exc), billed=code in _UPSTREAM_MAY_HAVE_RUN, retry=retry, status=exc
        ) from exc
    response = raw.http_response
    text = response.text
    content_type = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
    try:
        body = json.loads(text)
    except ValueError:
        shown = " ".join(text[:SHOWN_CHARS].split())
        said = content_type if "json" not in content_type else f"{content_type} that does not parse"
        detail = f"the LLM endpoint answered {said}, not JSON: {shown}"
        raise Failed("not JSON", detail, billed=True, retry=True) from None
    if not isinstance(body, dict):
        raise malformed(Answer({}, text), "a JSON object")
    return Answer(body, text)


def malformed(answer: Answer, what: str) -> Failed:
    """An answer that is JSON but not `what` (a chat completion, embeddings): worth another attempt."""
    error = answer.body.get("error")
    if isinstance(error, dict) and error.get("message"):
        said = f"an error with status 200: {' '.join(str(error['message']).split())[:SHOWN_CHARS]}"
    else:
        said = f"JSON that is not {what}: {' '.join(answer.text[:SHOWN_CHARS].split())}"
    return Failed("malformed", f"the LLM endpoint answered {said}", billed=True, retry=True)


def _status_failure(
    exc: openai.APIStatusError, *, where: str, model: str, attempts: int
) -> JobStopped | TransientFailure:
    code = exc.status_code
    if code == 401:
        return PermanentFailure(f"the LLM endpoint {where} refused the API key (401); check OPENAI_API_KEY")
    if code == 429:
        reason = f"rate limited by the LLM endpoint {where} after {attempts} attempts"
        return TransientFailure(reason, retry_after=retry_after(exc))
    if code >= 500 or code in (408, 409):
        return TransientFailure(f"the LLM endpoint {where} kept failing ({code}) after {attempts} attempts")
    message = _error_text(exc)
    if code == 400:
        explained = explain_refused_parameter(model, message, _error_field(exc, "param"))
        if explained is not None:
            return PermanentFailure(f"the LLM endpoint {where} refused the request (400): {explained}")
    return PermanentFailure(f"the LLM endpoint {where} refused the request ({code}): {message}")


def backoff(attempt: int) -> float:
    # Full jitter: spreads retries of many workers hitting the same limit.
    return random.uniform(0, min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))


def retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    if value is None:
        return None
    try:
        return min(RETRY_AFTER_MAX_SECONDS, max(0.0, float(value)))
    except ValueError:
        return None


def _never_sent(exc: Exception) -> bool:
    cause = exc.__cause__
    return cause is not None and any(c.__name__ in _NOT_SENT for c in type(cause).__mro__)


def _cause(exc: Exception) -> str:
    cause = exc.__cause__
    if cause is None:
        return type(exc).__name__
    return f"{type(cause).__name__}: {cause}"[:SHOWN_CHARS] if str(cause) else type(cause).__name__


def _error_field(exc: openai.APIStatusError, key: str) -> str | None:
    body = exc.body
    inner = body.get("error", body) if isinstance(body, dict) else None
    value = inner.get(key) if isinstance(inner, dict) else None
    return str(value) if value is not None else None


def _error_text(exc: openai.APIStatusError) -> str:
    message = _error_field(exc, "message") or str(exc.message)
    return " ".join(message.split())[:300]
