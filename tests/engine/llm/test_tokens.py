"""The token estimate counts long texts line by line (cached): never fewer tokens than the text at once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.llm.tokens import _count_pieces, count_tokens

LINES = st.lists(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(lines=LINES, newline=st.sampled_from(["\n", "\r\n", "\n\n"]))
def test_line_by_line_errs_high_never_low(lines: list[str], newline: str) -> None:
    text = newline.join(lines)
    assert count_tokens(text) >= _count_pieces(text)


def test_source_code_costs_the_same_counted_whole_or_by_line() -> None:
    source = "def add(a, b):\n    return a + b\n\n\nclass Calc:\n    total = 0  # running\n" * 20
    assert count_tokens(source) == _count_pieces(source) + source.count("\n\n\n") * 2
