"""Context for prompts: EMBEDDING_MODEL switches embeddings on beside BM25; unset, retrieval is BM25 alone."""

from __future__ import annotations

from pathlib import Path

from engine.agents.briefing import gather_context
from engine.store.jobs import JobStore
from tests.conftest import make_settings
from tests.engine.conftest import make_project
from tests.engine.llm.conftest import client_for, new_job
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
