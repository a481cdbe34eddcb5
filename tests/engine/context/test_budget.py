from pathlib import Path

import pytest

from engine.context import ContextEngine
from engine.context.budget import Candidate, compact, fit
from engine.llm.tokens import count_tokens

from .conftest import make_repo

LONG_FUNCTION = "\n".join(
    ["def process_batch(items):"]
    + [f"    step_{i} = transform(items, {i})  # ordinary bookkeeping" for i in range(200)]
    + ["    checksum = verify_signature(items)  # the interesting line"]
    + [f"    tail_{i} = cleanup({i})" for i in range(100)]
)


def test_compaction_keeps_the_relevant_span_and_marks_gaps() -> None:
    short = compact(LONG_FUNCTION, {"verify", "signature"}, max_tokens=200)
    assert count_tokens(short) <= 200
    assert short.startswith("def process_batch(items):")
    assert "verify_signature(items)" in short
    assert "step_198" in short and "tail_2" in short  # the lines around it
    assert "⋮ (" in short and "step_50 " not in short


def test_compaction_without_matches_keeps_the_head() -> None:
    short = compact(LONG_FUNCTION, {"nothing"}, max_tokens=80)
    assert short.startswith("def process_batch") and count_tokens(short) <= 80


def test_fit_compacts_a_candidate_that_does_not_fit_instead_of_dropping_it() -> None:
    big = Candidate(source="code", title="batch.py", text=LONG_FUNCTION, score=2.0)
    fitted = fit([big], {"verify", "signature"}, limit=400)
    assert fitted.tokens <= 400
    assert "verify_signature" in fitted.text
    assert fitted.clipped_tokens > 0 and fitted.chosen[0]["compacted"] is True


def test_fit_takes_the_best_scores_first() -> None:
    low = Candidate(source="code", title="low", text="low relevance " * 50, score=0.5)
    high = Candidate(source="memory", title="high", text="important decision", score=10.0)
    fitted = fit([low, high], set(), limit=60)
    assert [c["title"] for c in fitted.chosen] == ["high"]
    assert fitted.dropped[0]["title"] == "low"


@pytest.mark.parametrize("budget", [0, 1, 50, 137, 400, 1000, 2500, 8000])
async def test_pack_never_exceeds_its_budget(tmp_path: Path, budget: int) -> None:
    files = {f"pkg/mod_{i}.py": LONG_FUNCTION.replace("process_batch", f"process_{i}") for i in range(8)}
    repo = make_repo(tmp_path / "repo", files)
    extra = [("earlier diff", "+ verify_signature(items)\n" * 300), ("issue comment", "é漢字 " * 500)]
    pack = await ContextEngine(tmp_path / "cache").build(
        repo, "acme/big", "verify_signature fails in process_3", budget, extra=extra
    )
    assert pack.tokens <= budget
    assert count_tokens(pack.text) == pack.tokens
    assert pack.diagnostics["tokens"] == pack.tokens


async def test_output_reserve_is_left_free(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": LONG_FUNCTION})
    engine = ContextEngine(tmp_path / "cache", output_reserve_tokens=500)
    pack = await engine.build(repo, "acme/a", "verify_signature", budget_tokens=2000)
    assert pack.diagnostics["output_reserve_tokens"] == 500
    assert 0 < pack.tokens <= 1500


async def test_negative_budget_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    with pytest.raises(ValueError, match="budget_tokens"):
        await ContextEngine(tmp_path / "cache").build(repo, "acme/a", "x", budget_tokens=-1)


async def test_missing_repository_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        await ContextEngine(tmp_path / "cache").build(tmp_path / "nope", "acme/a", "x", budget_tokens=100)
