"""The LLM client: chat and embeddings from any OpenAI-compatible endpoint, through one guard and ledger.

Every request is one attempt: the budget guard checks its worst case first, it is sent (engine.llm.wire),
and the ledger records what it is billed whatever came back (engine.llm.usage) before anything else
happens. The SDK's retries are off so that each retry is an attempt of its own, and our backoff honours
Retry-After. Chat and embeddings share the job's one SDK client and so its connection pool.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import openai
from openai import AsyncOpenAI

from engine import tracing
from engine.errors import ModelRefused, PermanentFailure
from engine.llm.budget import BudgetGuard
from engine.llm.pricing import PriceBook
from engine.llm.reply import LLMReply, parse_chat, parse_embeddings
from engine.llm.tokens import count_message_tokens, count_tokens
from engine.llm.usage import Billing, Sent, bill, not_billed, prompt_bound, worst_case
from engine.llm.wire import Answer, Failed, post
from engine.settings import Settings
from engine.store.models import CostEntry

__all__ = ["LLMClient", "LLMReply", "make_openai_client"]

log = logging.getLogger(__name__)

RecordCost = Callable[[CostEntry, dict[str, Any]], Awaitable[Any]]
T = TypeVar("T")
REFUSAL_SHOWN_CHARS = 1000


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


@dataclass(frozen=True, slots=True)
class _Call:
    role: str
    model: str
    kind: str  # chat | embeddings
    kwargs: dict[str, Any]
    sent: Sent
    step_index: int | None


class LLMClient:
    """One job's LLM access: for each attempt, guard → request → cost entry + `llm_call` event.

    `record_cost(entry, data)` stores the cost entry and the `llm_call` event with `data` (one transaction)
    and shows the event. The guard's read of the job row carries the cancel flag, so a cancel stops the job
    before any attempt, a retry's included."""

    def __init__(
        self,
        *,
        settings: Settings,
        job_id: str,
        repo: str,
        guard: BudgetGuard,
        record_cost: RecordCost,
        client: AsyncOpenAI | None = None,
        prices: PriceBook | None = None,
    ) -> None:
        self.settings = settings
        self.job_id = job_id
        self.repo = repo
        self.guard = guard
        self.record_cost = record_cost
        self.client = client or make_openai_client(settings)
        self.prices = prices or PriceBook.load(settings)
        self.where = settings.openai_base_url or "https://api.openai.com/v1"
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
        """The model's answer; raises ModelRefused when the model refuses (its words in `refusal`)."""
        model = self.model_for(role)
        price = self.prices.price(model)
        messages = self.scrub(messages)
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": messages,
            **self.prices.params(model).request(max_tokens),
        }
        if tools:
            kwargs["tools"] = tools
        estimate = count_message_tokens(messages, tools or ())
        sent = Sent(model, price, estimate, prompt_bound(messages, tools or []), max_tokens, 0.0)
        reply = await self._attempts(_Call(role, model, "chat", kwargs, sent, step_index), parse_chat)
        if reply.refusal is not None:
            raise ModelRefused(
                f"the {role} model {model} refused: “{reply.refusal[:REFUSAL_SHOWN_CHARS]}”",
                refusal=reply.refusal,
                role=role,
                model=model,
            )
        return reply

    async def embed(self, texts: Sequence[str], *, step_index: int | None = None) -> list[list[float]]:
        """Vectors for `texts` from EMBEDDING_MODEL, checked, retried and billed as chat calls are."""
        model = self.settings.embedding_model
        if not model:
            raise PermanentFailure("no EMBEDDING_MODEL is set")
        if not texts:
            return []
        price = self.prices.price(model)
        inputs = [self.scrub_text(t) for t in texts]
        kwargs = {"model": model, "input": inputs, "encoding_format": "float"}
        estimate = sum(count_tokens(t) + 1 for t in inputs)
        sent = Sent(model, price, estimate, prompt_bound(inputs), 0, 0.0)
        call = _Call("embeddings", model, "embeddings", kwargs, sent, step_index)
        return await self._attempts(call, functools.partial(parse_embeddings, count=len(inputs)))

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

    def scrub_text(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text

    async def _attempts(self, call: _Call, parse: Callable[[Answer], T]) -> T:
        attempts = self.settings.llm_max_retries + 1
        for attempt in range(1, attempts + 1):
            checked = await self.guard.check(
                model=call.model,
                price=call.sent.price,
                prompt_tokens=call.sent.prompt_estimate,
                max_tokens=call.sent.max_out,
            )
            sent = replace(call.sent, checked_usd=checked)
            try:
                return await self._attempt(call, sent, attempt, parse)
            except Failed as failed:
                if not failed.retry or attempt == attempts:
                    raise failed.final(where=self.where, model=call.model, attempts=attempt) from failed
                delay = failed.delay(attempt - 1)
                log.warning(
                    "LLM request failed (%s); retrying in %.1fs",
                    failed.outcome,
                    delay,
                    extra={"job_id": self.job_id},
                )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _attempt(self, call: _Call, sent: Sent, attempt: int, parse: Callable[[Answer], T]) -> T:
        started = time.monotonic()
        failure: Failed | None = None
        result: T | None = None
        refusal: str | None = None
        answer: Answer | None = None
        with tracing.span(
            f"{call.kind} {call.model}", _request_attributes(call, attempt), kind="client"
        ) as span:
            try:
                answer = await post(self.client, call.kind, call.kwargs)
            except Failed as failed:
                failure = failed
                billing = worst_case(sent) if failed.billed else not_billed()
            else:
                billing = bill(sent, answer.body.get("usage"), embeddings=call.kind == "embeddings")
                try:
                    result = parse(answer)
                except Failed as failed:
                    failure = failed
                refusal = getattr(result, "refusal", None)
            outcome = failure.outcome if failure else ("refused" if refusal is not None else "ok")
            span.set(_response_attributes(answer, sent, billing, outcome))
            if outcome != "ok":
                span.error(outcome)
        note = "; ".join(n for n in (billing.note, failure.detail if failure else None) if n) or None
        if failure is None or failure.left:
            await self._record(call, sent, billing, outcome, note, attempt, started, refusal)
        if failure is not None:
            raise failure
        assert result is not None
        return result

    async def _record(
        self,
        call: _Call,
        sent: Sent,
        billing: Billing,
        outcome: str,
        note: str | None,
        attempt: int,
        started: float,
        refusal: str | None,
    ) -> None:
        latency_ms = int((time.monotonic() - started) * 1000)
        entry = CostEntry(
            job_id=self.job_id,
            step_index=call.step_index,
            role=call.role,
            model=call.model,
            tokens_in=billing.tokens_in,
            tokens_in_estimate=sent.prompt_estimate,
            tokens_out=billing.tokens_out,
            tokens_cached=billing.tokens_cached,
            tokens_reasoning=billing.tokens_reasoning,
            usd=billing.usd,
            checked_usd=sent.checked_usd,
            billed_on=billing.billed_on,
            outcome=outcome[:60],
            note=(note or "")[:2000] or None,
            attempt=attempt,
            latency_ms=latency_ms,
            repo=self.repo,
        )
        data: dict[str, Any] = {
            "role": call.role,
            "model": call.model,
            **billing.event_data(),
            "checked_usd": round(sent.checked_usd, 8),
            "outcome": outcome,
            "attempt": attempt,
            "latency_ms": latency_ms,
            "step_index": call.step_index,
        }
        if refusal is not None:
            data["refusal"] = refusal[:REFUSAL_SHOWN_CHARS]
        # The cost entry, the job's totals and the `llm_call` event: one transaction.
        await self.record_cost(entry, data)


def _request_attributes(call: _Call, attempt: int) -> dict[str, Any]:
    """The GenAI semantic conventions' request attributes (no prompt: only what it was sent to)."""
    return {
        "gen_ai.operation.name": call.kind,
        "gen_ai.system": "openai",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": call.model,
        "gen_ai.request.max_tokens": call.sent.max_out or None,
        "autodev.role": call.role,
        "autodev.step_index": call.step_index,
        "autodev.attempt": attempt,
    }


def _response_attributes(answer: Answer | None, sent: Sent, billing: Billing, outcome: str) -> dict[str, Any]:
    """What the request was billed and how it ended; the answer's model and id, never its text."""
    body = answer.body if answer is not None else {}
    choices = body.get("choices")
    reasons = (
        [c.get("finish_reason") for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []
    )
    return {
        "gen_ai.response.model": body.get("model") if isinstance(body.get("model"), str) else None,
        "gen_ai.response.id": body.get("id") if isinstance(body.get("id"), str) else None,
        "gen_ai.response.finish_reasons": [r for r in reasons if isinstance(r, str)] or None,
        "gen_ai.usage.input_tokens": billing.tokens_in,
        "gen_ai.usage.output_tokens": billing.tokens_out,
        "gen_ai.usage.cache_read.input_tokens": billing.tokens_cached,
        "gen_ai.usage.reasoning.output_tokens": billing.tokens_reasoning,
        "autodev.cost.usd": round(billing.usd, 8),
        "autodev.cost.checked_usd": round(sent.checked_usd, 8),
        "autodev.cost.billed_on": billing.billed_on,
        "autodev.outcome": outcome,
        "error.type": None if outcome == "ok" else outcome,
    }
