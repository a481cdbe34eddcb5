"""Context for prompts: EMBEDDING_MODEL switches embeddings on beside BM25; unset, retrieval is BM25 alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.agents.briefing import gather_context
from engine.store.calibration import MIN_SAMPLES
from engine.store.jobs import JobStore
from tests.conftest import make_settings
from tests.engine.conftest import make_project
from tests.engine.llm.conftest import client_for, new_job, settings_for
from tests.support.fake_llm import FakeLLM


async def test_embedding_model_turns_embeddings_on_through_the_jobs_llm_client(
    tmp_path: Path, database_url: str, store: JobStore
) -> None:
    project = make_project(tmp_path / "calc")
    async with FakeLLM() as llm:
        settings = make_settings(
            tmp_path,
            database_url=database_url,
            openai_base_url=llm.base_url,
            openai_api_key="sk-test",
            embedding_model="text-embedding-3-small",
        )
        job_id = await new_job(store)
        client = client_for(store, settings, job_id)

        context = await gather_context(
            settings=settings,
            store=store,
            worktree=project,
            repo="acme/calc",
            query="add",
            job_id=job_id,
            llm=client,
        )
        await client.aclose()

    assert str(context.diagnostics["embeddings"]).startswith("on")
    assert "calc.py" in context.text
    assert {c.role for c in (await store.view(job_id)).costs} == {"embeddings"}


async def test_without_an_embedding_model_retrieval_is_bm25_alone(
    tmp_path: Path, database_url: str, store: JobStore
) -> None:
    project = make_project(tmp_path / "calc")
    settings = make_settings(tmp_path, database_url=database_url, openai_api_key="sk-test")

    context = await gather_context(
        settings=settings, store=store, worktree=project, repo="acme/calc", query="add", job_id="j1"
    )

    assert context.diagnostics["embeddings"] == "off"
    assert "calc.py" in context.text


def invoice_project(root: Path) -> Path:
    """Forty modules about invoices: far more relevant code than a small budget holds."""
    extra = {
        f"billing/invoice_{i}.py": "".join(
            f"def invoice_total_{i}_{n}(lines, tax_rate):\n"
            f"    subtotal = sum(line.amount * line.quantity for line in lines)\n"
            f"    return round(subtotal * (1 + tax_rate), 2)  # invoice {i}.{n}\n\n\n"
            for n in range(12)
        )
        for i in range(40)
    }
    return make_project(root, extra=extra)


async def test_the_pack_fills_the_readers_budget_as_its_reported_usage_calibrates_it(
    tmp_path: Path, database_url: str, store: JobStore
) -> None:
    """The estimate errs high; once the model's provider has reported prompt tokens, a pack is fitted in
    the model's own tokens: larger than the raw estimate allows, within the budget by the reports."""
    project = invoice_project(tmp_path / "billing")
    async with FakeLLM() as llm:  # it reports a request's characters / 4 as its prompt tokens
        settings = settings_for(tmp_path, database_url, llm, context_budget_tokens=3000)
        job_id = await new_job(store)
        client = client_for(store, settings, job_id)
        prompt = (project / "billing/invoice_1.py").read_text()
        for _ in range(MIN_SAMPLES):
            llm.reply_text("ok")
            await client.chat(role="coder", messages=[{"role": "user", "content": prompt}], max_tokens=50)
        await client.aclose()
    model = settings.model_coder
    calibration = await store.token_calibration(model)
    assert calibration.samples == MIN_SAMPLES and calibration.ratio < 0.9

    def pack(model: str | None) -> Any:
        return gather_context(
            settings=settings,
            store=store,
            worktree=project,
            repo="acme/billing",
            query="invoice total tax rate",
            job_id=job_id,
            model=model,
        )

    raw, calibrated = await pack(None), await pack(model)

    assert calibrated.diagnostics["calibration"] == calibration.describe()
    assert raw.tokens <= 3000 < calibrated.tokens <= calibration.limit(3000)
    assert calibrated.diagnostics["model_tokens_expected"] <= 3000
