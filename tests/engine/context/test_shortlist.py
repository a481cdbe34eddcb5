import json
from pathlib import Path

import pytest

from autodev.cli import build_parser
from autodev.cmd_eval import PlannerModel, evaluate, load_dataset, main_eval
from engine.agents.shortlist import parse_picks, with_picks_first
from engine.context import ContextEngine
from tests.conftest import make_settings
from tests.support.fake_llm import FakeLLM

from .conftest import make_repo

FILES = {
    "shop/cart.py": "class Cart:\n    def add_item(self, item):\n        self.items.append(item)\n\n"
    "    def total(self):\n        return sum(i.price for i in self.items)  # cart total price\n",
    "shop/pricing.py": "def round_price(value):\n    return round(value, 2)\n\n\ndef discount(price):\n"
    "    return price * 0.9\n",
}


def test_picks_are_read_from_json_or_prose_and_kept_to_the_shortlist() -> None:
    listed = ["a/x.py", "a/y.py", "b/z.py"]
    assert parse_picks('```json\n{"files": ["./a/y.py", "nope.py", "a/x.py"]}\n```', listed) == [
        "a/y.py",
        "a/x.py",
    ]
    assert parse_picks("I would open b/z.py first, then a/x.py.", listed) == ["b/z.py", "a/x.py"]
    assert parse_picks('{"files": "a/x.py"}', listed) == []
    assert parse_picks(None, listed) == []
    assert with_picks_first(["a", "b", "c", "d"], ["c", "zz", "a"]) == ["c", "a", "b", "d"]


def _dataset(tmp_path: Path) -> Path:
    make_repo(tmp_path / "repos" / "shop", FILES)
    line = {"instance_id": "p1", "repo_dir": "shop", "query": "the cart total price is not rounded",
            "gold_files": ["shop/pricing.py"]}  # fmt: skip
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(line) + "\n")
    return path


async def test_with_planner_the_models_picks_go_first(tmp_path: Path) -> None:
    """The planner sees outlines (names and lines), not file bodies, and what it picks is ranked first."""
    dataset = load_dataset(_dataset(tmp_path))
    repos = tmp_path / "repos"
    engine = ContextEngine(tmp_path / "cache")
    alone = await evaluate(engine, dataset, repos)
    assert alone[0].ranked[0] == "shop/cart.py" and alone[0].rank == 2
    async with FakeLLM() as llm:
        llm.reply_json({"files": ["shop/pricing.py", "shop/unknown.py"]})
        settings = make_settings(tmp_path, openai_base_url=llm.base_url, openai_api_key="sk-test")
        (outcome,) = await evaluate(engine, dataset, repos, planner=PlannerModel(settings))
        prompt = llm.requests[0]["messages"][-1]["content"]
    assert (outcome.rank, outcome.picked, outcome.ranked) == (
        1,
        ["shop/pricing.py"],
        ["shop/pricing.py", "shop/cart.py"],
    )
    assert "class Cart (lines 1-6): add_item, total" in prompt
    assert "function round_price (lines 1-2)" in prompt
    assert "return round(value, 2)" not in prompt


def test_with_planner_needs_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = str(_dataset(tmp_path))
    args = build_parser().parse_args(["eval-localization", dataset, "--repos", str(tmp_path / "repos")])
    args.with_planner = True
    assert main_eval(args, make_settings(tmp_path)) == 2
    assert "--with-planner needs" in capsys.readouterr().err


async def test_the_files_the_planner_named_lead_the_steps_pack_and_the_map_shows_outlines(
    tmp_path: Path,
) -> None:
    """The planner's picks for a step steer the coder's context; the map it planned from had outlines."""
    repo = make_repo(tmp_path / "repo", FILES)
    engine = ContextEngine(tmp_path / "cache")
    pack = await engine.build(repo, "acme/shop", "the cart total price", 4000)
    assert pack.diagnostics["top_files"][0]["path"] == "shop/cart.py"
    assert "shop/cart.py\n  class Cart (lines 1-6): add_item, total" in pack.text
    pack = await engine.build(repo, "acme/shop", "the cart total price", 4000, named=["./shop/pricing.py"])
    assert pack.diagnostics["top_files"][0]["path"] == "shop/pricing.py"
