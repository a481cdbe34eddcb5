"""The LLM client: any OpenAI-compatible endpoint, our own retries, a budget check before and a cost after.

The SDK's retries are off so that every attempt passes our budget guard and our backoff honours Retry-After.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import openai
from openai import AsyncOpenAI

from engine.errors import PermanentFailure, TransientFailure
from engine.llm.budget import BudgetGuard
from engine.llm.pricing import PriceBook
from engine.llm.tokens import count_message_tokens
from engine.settings import Settings
from engine.store.models import CostEntry

log = logging.getLogger(__name__)

CheckCancel = Callable[[], Awaitable[None]]

BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
RETRY_AFTER_MAX_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class LLMReply:
    content: str | None
    tool_calls: list[dict[str, Any]]  # [{"id", "name", "arguments" (raw JSON text)}]
    tokens_in: int
    tokens_out: int
    usd: float

    def assistant_message(self) -> dict[str, Any]:
        """The reply as a message to append to the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in self.tool_calls
            ]
        return message


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs 25-70 ms of CPU on the event loop; one context serves every job's client.
    return ssl.create_default_context()


def make_openai_client(settings: Settings) -> AsyncOpenAI:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
    return AsyncOpenAI(
        api_key=key,
        base_url=settings.openai_base_url or None,
        timeout=settings.llm_timeout_seconds,
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(verify=_tls_context()),
    )


RecordCost = Callable[[CostEntry, dict[str, Any]], Awaitable[Any]]


class LLMClient:
    """One job's LLM access: guard → call (with retries) → cost entry + `llm_call` event.

    `record_cost(entry, data)` stores the cost entry and the `llm_call` event with `data` (one transaction)
    and shows the event; `check_cancel` runs between retries."""

    def __init__(
        self,
        *,
        settings: Settings,
        job_id: str,
        repo: str,
        guard: BudgetGuard,
        check_cancel: CheckCancel,
        record_cost: RecordCost,
        client: AsyncOpenAI | None = None,
        prices: PriceBook | None = None,
    ) -> None:
        self.settings = settings
        self.job_id = job_id
        self.repo = repo
        self.guard = guard
        self.check_cancel = check_cancel
        self.record_cost = record_cost
        self.client = client or make_openai_client(settings)
        self.prices = prices or PriceBook.load(settings)
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted(settings.secret_values(), key=len, reverse=True)

    async def aclose(self) -> None:
        await self.client.close()

    def model_for(self, role: str) -> str:
        return self.settings.model_planner if role == "planner" else self.settings.model_coder

    async def chat(
        self,
        *,
        role: str,
        messages: list[dict[str, Any]],
        step_index: int | None = None,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int = 4096,
    ) -> LLMReply:
        model = self.model_for(role)
        price = self.prices.price(model)
        messages = self.scrub(messages)
        # The guard reads the job row fresh, cancel flag included: a cancel stops the job before this call.
        await self.guard.check(
            model=model,
            price=price,
            prompt_tokens=count_message_tokens(messages, tools or ()),
            max_tokens=max_tokens,
        )
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": messages,
            **self.prices.params(model).request(max_tokens),
        }
        if tools:
            kwargs["tools"] = tools
        started = time.monotonic()
        response = await self._with_retries(kwargs)
        latency_ms = int((time.monotonic() - started) * 1000)
        usage = response.usage
        tokens_in = usage.prompt_tokens if usage else count_message_tokens(messages, tools or ())
        tokens_out = usage.completion_tokens if usage else max_tokens
        usd = price.usd(tokens_in, tokens_out)
        # The cost entry, the job's totals and the `llm_call` event: one transaction.
        await self.record_cost(
            CostEntry(
                job_id=self.job_id,
                step_index=step_index,
                role=role,
                model=model,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                usd=usd,
                latency_ms=latency_ms,
                repo=self.repo,
            ),
            {
                "role": role,
                "model": model,
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
                "usd": round(usd, 6),
                "latency_ms": latency_ms,
                "step_index": step_index,
            },
        )
        if not response.choices:
            raise TransientFailure(f"the LLM endpoint answered no choices for {model}")
        message = response.choices[0].message
        calls = [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments or "{}"}
            for c in (message.tool_calls or [])
            if getattr(c, "function", None) is not None
        ]
        return LLMReply(message.content, calls, tokens_in, tokens_out, usd)

    def scrub(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages with every configured secret replaced; a prompt never carries one."""
        if not self.secrets:
            return messages
        text = json.dumps(messages)
        if not any(s in text for s in self.secrets):
            return messages
        for secret in self.secrets:
            text = text.replace(json.dumps(secret)[1:-1], "[redacted]")
        return list(json.loads(text))

    async def _with_retries(self, kwargs: dict[str, Any]) -> Any:
        where = self.settings.openai_base_url or "https://api.openai.com/v1"
        attempts = self.settings.llm_max_retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                return await self.client.chat.completions.create(**kwargs)
            except openai.AuthenticationError as exc:
                raise PermanentFailure(
                    f"the LLM endpoint {where} refused the API key (401); check OPENAI_API_KEY"
                ) from exc
            except openai.RateLimitError as exc:
                if last:
                    raise TransientFailure(
                        f"rate limited by the LLM endpoint {where} after {attempts} attempts",
                        retry_after=_retry_after(exc),
                    ) from exc
                delay = _delay(exc, attempt)
            except openai.APITimeoutError as exc:
                if last:
                    raise TransientFailure(f"the LLM endpoint {where} timed out {attempts} times") from exc
                delay = _backoff(attempt)
            except openai.APIConnectionError as exc:
                if last:
                    raise PermanentFailure(
                        f"the LLM endpoint {where} is unreachable ({exc.__cause__ or exc}); "
                        "check OPENAI_BASE_URL"
                    ) from exc
                delay = _backoff(attempt)
            except openai.APIStatusError as exc:
                if exc.status_code < 500:
                    raise PermanentFailure(
                        f"the LLM endpoint {where} refused the request ({exc.status_code}): "
                        f"{_error_text(exc)}"
                    ) from exc
                if last:
                    raise TransientFailure(
                        f"the LLM endpoint {where} kept failing ({exc.status_code}) after {attempts} attempts"
                    ) from exc
                delay = _delay(exc, attempt)
            log.warning("LLM call failed; retrying in %.1fs", delay, extra={"job_id": self.job_id})
            await asyncio.sleep(delay)
            await self.check_cancel()
        raise AssertionError("unreachable")


def _backoff(attempt: int) -> float:
    # Full jitter: spreads retries of many workers hitting the same limit.
    return random.uniform(0, min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))


def _delay(exc: openai.APIStatusError, attempt: int) -> float:
    after = _retry_after(exc)
    return _backoff(attempt) if after is None else after


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    if value is None:
        return None
    try:
        return min(RETRY_AFTER_MAX_SECONDS, max(0.0, float(value)))
    except ValueError:
        return None


def _error_text(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(exc.message)[:300]
