"""A reported usage is billed only when it is sane; anything else is billed at the worst case checked."""

from __future__ import annotations

from typing import Any

import pytest

from engine.llm.pricing import Price
from engine.llm.usage import USAGE, WORST_CASE, Sent, bill

PRICE = Price(2.0, 8.0, cached_per_million=0.5)
SENT = Sent("m", PRICE, prompt_estimate=1000, prompt_bound=5000, max_out=500, checked_usd=0.006)


def usage(prompt: Any = 800, completion: Any = 200, **extra: Any) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, **extra}


def test_a_sane_usage_is_billed_as_reported() -> None:
    billing = bill(SENT, usage())
    assert billing.billed_on == USAGE and (billing.tokens_in, billing.tokens_out) == (800, 200)
    assert billing.usd == pytest.approx((800 * 2 + 200 * 8) / 1e6)


def test_cached_and_reasoning_tokens_are_priced_as_the_pricing_file_says() -> None:
    reported = usage(
        prompt_tokens_details={"cached_tokens": 600}, completion_tokens_details={"reasoning_tokens": 150}
    )
    billing = bill(SENT, reported)
    assert (billing.tokens_cached, billing.tokens_reasoning) == (600, 150)
    assert billing.usd == pytest.approx((200 * 2 + 600 * 0.5 + 200 * 8) / 1e6)
    dear_reasoning = Sent("m", Price(2.0, 8.0, reasoning_per_million=20.0), 1000, 5000, 500, 0.02)
    assert bill(dear_reasoning, reported).usd == pytest.approx((800 * 2 + 50 * 8 + 150 * 20) / 1e6)


@pytest.mark.parametrize(
    ("reported", "why"),
    [
        (None, "no usage"),
        ("lots", "not an object"),
        (usage(prompt=-1_000_000_000), "negative"),
        (usage(completion=-5), "negative"),
        (usage(completion=2.5), "not a whole number"),
        (usage(prompt="800"), "not a whole number"),
        (usage(prompt=True), "not a whole number"),
        ({"completion_tokens": 10}, "no prompt_tokens"),
        (usage(completion=501), "over the 500 allowed"),
        (usage(prompt=5001), "can have 5000"),
        (usage(prompt_tokens_details={"cached_tokens": 900}), "cached tokens"),
        (usage(completion_tokens_details={"reasoning_tokens": 201}), "reasoning tokens"),
        (usage(prompt_tokens_details=[1]), "not an object"),
    ],
)
def test_a_nonsensical_usage_is_billed_at_the_worst_case_checked(reported: Any, why: str) -> None:
    billing = bill(SENT, reported)
    assert billing.billed_on == WORST_CASE and billing.usd == SENT.checked_usd
    assert billing.note is not None and why in billing.note


def test_a_prompt_dearer_than_estimated_is_billed_as_reported_above_the_check() -> None:
    billing = bill(SENT, usage(prompt=4000, completion=500))
    assert billing.billed_on == USAGE and billing.usd > SENT.checked_usd
