"""Traces: a job run end to end exports one OTLP trace (to a collector on 127.0.0.1) with the GenAI spans."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import tracing
from engine.store.jobs import JobRequest, JobStore
from engine.store.models import JobState
from engine.workspace.local_host import LocalCodeHost
from tests.engine.conftest import llm_settings, plan, run, submit
from tests.engine.llm.conftest import client_for, new_job
from tests.support.fake_llm import FakeLLM
from tests.support.otlp_collector import Collector, attrs

WRONG = "def subtract(a, b):\n    return a + b\n"
TEST = "from sub import subtract\n\n\ndef test_subtract():\n    assert subtract(5, 3) == 2\n"


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Collector]:
    server = Collector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.url)
    assert tracing.start()
    try:
        yield server
    finally:
        tracing.shutdown()
        server.close()


def script_job(llm: FakeLLM) -> None:
    llm.reply_json(plan("Add subtract with a test"))
    llm.reply_tool_calls(
        ("create_file", {"path": "sub.py", "content": WRONG}),
        ("create_file", {"path": "tests/test_sub.py", "content": TEST}),
    )
    llm.reply_text("Done.")
    llm.reply_tool_calls(("edit_file", {"path": "sub.py", "old_text": "a + b", "new_text": "a - b"}))
    llm.reply_text("Fixed the sign.")


async def test_a_job_is_one_trace_with_genai_spans_per_request_tool_spans_and_no_prompt_text(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, project: Path, collector: Collector
) -> None:
    settings = llm_settings(tmp_path, database_url, llm)
    script_job(llm)
    job_id = await submit(store, repo=f"local:{project}")
    assert await run(job_id, settings, store, LocalCodeHost(project)) is JobState.SUCCEEDED
    tracing.force_flush()

    spans = collector.spans()
    assert collector.paths and set(collector.paths) == {"/v1/traces"}
    assert len({s.trace_id for s in spans}) == 1, "one trace for the job"
    by_name: dict[str, list[Any]] = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    (trigger,) = by_name["autodev.trigger"]
    (job,) = by_name["autodev.job"]
    assert attrs(trigger)["autodev.job_id"] == job_id and job.parent_span_id == trigger.span_id
    job_attrs = attrs(job)
    assert job_attrs["autodev.job_id"] == job_id and job_attrs["autodev.repo"] == f"local:{project}"
    assert job_attrs["autodev.trigger"] == "test" and job_attrs["autodev.job.state"] == "succeeded"
    assert len(by_name["autodev.plan"]) == 1 and len(by_name["autodev.step"]) == 1
    assert len(by_name["autodev.tests"]) == 2 and len(by_name["autodev.publish"]) == 1
    assert [attrs(s)["autodev.tests.passed"] for s in by_name["autodev.tests"]] == [False, True]

    # A GenAI client span per LLM request, with the ledger's model, tokens and dollars.
    view = await store.view(job_id)
    chats = sorted((s for s in spans if s.name.startswith("chat ")), key=lambda s: s.start_time_unix_nano)
    assert len(chats) == len(llm.requests) == len(view.costs) == 5
    for span, cost in zip(chats, sorted(view.costs, key=lambda c: c.created_at), strict=True):
        a = attrs(span)
        assert span.name == f"chat {cost.model}" and span.kind == span.SPAN_KIND_CLIENT
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.system"] == "openai"
        assert a["gen_ai.request.model"] == cost.model and a["gen_ai.response.model"]
        assert a["gen_ai.usage.input_tokens"] == cost.tokens_in > 0
        assert a["gen_ai.usage.output_tokens"] == cost.tokens_out > 0
        assert a["autodev.cost.usd"] == pytest.approx(cost.usd) and a["autodev.cost.usd"] > 0
        assert a["autodev.cost.checked_usd"] == pytest.approx(cost.checked_usd)
        assert a["autodev.role"] == cost.role and a["autodev.outcome"] == "ok"
    assert [attrs(s)["autodev.role"] for s in chats] == ["planner"] + ["coder"] * 4

    # A span per tool call, under the step.
    tools = [s for s in spans if s.name.startswith("execute_tool ")]
    assert sorted(s.name for s in tools) == [
        "execute_tool create_file",
        "execute_tool create_file",
        "execute_tool edit_file",
    ]
    assert all(attrs(s)["gen_ai.tool.name"] == s.name.split()[1] for s in tools)
    steps = {s.span_id for s in by_name["autodev.step"]}
    assert all(s.parent_span_id in steps for s in tools)

    # Nothing of the prompts, the files or the key in any attribute.
    values = " ".join(str(v) for s in spans for v in attrs(s).values())
    for text in ("subtract", "Add subtract(a, b)", "a - b", "sk-test-key", "Do the work", "Fixed the sign"):
        assert text not in values


async def test_without_the_endpoint_nothing_is_exported_and_the_job_runs(
    tmp_path: Path,
    database_url: str,
    store: JobStore,
    llm: FakeLLM,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = Collector()
    try:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
        assert not tracing.start() and not tracing.enabled()
        script_job(llm)
        settings = llm_settings(tmp_path, database_url, llm)
        job_id = await submit(store, repo=f"local:{project}")
        assert await run(job_id, settings, store, LocalCodeHost(project)) is JobState.SUCCEEDED
        tracing.force_flush()
        tracing.shutdown()
        assert server.requests == []
        assert "traceparent" not in (await store.get(job_id)).origin
    finally:
        server.close()


def test_without_the_sdk_the_endpoint_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # import fails as when not installed
    with caplog.at_level(logging.WARNING, logger="engine.tracing"):
        assert not tracing.start({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert not tracing.enabled() and "autodev[otel]" in caplog.text
    with tracing.span("x", {"a": 1}) as span:  # every call is a no-op
        span.set({"b": 2})
        span.error("e")
    assert tracing.traceparent() is None


async def test_a_failed_request_and_a_failed_job_are_error_spans_with_their_outcome(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, project: Path, collector: Collector
) -> None:
    settings = llm_settings(tmp_path, database_url, llm)
    llm.reply_status(429, retry_after=0)  # retried: an attempt of its own
    llm.reply_status(401)  # the key is refused: the job fails
    job_id = await submit(store, repo=f"local:{project}")
    assert await run(job_id, settings, store, LocalCodeHost(project)) is JobState.FAILED
    tracing.force_flush()

    spans = collector.spans()
    chats = sorted((s for s in spans if s.name.startswith("chat ")), key=lambda s: s.start_time_unix_nano)
    assert len(chats) == 2
    assert [attrs(s)["autodev.attempt"] for s in chats] == [1, 2]
    assert all(s.status.code == s.status.STATUS_CODE_ERROR for s in chats)
    assert all(attrs(s)["error.type"] == attrs(s)["autodev.outcome"] != "ok" for s in chats)
    (job,) = [s for s in spans if s.name == "autodev.job"]
    assert job.status.code == job.status.STATUS_CODE_ERROR and attrs(job)["autodev.job.state"] == "failed"
    (planning,) = [s for s in spans if s.name == "autodev.plan"]
    assert planning.status.code == planning.status.STATUS_CODE_ERROR and attrs(planning)["error.type"]
    assert all(not s.events for s in spans), "an exception's message is never recorded"
    assert "sk-test-key" not in str([attrs(s) for s in spans])


async def test_the_web_sides_group_commit_leaves_the_triggers_traceparent_on_each_new_job(
    store: JobStore, collector: Collector
) -> None:
    requests = [
        JobRequest(
            dedupe_key=f"t:{i}", trigger="issue_comment", repo="acme/calc", title="t", task="x", requester="r"
        )
        for i in range(2)
    ]
    answers = await store.submit_many(requests)
    tracing.force_flush()
    triggers = {attrs(s)["autodev.job_id"]: s for s in collector.spans() if s.name == "autodev.trigger"}
    for job_id, created in answers:
        assert created
        _, trace_id, span_id, _ = (await store.get(job_id)).origin["traceparent"].split("-")
        assert triggers[job_id].trace_id.hex() == trace_id and triggers[job_id].span_id.hex() == span_id
        assert attrs(triggers[job_id])["autodev.trigger"] == "issue_comment"


async def test_an_embeddings_request_is_an_embeddings_span_with_its_usage_and_cost(
    tmp_path: Path, database_url: str, store: JobStore, llm: FakeLLM, collector: Collector
) -> None:
    settings = llm_settings(tmp_path, database_url, llm, embedding_model="text-embedding-3-small")
    job_id = await new_job(store)
    client = client_for(store, settings, job_id)
    try:
        assert len(await client.embed(["def subtract(a, b): ...", "README"])) == 2
    finally:
        await client.aclose()
    tracing.force_flush()

    (span,) = [s for s in collector.spans() if s.name.startswith("embeddings ")]
    a = attrs(span)
    (cost,) = (await store.view(job_id)).costs
    assert span.name == "embeddings text-embedding-3-small" and a["gen_ai.operation.name"] == "embeddings"
    assert a["gen_ai.usage.input_tokens"] == cost.tokens_in > 0 and a["autodev.role"] == "embeddings"
    assert a["autodev.cost.usd"] == pytest.approx(cost.usd) and "subtract" not in str(a)
