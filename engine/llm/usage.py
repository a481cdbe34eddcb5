"""What one request is billed in the ledger: its reported usage when that is sane, else the worst case.

The worst case is what the budget guard checked before the request left: its estimated prompt at the
input price plus every output token it allowed. A request that left the process is billed even when
nothing usable came back: a timeout or a cut connection may have been processed (and billed) upstream.

A usage is sane when it is what a provider could bill for the request sent: non-negative integers, no
more completion tokens than the limit sent, cached tokens within the prompt, reasoning tokens within the
completion, and no more prompt tokens than the prompt has bytes (no tokenizer makes more tokens than
bytes; our estimate errs high but is not a bound, so a real prompt may cost more than was checked; the
ledger then records what was really billed and the next check sees it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.llm.pricing import Price

USAGE = "usage"
WORST_CASE = "worst case"
NOT_BILLED = "not billed"
# Per message and per request: chat templates add a few special tokens our byte count does not see.
_OVERHEAD_PER_ITEM = 16
_OVERHEAD = 64


@dataclass(frozen=True, slots=True)
class Sent:
    """A request as it left: what the guard checked and what bounds a sane usage."""

    model: str
    price: Price
    prompt_estimate: int
    prompt_bound: int
    max_out: int
    checked_usd: float


@dataclass(frozen=True, slots=True)
class Billing:
    tokens_in: int
    tokens_out: int
    tokens_cached: int
    tokens_reasoning: int
    usd: float
    billed_on: str  # usage | worst case | not billed
    note: str | None = None  # why a usage was not taken

    def event_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "tokens_cached": self.tokens_cached,
            "tokens_reasoning": self.tokens_reasoning,
            "usd": round(self.usd, 8),
            "billed_on": self.billed_on,
        }
        if self.note:
            data["usage_note"] = self.note
        return data


def prompt_bound(items: list[Any], extra: Any = ()) -> int:
    """More tokens than the prompt made of `items` (messages or embedding inputs) can possibly have."""
    size = len(json.dumps([items, extra], default=str).encode())
    return size + _OVERHEAD_PER_ITEM * len(items) + _OVERHEAD


def worst_case(sent: Sent) -> Billing:
    return Billing(sent.prompt_estimate, sent.max_out, 0, 0, sent.checked_usd, WORST_CASE)


def not_billed() -> Billing:
    return Billing(0, 0, 0, 0, 0.0, NOT_BILLED)


def bill(sent: Sent, usage: Any, *, embeddings: bool = False) -> Billing:
    """The billing for a request answered with `usage` (the raw JSON value), or its worst case."""
    try:
        billing = _from_usage(sent, usage, embeddings=embeddings)
    except _Nonsense as exc:
        return Billing(sent.prompt_estimate, sent.max_out, 0, 0, sent.checked_usd, WORST_CASE, f"{exc}"[:200])
    return billing


class _Nonsense(ValueError):
    pass


def _from_usage(sent: Sent, usage: Any, *, embeddings: bool) -> Billing:
    if usage is None:
        raise _Nonsense("no usage reported")
    if not isinstance(usage, Mapping):
        raise _Nonsense(f"usage is not an object: {usage!r}")
    prompt = _count(usage, "prompt_tokens")
    completion = 0 if embeddings and "completion_tokens" not in usage else _count(usage, "completion_tokens")
    cached = _count(usage.get("prompt_tokens_details") or {}, "cached_tokens", default=0)
    reasoning = _count(usage.get("completion_tokens_details") or {}, "reasoning_tokens", default=0)
    if completion > sent.max_out:
        raise _Nonsense(f"{completion} completion tokens reported, over the {sent.max_out} allowed")
    if prompt > sent.prompt_bound:
        raise _Nonsense(f"{prompt} prompt tokens reported for a prompt that can have {sent.prompt_bound}")
    if cached > prompt:
        raise _Nonsense(f"{cached} cached tokens reported of {prompt} prompt tokens")
    if reasoning > completion:
        raise _Nonsense(f"{reasoning} reasoning tokens reported of {completion} completion tokens")
    usd = sent.price.usd(prompt, completion, cached=cached, reasoning=reasoning)
    return Billing(prompt, completion, cached, reasoning, usd, USAGE)


def _count(where: Any, key: str, *, default: int | None = None) -> int:
    if not isinstance(where, Mapping):
        raise _Nonsense(f"usage details are not an object: {where!r}")
    value = where.get(key, default)
    if value is None and default is not None:
        value = default
    if value is None:
        raise _Nonsense(f"usage has no {key}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Nonsense(f"usage {key} is not a whole number: {value!r}")
    if value < 0:
        raise _Nonsense(f"usage {key} is negative: {value}")
    return value
