"""The LLM client against a scripted OpenAI-compatible server on 127.0.0.1: each request that leaves is
checked first and recorded after, whatever comes back, and every failure says what a user can do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import JobCancelled, LimitReached, ModelRefused, PermanentFailure, TransientFailure
from engine.store.jobs import JobStore
from tests.engine.llm.conftest import SYSTEM, client_for, new_job, settings_for
from tests.support.fake_llm import FakeLLM


async def test_a_gpt_5_job_sends_max_completion_tokens_and_no_temperature(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    """Regression: every call sent max_tokens, which gpt-5 and the o-series refuse with a 400."""
    llm.reasoning_models.update({"gpt-5", "o4-mini"})
    settings = settings_for(tmp_path, database_url, llm, model_coder="gpt-5", model_planner="o4-mini")
    llm.reply_text("planned").reply_text("coded")
    client = client_for(store, settings, await new_job(store))

    assert (await client.chat(role="planner", messages=SYSTEM, max_tokens=300)).content == "planned"
    assert (await client.chat(role="coder", messages=SYSTEM, max_tokens=700)).content == "coded"

    sent = [{k: v for k, v in r.items() if k != "messages"} for r in llm.requests]
    assert sent == [
        {"model": "o4-mini", "max_completion_tokens": 300, "reasoning_effort": "medium"},
        {"model": "gpt-5", "max_completion_tokens": 700, "reasoning_effort": "medium"},
    ]
    await client.aclose()


async def test_a_model_sent_max_tokens_by_a_gpt_5_style_server_fails_in_one_line_naming_the_fix(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"corp-gpt5": {"input": 1.25, "output": 10}}))  # an unknown family
    llm.reasoning_models.add("corp-gpt5")
    settings = settings_for(tmp_path, database_url, llm, model_coder="corp-gpt5", pricing_file=prices)
    job_id = await new_job(store)
    client = client_for(store, settings, job_id)

    with pytest.raises(PermanentFailure) as caught:
        await client.chat(role="coder", messages=SYSTEM, max_tokens=100)

    reason = caught.value.reason
    assert "\n" not in reason
    assert reason.startswith(f"the LLM endpoint {llm.base_url} refused the request (400)")
    assert "corp-gpt5 does not take `max_tokens`" in reason
    assert """set "token_limit": "max_completion_tokens" for 'corp-gpt5'""" in reason
    assert len(llm.requests) == 1  # a 400 is not retried
    view = await store.view(job_id)
    assert [(c.outcome, c.billed_on, c.usd) for c in view.costs] == [("HTTP 400", "not billed", 0.0)]
    await client.aclose()


async def test_an_html_page_with_status_200_is_a_transient_failure_quoting_it(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    """Regression: "internal error: AttributeError: 'str' object has no attribute 'usage'"."""
    page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    llm.reply_raw(page).reply_raw(page)
    settings = settings_for(tmp_path, database_url, llm, llm_max_retries=1)
    job_id = await new_job(store)
    client = client_for(store, settings, job_id)

    with pytest.raises(TransientFailure) as caught:
        await client.chat(role="coder", messages=SYSTEM, max_tokens=100)

    assert caught.value.reason == f"the LLM endpoint answered text/html, not JSON: {page}"
    view = await store.view(job_id)
    # It may have been processed behind the proxy: each attempt is billed at what was checked for it.
    assert [(c.outcome, c.billed_on, c.attempt) for c in view.costs] == [
        ("not JSON", "worst case", 1),
        ("not JSON", "worst case", 2),
    ]
    assert all(c.usd == c.checked_usd and c.usd > 0 for c in view.costs)
    await client.aclose()


async def test_json_that_is_not_a_completion_is_transient_too(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    llm.reply_raw('{"detail": "upstream busy"}', content_type="application/json")
    llm.reply_raw("[1, 2", content_type="application/json")
    llm.reply_raw("[1, 2]", content_type="application/json")
    llm.reply_text("fine")
    settings = settings_for(tmp_path, database_url, llm, llm_max_retries=3)
    job_id = await new_job(store)
    client = client_for(store, settings, job_id)

    assert (await client.chat(role="coder", messages=SYSTEM, max_tokens=100)).content == "fine"

    costs = (await store.view(job_id)).costs
    assert [c.outcome for c in costs] == ["malformed", "not JSON", "malformed", "ok"]
    assert "not a chat completion" in (costs[0].note or "")
    assert "application/json that does not parse" in (costs[1].note or "")
    assert "not a JSON object: [1, 2]" in (costs[2].note or "")
    await client.aclose()


async def test_a_server_that_never_answers_times_out_each_attempt_is_checked_and_billed(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    """Regression: a timed-out call was retried without a budget check and never recorded (5 sent, 0 kept)."""
    llm.reply_hang().reply_hang()
    settings = settings_for(tmp_path, database_url, llm, llm_max_retries=1, llm_timeout_seconds=0.3)
    job_id = await new_job(store)
    client = client_for(store, settings, job_id)

    with pytest.raises(TransientFailure, match="timed out 2 times"):
        await client.chat(role="coder", messages=SYSTEM, max_tokens=100)

    view = await store.view(job_id)
    assert len(llm.requests) == 2 and view.requests == 2
    assert [(c.outcome, c.billed_on) for c in view.costs] == [("timed out", "worst case")] * 2
    assert view.cost_usd == pytest.approx(2 * view.costs[0].checked_usd)
    await client.aclose()


async def test_a_retry_the_budget_cannot_take_is_not_sent(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    llm.reply_hang().reply_text("never asked for")
    settings = settings_for(tmp_path, database_url, llm, llm_max_retries=3, llm_timeout_seconds=0.3)
    # gpt-4.1 at $8 per million output tokens: 1000 tokens may cost $0.008; the budget takes one such call.
    job_id = await new_job(store, budget_usd=0.012)
    client = client_for(store, settings, job_id)

    with pytest.raises(LimitReached, match="budget limit reached"):
        await client.chat(role="coder", messages=SYSTEM, max_tokens=1000)

    assert len(llm.requests) == 1 and llm.remaining == 1
    assert (await store.view(job_id)).requests == 1
    await client.aclose()


async def test_a_cut_connection_is_billed_at_the_worst_case_and_retried(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    llm.reply_drop().reply_text("second time lucky")
    settings = settings_for(tmp_path, database_url, llm, llm_max_retries=1)
    job_id = await new_job(store)
    client = client_for(store, settings, job_id)

    assert (await client.chat(role="coder", messages=SYSTEM, max_tokens=100)).content == "second time lucky"

    costs = (await store.view(job_id)).costs
    assert [(c.outcome, c.billed_on) for c in costs] == [("connection lost", "worst case"), ("ok", "usage")]
    await client.aclose()


async def test_negative_usage_is_billed_at_the_worst_case_and_never_lowers_the_cost(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    """Regression: a negative usage made a job's cost −$1,792 after $208 of calls; the guard allowed more."""
    llm.reply_text("a", tokens=(20, 50))
    llm.reply_text("b", usage={"prompt_tokens": -900_000_000, "completion_tokens": 10, "total_tokens": 0})
    llm.reply_text("c", usage=None)
    llm.reply_text("d", usage={"prompt_tokens": 10, "completion_tokens": 10**9, "total_tokens": 10**9})
    settings = settings_for(tmp_path, database_url, llm)
    job_id = await new_job(store)
    client = client_for(store, settings, job_id)
    totals = []

    for _ in range(4):
        await client.chat(role="coder", messages=SYSTEM, max_tokens=100)
        totals.append((await store.view(job_id)).cost_usd)

    costs = (await store.view(job_id)).costs
    assert totals == sorted(totals) and totals[0] > 0
    assert [c.billed_on for c in costs] == ["usage", "worst case", "worst case", "worst case"]
    assert "negative" in (costs[1].note or "") and "no usage" in (costs[2].note or "")
    assert "over the 100 allowed" in (costs[3].note or "")
    assert all(c.usd == c.checked_usd for c in costs[1:])
    assert all(c.usd >= 0 and c.tokens_in >= 0 and c.tokens_out >= 0 for c in costs)
    await client.aclose()


