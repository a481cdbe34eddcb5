"""Property: whatever the endpoint answers (any usage, price, timeout, cut connection, error or HTML page),
every request that leaves is in the ledger, no entry is negative, and the total billed never exceeds the
budget by more than the worst case of one request."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import httpx2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai import AsyncOpenAI
from sqlalchemy import select

from engine import events
from engine.errors import JobStopped, LimitReached, TransientFailure
from engine.llm import wire
from engine.llm.budget import BudgetGuard
from engine.llm.client import LLMClient
from engine.llm.params import ModelParams
from engine.llm.pricing import ModelEntry, Price, PriceBook
from engine.llm.tokens import count_message_tokens
from engine.llm.usage import prompt_bound
from engine.store.db import SqliteWriter, make_engine, make_sessionmaker
from engine.store.jobs import JobLimits, JobRequest, JobStore
from engine.store.models import CostEntry
from tests.conftest import make_settings

COUNTS = st.one_of(
    st.integers(-(10**12), -1), st.integers(0, 5_000), st.integers(5_000, 10**12), st.none(), st.just(1.5)
)
OUTCOMES = st.one_of(
    st.tuples(st.just("usage"), COUNTS, COUNTS, COUNTS, COUNTS),
    st.tuples(st.sampled_from(["no usage", "timeout", "drop", "html", "refusal", "malformed"])),
    st.tuples(st.just("status"), st.sampled_from([400, 429, 500, 502, 503, 504])),
)


@dataclass
class Endpoint:
    """An OpenAI-compatible endpoint inside the process, answering from a script then sanely."""

    script: list[tuple[Any, ...]]
    seen: int = 0
    answered: list[tuple[Any, ...]] = field(default_factory=list)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.seen += 1
        json.loads(request.content)
        step = self.script.pop(0) if self.script else ("usage", 10, 10, None, None)
        self.answered.append(step)
        kind = step[0]
        if kind == "timeout":
            raise httpx2.ReadTimeout("no answer", request=request)
        if kind == "drop":
            raise httpx2.RemoteProtocolError("server disconnected", request=request)
        if kind == "html":
            return httpx2.Response(200, text="<html>proxy</html>", headers={"content-type": "text/html"})
        if kind == "status":
            return httpx2.Response(step[1], json={"error": {"message": f"status {step[1]}"}})
        if kind == "malformed":
            return httpx2.Response(200, json={"object": "chat.completion"})
        message: dict[str, Any] = {"role": "assistant", "content": "ok"}
        if kind == "refusal":
            message = {"role": "assistant", "content": None, "refusal": "no"}
        completion: dict[str, Any] = {"choices": [{"index": 0, "message": message}]}
        if kind == "usage":
            prompt, out, cached, reasoning = step[1:]
            completion["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": out,
                "prompt_tokens_details": {"cached_tokens": cached},
                "completion_tokens_details": {"reasoning_tokens": reasoning},
            }
        return httpx2.Response(200, json=completion)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    script=st.lists(OUTCOMES, max_size=25),
    price=st.tuples(
        st.floats(0, 100), st.floats(0, 100), st.none() | st.floats(0, 100), st.none() | st.floats(0, 100)
    ),
    budget=st.floats(0.0001, 2.0),
    max_out=st.integers(1, 20_000),
    prompt_chars=st.integers(0, 6_000),
    retries=st.integers(0, 3),
)
def test_the_total_billed_never_exceeds_the_budget_by_more_than_one_requests_worst_case(
    database_url: str,
    script: list[tuple[Any, ...]],
    price: tuple[float, float, float | None, float | None],
    budget: float,
    max_out: int,
    prompt_chars: int,
    retries: int,
) -> None:
    endpoint = Endpoint(list(script))
    the_price = Price(*price)
    messages = [{"role": "user", "content": ("word " * prompt_chars)[:prompt_chars]}]
    with mock.patch.object(wire, "BACKOFF_BASE_SECONDS", 0.0):
        costs, job_cost = asyncio.run(
            _run(database_url, endpoint, the_price, budget, max_out, messages, retries)
        )

    assert len(costs) == endpoint.seen  # every request that left is in the ledger
    assert all(c.usd >= 0 and c.tokens_in >= 0 and c.tokens_out >= 0 for c in costs)
    total = sum(c.usd for c in costs)
    assert abs(total - job_cost) <= 1e-9 * max(1.0, total)
    # One request's worst case: the most a sane usage of it can be billed (or the check, when none came).
    one_request = the_price.worst_case(prompt_bound(messages, []), max_out)
    assert all(c.usd <= max(one_request, c.checked_usd or 0) + 1e-12 for c in costs)
    assert total <= budget + one_request + 1e-9
    # Sharper: the guard held before each request, so only the last can have gone past the budget, by no
    # more than it cost beyond what was checked for it.
    over = max((c.usd - (c.checked_usd or 0) for c in costs), default=0.0)
    assert total <= budget + max(0.0, over) + 1e-9
    estimate = count_message_tokens(messages)
    assert all(c.checked_usd == the_price.worst_case(estimate, max_out) for c in costs)
    # What each request is billed on: a request the model may have run without a sane usage to show for
    # it is billed at its worst case; one the endpoint refused outright costs nothing.
    for cost, step in zip(sorted(costs, key=lambda c: c.id), endpoint.answered, strict=True):
        if step[0] == "usage":
            assert cost.billed_on in ("usage", "worst case")
        elif step[0] == "status" and step[1] not in (502, 504):
            assert cost.billed_on == "not billed" and cost.usd == 0
        elif step[0] == "refusal":
            assert cost.billed_on == "worst case" and cost.outcome == "refused"  # it reported no usage
        else:
            assert cost.billed_on == "worst case" and cost.usd == cost.checked_usd, (step, cost.outcome)


async def _run(
    url: str,
    endpoint: Endpoint,
    price: Price,
    budget: float,
    max_out: int,
    messages: list[dict[str, Any]],
    retries: int,
) -> tuple[list[CostEntry], float]:
    engine = make_engine(url)
    store = JobStore(make_sessionmaker(engine), JobLimits(5.0, 10_000, 60), writer=SqliteWriter.for_url(url))
    settings = make_settings(
        Path("/nonexistent"),
        database_url=url,
        llm_max_retries=retries,
        openai_base_url="http://llm.test/v1",
        openai_api_key="sk-property",
    )
    job, _ = await store.submit(
        JobRequest(
            dedupe_key=f"prop:{id(endpoint)}:{asyncio.get_running_loop().time()}",
            trigger="cli",
            repo="acme/p",
            title="t",
            task="t",
            requester="r",
            budget_usd=budget,
        )
    )
    openai_client = AsyncOpenAI(
        api_key="sk-property",
        base_url="http://llm.test/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(endpoint)),
    )

    async def record(entry: CostEntry, data: dict[str, Any]) -> None:
        await store.add_cost(entry, (events.LLM_CALL, data))

    client = LLMClient(
        settings=settings,
        job_id=job.id,
        repo="acme/p",
        guard=BudgetGuard(store, settings, job.id),
        record_cost=record,
        client=openai_client,
        prices=PriceBook({"gpt-4.1": ModelEntry(price, ModelParams())}, ["test"]),
    )
    try:
        # The pipeline (or the worker's retry of the job) asks again after a failure, until a limit stops it
        # or the script is spent.
        for _ in range(30):
            if not endpoint.script and endpoint.seen >= 3:
                break
            try:
                await client.chat(role="coder", messages=messages, max_tokens=max_out)
            except LimitReached:
                break
            except (JobStopped, TransientFailure):
                continue
        async with store.sessions() as session:
            rows = (await session.execute(select(CostEntry).where(CostEntry.job_id == job.id))).scalars()
            costs = list(rows)
        view = await store.view(job.id, with_events=False)
        return costs, view.cost_usd
    finally:
        await client.aclose()
        await store.aclose()
        await engine.dispose()
