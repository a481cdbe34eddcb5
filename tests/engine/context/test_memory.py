from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.context import ContextEngine
from engine.context.memory import MemoryLimits, MemoryStore
from engine.store.models import MemoryNote

from .conftest import make_repo


async def test_notes_of_this_job_come_first_and_other_jobs_notes_stay_visible(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = MemoryStore(sessions)
    await store.add(repo="acme/shop", job_id="job-1", kind="Decision", text="use Decimal for money")
    await store.add(repo="acme/shop", job_id="job-2", kind="todo", text="add a refund test")
    await store.add(repo="acme/other", job_id="job-2", kind="Link", text="https://example.com/spec")
    prompt = await store.for_prompt(repo="acme/shop", job_id="job-2")
    assert prompt.splitlines() == [
        "- [Todo] (this job) add a refund test",
        "- [Decision] (repository) use Decimal for money",
    ]


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("Opinion", "x", "unknown note kind"),
        ("Decision", "   ", "needs text"),
        ("Link", "x" * 3000, "at most"),
    ],
)
async def test_bad_notes_are_refused(
    sessions: async_sessionmaker[AsyncSession], kind: str, text: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await MemoryStore(sessions).add(repo="acme/shop", job_id=None, kind=kind, text=text)


async def test_oldest_notes_are_archived_once_over_80_percent_of_the_count(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = MemoryStore(sessions, MemoryLimits(max_notes=10, max_bytes=10_000))
    for i in range(12):
        await store.add(repo="acme/shop", job_id=None, kind="Glossary", text=f"term {i}")
    active = await store.active(repo="acme/shop")
    assert [n.text for n in active] == [f"term {i}" for i in range(4, 12)]  # 8 = 80% of 10
    async with sessions() as session:
        archived = (await session.scalars(select(MemoryNote.text).where(MemoryNote.archived))).all()
    assert sorted(archived) == sorted(f"term {i}" for i in range(4))


async def test_oldest_notes_are_archived_once_over_80_percent_of_the_bytes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = MemoryStore(sessions, MemoryLimits(max_notes=100, max_bytes=1000, max_note_bytes=300))
    for i in range(5):
        await store.add(repo="acme/shop", job_id=None, kind="Constraint", text=f"{i}" * 300)
    active = await store.active(repo="acme/shop")
    assert [n.text[0] for n in active] == ["3", "4"]  # 600 bytes ≤ 800; 900 would not be


async def test_memory_notes_reach_the_context_pack(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "def alpha():\n    return 1\n"})
    await MemoryStore(sessions).add(
        repo="acme/a", job_id="job-1", kind="Constraint", text="never touch alpha"
    )
    engine = ContextEngine(tmp_path / "cache", sessions=sessions)
    pack = await engine.build(repo, "acme/a", "change alpha", budget_tokens=2000, job_id="job-2")
    assert pack.diagnostics["chosen"][0]["source"] == "memory"
    assert "[Constraint] (repository) never touch alpha" in pack.text
