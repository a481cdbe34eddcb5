"""The token estimate is calibrated per model from the prompt tokens its provider reported."""

from __future__ import annotations

import pytest

from engine.store.calibration import (
    MARGIN,
    MAX_RATIO,
    MIN_RATIO,
    MIN_SAMPLES,
    SAMPLES,
    Calibration,
    calibrate,
)
from engine.store.jobs import JobStore
from engine.store.models import CostEntry
from tests.engine.llm.conftest import new_job


async def record(
    store: JobStore,
    job_id: str,
    model: str,
    reported: int,
    estimated: int | None,
    billed_on: str = "usage",
    repo: str = "acme/calc",
) -> None:
    entry = CostEntry(
        job_id=job_id,
        repo=repo,
        role="coder",
        model=model,
        tokens_in=reported,
        tokens_in_estimate=estimated,
        tokens_out=10,
        usd=0.001,
        billed_on=billed_on,
        latency_ms=5,
    )
    await store.add_cost(entry)


def test_too_few_reports_leave_the_estimate_as_it_is() -> None:
    few = [(600, 1000)] * (MIN_SAMPLES - 1)
    assert calibrate("m", few) == Calibration("m", 1.0, MIN_SAMPLES - 1)
    assert Calibration("m", 1.0, 0).limit(24_000) == 24_000


def test_the_highest_recent_ratio_is_used_so_every_prompt_seen_would_have_fitted() -> None:
    calibration = calibrate("m", [(600, 1000), (640, 1000)] + [(610, 1000)] * (MIN_SAMPLES - 2))
    assert calibration.ratio == pytest.approx(0.64)
    assert calibration.limit(24_000) == int(24_000 / 0.64 / (1 + MARGIN))


def test_a_margin_is_left_for_prompts_unlike_the_ones_reported() -> None:
    """A model's latest requests may all have been about one repository; the next may be about another,
    whose text the estimate overcounts by a few percent less."""
    calibration = calibrate("m", [(640, 1000)] * MIN_SAMPLES)
    filled = calibration.limit(24_000) * calibration.ratio  # the model's tokens of a full pack
    assert 0 < MARGIN <= 0.05
    assert 24_000 / (1 + MARGIN) - 1 <= filled < 24_000


def test_tiny_prompts_say_nothing_and_absurd_ratios_are_clamped() -> None:
    assert calibrate("m", [(10, 50)] * SAMPLES).samples == 0  # mostly per-message overhead
    assert calibrate("m", [(1, 1000)] * MIN_SAMPLES).ratio == MIN_RATIO  # a provider reporting nonsense
    assert calibrate("m", [(90_000, 1000)] * MIN_SAMPLES).ratio == MAX_RATIO
    assert calibrate("m", [(0, 1000)] * SAMPLES).samples == 0


async def test_a_models_latest_reported_requests_calibrate_it_and_no_other(store: JobStore) -> None:
    job_id = await new_job(store)
    for _ in range(MIN_SAMPLES):
        await record(store, job_id, "gpt-4.1", 700, 1000)
    await record(store, job_id, "other-model", 1900, 1000)  # another tokenizer
    await record(store, job_id, "gpt-4.1", 1000, 1000, billed_on="worst case")  # no reported usage
    await record(store, job_id, "gpt-4.1", 1000, None)  # recorded before estimates were kept

    calibration = await store.token_calibration("gpt-4.1")

    assert (calibration.ratio, calibration.samples) == (pytest.approx(0.7), MIN_SAMPLES)
    assert (await store.token_calibration("unused-model")).ratio == 1.0


async def test_only_the_latest_requests_count(store: JobStore) -> None:
    """A provider that changed its tokenizer is followed once enough new requests came back."""
    job_id = await new_job(store)
    for _ in range(5):
        await record(store, job_id, "gpt-4.1", 950, 1000)
    for _ in range(SAMPLES):
        await record(store, job_id, "gpt-4.1", 600, 1000)

    calibration = await store.token_calibration("gpt-4.1")

    assert (calibration.ratio, calibration.samples) == (pytest.approx(0.6), SAMPLES)


async def test_a_repository_with_enough_reports_of_its_own_is_calibrated_on_them(store: JobStore) -> None:
    """The estimate overcounts Java by a few percent more than Go: a pack for gson sized on gin's requests
    filled 89.9 % of its limit (docs/benchmarks.md); sized on gson's own, as much as any."""
    job_id = await new_job(store)
    for _ in range(MIN_SAMPLES):
        await record(store, job_id, "gpt-4.1", 730, 1000, repo="google/gson")
    for _ in range(SAMPLES):
        await record(store, job_id, "gpt-4.1", 770, 1000, repo="gin-gonic/gin")
    for _ in range(MIN_SAMPLES - 1):
        await record(store, job_id, "gpt-4.1", 750, 1000, repo="new/repo")

    own = await store.token_calibration("gpt-4.1", "google/gson")
    fresh = await store.token_calibration("gpt-4.1", "new/repo")  # too few of its own yet

    assert (own.ratio, own.scope) == (pytest.approx(0.73), "repository")
    assert (fresh.ratio, fresh.scope, fresh.samples) == (pytest.approx(0.77), "model", SAMPLES)
    assert own.limit(24_000) > fresh.limit(24_000)
    assert (await store.token_calibration("gpt-4.1")).scope == "model"