async def test_a_call_that_cost_more_than_checked_is_seen_by_the_next_check(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    # The prompt has ~3,000 bytes, so up to ~3,000 tokens is a usage a provider could report; the estimate
    # is far lower, so this call is billed more than its check, and the next check must see it.
    messages = [{"role": "user", "content": "x " * 1500}]
    llm.reply_text("expensive", usage={"prompt_tokens": 3000, "completion_tokens": 100, "total_tokens": 3100})
    llm.reply_text("never sent")
    settings = settings_for(tmp_path, database_url, llm)
    job_id = await new_job(store, budget_usd=0.009)
    client = client_for(store, settings, job_id)

    await client.chat(role="coder", messages=messages, max_tokens=100)
    (cost,) = (await store.view(job_id)).costs
    assert cost.billed_on == "usage" and cost.checked_usd is not None and cost.usd > cost.checked_usd
    assert cost.over_checked

    with pytest.raises(LimitReached, match="budget limit reached"):
        await client.chat(role="coder", messages=messages, max_tokens=100)
    assert llm.remaining == 1
    await client.aclose()


async def test_cached_and_reasoning_tokens_are_recorded_and_priced(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    llm.reasoning_models.add("gpt-5")
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 80,
        "total_tokens": 180,
        "prompt_tokens_details": {"cached_tokens": 60},
        "completion_tokens_details": {"reasoning_tokens": 50},
    }
    llm.reply_text("ok", usage=usage)
    settings = settings_for(tmp_path, database_url, llm, model_coder="gpt-5")
    job_id = await new_job(store)
    client = client_for(store, settings, job_id)

    await client.chat(role="coder", messages=SYSTEM, max_tokens=200)

    view = await store.view(job_id)
    (cost,) = view.costs
    assert (cost.tokens_in, cost.tokens_cached, cost.tokens_out, cost.tokens_reasoning) == (100, 60, 80, 50)
    # gpt-5: $1.25 input, $0.125 cached input, $10 output (reasoning included) per million.
    assert cost.usd == pytest.approx((40 * 1.25 + 60 * 0.125 + 80 * 10) / 1e6)
    llm_call = [e for e in view.events if e.type == "llm_call"][-1].data
    assert llm_call["tokens_cached"] == 60 and llm_call["tokens_reasoning"] == 50
    await client.aclose()


async def test_a_refusal_raises_with_the_models_words_and_is_recorded(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    llm.reply_refusal("I can't help with writing malware.")
    settings = settings_for(tmp_path, database_url, llm)
    job_id = await new_job(store)
    client = client_for(store, settings, job_id)

    with pytest.raises(ModelRefused) as caught:
        await client.chat(role="coder", messages=SYSTEM, max_tokens=100)

    assert caught.value.refusal == "I can't help with writing malware."
    assert caught.value.reason == "the coder model gpt-4.1 refused: “I can't help with writing malware.”"
    view = await store.view(job_id)
    assert [c.outcome for c in view.costs] == ["refused"] and view.costs[0].billed_on == "usage"
    assert [e.data.get("refusal") for e in view.events if e.type == "llm_call"] == [
        "I can't help with writing malware."
    ]
    await client.aclose()


async def test_a_cancel_is_honoured_before_a_retry(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    llm.reply_status(503).reply_text("never asked for")
    settings = settings_for(tmp_path, database_url, llm, llm_max_retries=2)
    job_id = await new_job(store)
    client = client_for(store, settings, job_id)
    first = client.guard.check
    calls = 0

    async def check_then_cancel(**kwargs: object) -> float:
        nonlocal calls
        calls += 1
        if calls == 2:
            await store.request_cancel(job_id, by="test")
        return await first(**kwargs)  # type: ignore[arg-type]

    client.guard.check = check_then_cancel  # type: ignore[method-assign]
    with pytest.raises(JobCancelled):
        await client.chat(role="coder", messages=SYSTEM, max_tokens=100)
    assert len(llm.requests) == 1
    await client.aclose()


async def test_an_unreachable_endpoint_records_nothing_it_never_sent(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM
) -> None:
    settings = settings_for(tmp_path, database_url, llm, openai_base_url="http://127.0.0.1:9/v1")
    job_id = await new_job(store)
    client = client_for(store, settings, job_id)

    with pytest.raises(PermanentFailure, match=r"unreachable .*check OPENAI_BASE_URL"):
        await client.chat(role="coder", messages=SYSTEM, max_tokens=100)

    view = await store.view(job_id)
    assert view.costs == [] and view.requests == 0
    await client.aclose()
