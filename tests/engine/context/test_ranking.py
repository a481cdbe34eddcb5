from pathlib import Path

import pytest

from engine.context import ContextEngine
from engine.context.query import MAX_QUERY_TERMS
from engine.context.rank import parse_query

from .conftest import make_repo

# Many files that talk about payments in prose, so plain BM25 alone would not single out the one meant.
NOISE = {
    f"notes/payment_note_{i}.py": (
        f'"""payment refund charge card flow {i}"""\nPAYMENT_FLOW_{i} = "payment refund"\n'
    )
    for i in range(12)
}
TARGETS = {
    "shop/checkout/handlers.py": "def finalize_order(order):\n    return order.close()\n",
    "shop/legacy/util.py": "def parse_amount(text):\n    return int(text)\n\n\ndef misc():\n    pass\n",
    "shop/ledger.py": "\n".join(f"def helper_{i}():\n    return {i}\n" for i in range(60))
    + "\ndef reconcile_ledger(entries):\n    raise ValueError('unbalanced')\n",
}


def _repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {**NOISE, **TARGETS})


async def _ranked(tmp_path: Path, query: str) -> list[str]:
    files = await ContextEngine(tmp_path / "cache").rank_files(_repo(tmp_path), "acme/shop", query)
    return [f.path for f in files]


def test_query_hints_find_paths_frames_and_identifiers() -> None:
    hints = parse_query(
        "Fix `parse_amount` in shop/legacy/util.py; see engine.jobs and\n"
        '  File "/srv/app/shop/ledger.py", line 122, in reconcile_ledger\n e.g. InvoiceBuilder.total()'
    )
    assert {"shop/legacy/util.py", "engine/jobs.py"} <= hints.paths
    assert ("/srv/app/shop/ledger.py", 122) in hints.frames
    assert {"parse_amount", "reconcile_ledger", "invoicebuilder", "total"} <= hints.identifiers
    assert "e.g" not in hints.paths


def test_a_long_issue_keeps_its_titles_words_among_the_query_terms() -> None:
    """A log or a traceback repeats dozens of words more often than the title names the subject once."""
    log = "\n".join(f"worker_{i} retried connection_{i} after timeout_{i}" for i in range(40))
    hints = parse_query("Ledger reconciliation drops refunds\n\n" + log + "\n" + log)
    assert {"ledger", "reconciliation", "drops", "refunds"} <= set(hints.terms)
    assert len(hints.terms) == MAX_QUERY_TERMS and {"worker", "retried"} <= set(hints.terms)


async def test_a_link_to_a_file_on_github_ranks_that_file_first(tmp_path: Path) -> None:
    query = (
        "Amounts come out wrong since the last release, see "
        "https://github.com/acme/shop/blob/5f2c9e1/shop/legacy/util.py#L2-L3."
    )
    assert ("shop/legacy/util.py", 2) in parse_query(query).frames
    assert (await _ranked(tmp_path, query))[0] == "shop/legacy/util.py"


def test_a_path_with_its_line_is_a_frame_wherever_it_stands() -> None:
    hints = parse_query("fails at (src/app/views.py:42), C:\\work\\app\\models.py:7 and x=lib/db.rb:9")
    assert {("src/app/views.py", 42), ("work/app/models.py", 7), ("lib/db.rb", 9)} <= set(hints.frames)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("token", ["a", "a.", "a/", "a_", "aB", "github.com/o/r/blob/x/ "])
def test_a_hostile_issue_is_read_in_one_pass(token: str) -> None:
    """Anyone can write an issue (or the CI log a fix round quotes): one 300,000-character word took the
    path-and-line pattern minutes, scanning to the word's end again from every position inside it."""
    hints = parse_query(token * (300_000 // len(token)))
    assert hints.frames == []


async def test_path_named_in_query_ranks_that_file_first(tmp_path: Path) -> None:
    ranked = await _ranked(tmp_path, "the payment refund flow breaks; look at shop/checkout/handlers.py")
    assert ranked[0] == "shop/checkout/handlers.py"


async def test_identifier_named_in_query_ranks_its_definition_first(tmp_path: Path) -> None:
    ranked = await _ranked(tmp_path, "payment refund totals are wrong after parse_amount() rounds")
    assert ranked[0] == "shop/legacy/util.py"


async def test_stack_trace_frame_ranks_the_file_and_the_chunk_holding_the_line(tmp_path: Path) -> None:
    query = (
        "payment refund crashes:\nTraceback (most recent call last):\n"
        '  File "/home/ci/build/shop/ledger.py", line 122, in <module>\nValueError: unbalanced'
    )
    engine = ContextEngine(tmp_path / "cache")
    repo = _repo(tmp_path)
    assert (await engine.rank_files(repo, "acme/shop", query))[0].path == "shop/ledger.py"
    pack = await engine.build(repo, "acme/shop", query, budget_tokens=2000)
    first = pack.diagnostics["chosen"][0]
    assert first["title"].startswith("shop/ledger.py") and "frame line 122" in first["reasons"]
    assert "raise ValueError('unbalanced')" in pack.text


async def test_without_hints_lexical_relevance_decides(tmp_path: Path) -> None:
    ranked = await _ranked(tmp_path, "reconcile the ledger entries")
    assert ranked[0] == "shop/ledger.py"


async def test_chunks_below_the_minimum_score_are_left_out(tmp_path: Path) -> None:
    engine = ContextEngine(tmp_path / "cache", min_score=100.0)
    pack = await engine.build(_repo(tmp_path), "acme/shop", "reconcile the ledger", budget_tokens=4000)
    assert {c["source"] for c in pack.diagnostics["chosen"]} == {"repo-map"}


def test_a_word_before_a_parenthesis_in_prose_is_not_an_identifier() -> None:
    """Regression: a space before `(` was allowed, so "the output (which is wrong)" named `output`."""
    hints = parse_query("Fix merge of headers (#2656): the output (which is wrong) calls render_view()")
    assert {"merge", "headers", "output"}.isdisjoint(hints.identifiers)
    assert "render_view" in hints.identifiers
