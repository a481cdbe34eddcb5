"""The planner in the loop, measured with scripted models on the localization suite.

    uv run python bench/localization/planner_effect.py [--shortlist 20] [--only REPO|LANG]

For each instance the engine ranks the files, the top --shortlist go to the planner as paths with symbol
outlines (engine/agents/shortlist.py builds the very prompt a real model gets), and the picks go first.
Scripted models stand in for the real one:

- `engine order`: answers the first five listed paths: the ranking unchanged (the plumbing costs nothing).
- `outline names`: picks the listed files whose outline names a word of the issue (a crude reader).
- `oracle`: picks the files the fix changed when they are listed — the ceiling a perfect planner reaches
  from this shortlist (the engine's recall@shortlist).

Prints recall@1/5/10 and MRR per model and the prompt's size in tokens (median, p95). A real model is run
with `autodev eval-localization --with-planner` (MODEL_PLANNER at OPENAI_BASE_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from autodev.cmd_eval import Outcome, checkout, load_dataset, report
from engine.agents.shortlist import pick_files, shortlist_prompt, with_picks_first
from engine.context import ContextEngine
from engine.context.tokenize import tokenize
from engine.llm.tokens import count_message_tokens

Answer = Callable[[str, list[tuple[str, str]], dict[str, Any]], list[str]]


def engine_order(task: str, outlines: list[tuple[str, str]], item: dict[str, Any]) -> list[str]:
    return [path for path, _ in outlines[:5]]


def outline_names(task: str, outlines: list[tuple[str, str]], item: dict[str, Any]) -> list[str]:
    words = set(tokenize(task))
    named = [
        path for path, text in outlines if words & set(re.findall(r"(?:class|function|method) (\w+)", text))
    ]
    return named[:5]


def oracle(task: str, outlines: list[tuple[str, str]], item: dict[str, Any]) -> list[str]:
    return [path for path, _ in outlines if path in set(item["gold_files"])]


MODELS: dict[str, Answer] = {"engine order": engine_order, "outline names": outline_names, "oracle": oracle}


class Scripted:
    """A ChatModel that answers from the prompt's listing like a model would, as JSON."""

    def __init__(self, answer: Answer, item: dict[str, Any], outlines: list[tuple[str, str]]) -> None:
        self.answer, self.item, self.outlines = answer, item, outlines

    async def chat(self, *, role: str, messages: list[dict[str, Any]], max_tokens: int = 400) -> Any:
        picks = self.answer(self.item["query"], self.outlines, self.item)
        return SimpleNamespace(content=json.dumps({"files": picks}))


async def run(args: argparse.Namespace) -> int:
    instances = load_dataset(args.suite)
    if args.only:
        instances = [i for i in instances if {i["repo"], i["language"]} & set(args.only)]
    engine = ContextEngine(args.cache)
    outcomes: dict[str, list[Outcome]] = {"no planner": [], **{name: [] for name in MODELS}}
    prompt_tokens: list[int] = []
    for item in instances:
        repo_dir = args.repos / item["repo_dir"]
        if item.get("commit"):
            checkout(repo_dir, item["commit"])
        ranked = [f.path for f in await engine.rank_files(repo_dir, item["repo_dir"], item["query"])]
        outlines = await engine.outlines(repo_dir, item["repo_dir"], ranked[: args.shortlist])
        prompt_tokens.append(count_message_tokens(shortlist_prompt(item["query"], outlines), ()))
        gold = set(item["gold_files"])
        for name in outcomes:
            order = ranked
            if name in MODELS:
                picks = await pick_files(
                    Scripted(MODELS[name], item, outlines), task=item["query"], outlines=outlines
                )
                order = with_picks_first(ranked, picks)
            first = next((i for i, p in enumerate(order, start=1) if p in gold), None)
            outcomes[name].append(
                Outcome(item["instance_id"], item["repo"], item["language"], first, 0.0, [])
            )
    for name, found in outcomes.items():
        print(f"\n## {name}\n" + report(found).split("\n\nrepository")[0].split("\n\nlanguage")[0])
    prompt_tokens.sort()
    p95 = prompt_tokens[max(0, int(len(prompt_tokens) * 0.95) - 1)]
    print(f"\nshortlist prompt: median {statistics.median(prompt_tokens):.0f} tokens, p95 {p95}")
    return 0


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--suite", type=Path, default=Path(__file__).with_name("suite.jsonl"))
    parser.add_argument("--repos", type=Path, default=Path("data/localization/repos"))
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "autodev-sweep-cache")
    parser.add_argument("--shortlist", type=int, default=20)
    parser.add_argument("--only", action="append", default=[])
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
