"""The token estimate errs high on every kind of text, by about the same share on ordinary code and prose.

tests/fixtures/token-counts/counts.json holds texts with their real counts in OpenAI's o200k_base and
cl100k_base encodings, made once with the npm package gpt-tokenizer (`bench/token_estimate.py --fixtures`,
which says how), so that these tests need neither Node.js nor the network.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.llm.tokens import _SCALE, _count_text, count_tokens

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
COUNTED = json.loads((FIXTURES / "token-counts" / "counts.json").read_text())["texts"]
ORDINARY = [
    "python",
    "go",
    "rust",
    "java",
    "typescript",
    "json",
    "nested json",
    "yaml",
    "markdown",
    "diff",
    "commit messages",
]
LINES = st.lists(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80), max_size=60
)


def real(name: str) -> int:
    return max(COUNTED[name]["o200k_base"], COUNTED[name]["cl100k_base"])


@pytest.mark.parametrize("name", sorted(COUNTED))
def test_never_below_the_real_count_of_either_encoding(name: str) -> None:
    """Code, data, prose in eleven scripts, emoji, base64, hashes, mashed keys: budget guards rely on it."""
    assert count_tokens(COUNTED[name]["text"]) >= 1.02 * real(name)


def test_ordinary_texts_are_overcounted_by_about_the_same_share() -> None:
    """So a ratio learned from a model's reports (engine.store.calibration) fits the next prompt too."""
    ratios = [real(name) / count_tokens(COUNTED[name]["text"]) for name in ORDINARY]
    assert max(ratios) / min(ratios) <= 1.2
    assert min(ratios) >= 0.7  # and by not much: a pack fitted to the raw estimate fills most of its budget


def test_a_common_word_costs_less_than_random_letters_of_its_length() -> None:
    common = " information configuration" * 20
    random = " xqzjvkwpbfmg kqzvjxwfpbgmhdlr" * 20
    assert count_tokens(common) < count_tokens(random) / 2


@settings(max_examples=300, deadline=None)
@given(lines=LINES, newline=st.sampled_from(["\n", "\r\n", "\n\n"]))
def test_line_by_line_errs_high_never_low(lines: list[str], newline: str) -> None:
    """A long text is counted line by line (cached): never fewer tokens than the text at once."""
    text = newline.join(lines)
    assert count_tokens(text) >= math.ceil(_count_text(text) * _SCALE - 1e-6)  # float sums in another order


def test_source_code_costs_the_same_counted_whole_or_by_line() -> None:
    """Blank lines join the newline before them, as BPE's pieces do: "\\n\\n\\n" is one token."""
    source = "def add(a, b):\n    return a + b\n\n\nclass Calc:\n    total = 0  # running\n" * 20
    assert count_tokens(source) == pytest.approx(_count_text(source) * _SCALE, abs=1)
    assert count_tokens(source) == count_tokens(source.replace("\n\n\n", "\n"))


# Texts anyone can put in a prompt (test output, an issue) with their real counts in o200k_base and
# cl100k_base (gpt-tokenizer, as tests/fixtures/token-counts): long runs BPE has no merges for.
HOSTILE = {
    "spaces": (" " * 100_000, 782, 782),
    "tabs": ("\t" * 100_000, 6_250, 6_250),
    "newlines": ("\n" * 100_000, 6_250, 3_125),
    "mixed punctuation": ("!?" * 50_000, 25_002, 50_001),
    "dots": ("." * 100_000, 1_563, 1_563),
    "one letter": ("a" * 100_000, 12_500, 12_500),
    "humps": ("aB" * 50_000, 50_001, 50_001),
    "base64-like": ("Ab1+" * 25_000, 75_000, 75_000),
    "digits": ("1" * 100_000, 33_334, 33_334),
    "non-ascii": ("é" * 100_000, 100_000, 100_000),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_text_is_counted_in_one_pass_and_never_low(kind: str) -> None:
    """Every prompt is counted before it is sent, and the dollar budget trusts the count."""
    text, o200k, cl100k = HOSTILE[kind]
    assert count_tokens(text) >= max(o200k, cl100k)
