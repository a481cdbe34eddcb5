from pathlib import Path

from engine.context import ContextEngine
from engine.context.bm25 import Bm25
from engine.context.rank import Weights, parse_query, rank_files, word_variants

from .conftest import make_repo


def test_a_words_other_forms_are_those_the_code_uses() -> None:
    vocabulary = {"parse": 0, "parser": 1, "parsed": 2, "retry": 3, "retries": 4, "style": 5, "unrelated": 6}
    found = word_variants(["parsing", "retried", "styles", "style", "parser"], vocabulary)
    assert set(found) == {
        ("parsing", "parse"),
        ("parsing", "parsed"),
        ("retried", "retry"),
        ("retried", "retries"),
    }  # `parser` and `style` are query words already: not a variant of another


def test_short_words_and_words_with_digits_have_no_variants() -> None:
    assert word_variants(["map", "utf8s"], {"maps": 0, "mapped": 1, "utf8": 2}) == []


def test_a_group_of_one_term_scores_as_the_term_alone() -> None:
    model = Bm25([{"parse": 3}, {"parser": 1, "token": 2}, {"token": 1}])
    assert list(model.grouped_scores([[("parse", 1.0)], [("token", 1.0)]], [2.0, 1.0])) == list(
        model.scores(["parse", "token"], [2.0, 1.0])
    )


def test_a_groups_counts_add_up_before_saturation_and_its_idf_covers_every_form() -> None:
    docs = [{"parse": 3, "parser": 4}, {"parse": 4}, {"parser": 1}, *({"cart": n} for n in range(1, 6))]
    model = Bm25(docs, [5] * 8)
    scores = model.grouped_scores([[("parse", 1.0), ("parser", 0.5)]])
    assert scores[0] > scores[1] > scores[2] > 0  # counts 3 + 0.5·4, 4 and 0.5
    assert list(scores[3:]) == [0.0] * 5
    alone = model.grouped_scores([[("parser", 1.0)]])
    assert alone[2] > scores[2]  # a form at half weight counts half, and three documents make it commoner


async def test_an_issue_in_prose_finds_the_file_that_names_the_thing_in_another_form(tmp_path: Path) -> None:
    files = {
        "app/retry.py": "def retry(call, attempts):\n    for _ in range(attempts):\n"
        "        retry_once(call)\n\n\ndef retry_once(call):\n    return call()\n",
        "app/network.py": "def fetch(url):\n    # the request went out and failed\n    return url\n",
        **{f"app/mod_{i}.py": f"def helper_{i}():\n    return {i}\n" for i in range(8)},
    }
    index, _ = await ContextEngine(tmp_path / "cache").index(make_repo(tmp_path / "repo", files), "acme/app")
    hints = parse_query("Failed requests are never retried")
    plain = [f.path for f in rank_files(index, hints, weights=Weights(variants=0.0))]
    inflected = [f.path for f in rank_files(index, hints, weights=Weights(variants=0.5))]
    assert plain[0] == "app/network.py" and "app/retry.py" not in plain
    assert inflected[0] == "app/retry.py"
