"""`autodev eval-localization`: how well the context engine ranks the files a fix changed, per repository
and per language (the suite is built by bench/localization/build_suite.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.agents.shortlist import ChatModel, pick_files, with_picks_first
from engine.context import ContextEngine
from engine.llm.client import LLMReply, make_openai_client
from engine.settings import Settings

KS = (1, 5, 10)
SHORTLIST = 20
REQUIRED = {"instance_id", "repo_dir", "query", "gold_files"}


def add_parser(subparsers: Any) -> None:
    evaluate = subparsers.add_parser(
        "eval-localization",
        help="file-level recall@k and MRR of the engine's ranking on a JSONL dataset",
        description='JSONL lines {"instance_id", "repo_dir", "query", "gold_files"} and optionally "commit" '
        '(checked out in repo_dir first: give the suite\'s own clones), "repo" and "language" (the groups '
        "reported). repo_dir is relative to --repos.",
    )
    evaluate.add_argument("dataset", type=Path, help="the JSONL dataset")
    evaluate.add_argument("--repos", required=True, type=Path, help="folder holding the instances' repo_dir")
    evaluate.add_argument(
        "--out", type=Path, help='write {"instance_id", "rank", "ranked_files"} per line here'
    )
    evaluate.add_argument(
        "--only", action="append", default=[], help="keep instances of this repo or language"
    )
    evaluate.add_argument("--limit", type=int, help="the first N instances (after --only)")
    evaluate.add_argument(
        "--with-planner",
        action="store_true",
        help="the planner model (MODEL_PLANNER at OPENAI_BASE_URL) picks from the top --shortlist files "
        "(paths and symbol outlines) and its picks go first",
    )
    evaluate.add_argument("--shortlist", type=int, default=SHORTLIST, help=f"default {SHORTLIST}")
    evaluate.set_defaults(handler=main_eval)


def _cache_dir(settings: Settings) -> Path:
    return settings.data_dir / "context-cache"


def load_dataset(path: Path) -> list[dict[str, Any]]:
    """The dataset's instances; a malformed line is an error naming the line."""
    instances = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not JSON ({error.msg})") from None
        if not isinstance(item, dict) or REQUIRED - set(item) or not isinstance(item["gold_files"], list):
            raise ValueError(f"{path}:{number}: needs instance_id, repo_dir, query and a gold_files list")
        instances.append(item)
    return instances


@dataclass
class Outcome:
    instance_id: str
    repo: str
    language: str
    rank: int | None  # 1-based rank of the first file the fix changed; None when it was not ranked at all
    seconds: float
    ranked: list[str]
    picked: list[str] = field(default_factory=list)
    planner_seconds: float = 0.0


def checkout(repo_dir: Path, commit: str) -> None:
    """Put the suite's clone at the fix's parent (no hooks run: the clone's history is someone else's)."""
    git = ["git", "-c", "core.hooksPath=/dev/null", "-C", str(repo_dir)]
    subprocess.run([*git, "checkout", "-q", "-f", "--detach", commit], check=True, capture_output=True)


async def evaluate(
    engine: ContextEngine,
    instances: list[dict[str, Any]],
    repos: Path,
    *,
    planner: ChatModel | None = None,
    shortlist: int = SHORTLIST,
) -> list[Outcome]:
    """Each instance ranked on its tree; with a planner, its picks from the top `shortlist` files go first."""
    outcomes = []
    for item in instances:
        repo_dir = repos / item["repo_dir"]
        if item.get("commit"):
            await asyncio.to_thread(checkout, repo_dir, item["commit"])
        await engine.index(repo_dir, item["repo_dir"])  # indexing is not part of the per-query time
        started = time.perf_counter()
        ranked = [f.path for f in await engine.rank_files(repo_dir, item["repo_dir"], item["query"])]
        seconds = time.perf_counter() - started
        picked: list[str] = []
        planner_seconds = 0.0
        if planner is not None:
            started = time.perf_counter()
            outlines = await engine.outlines(repo_dir, item["repo_dir"], ranked[:shortlist])
            picked = await pick_files(planner, task=item["query"], outlines=outlines)
            ranked = with_picks_first(ranked, picked)
            planner_seconds = time.perf_counter() - started
        gold = set(item["gold_files"])
        first = next((i for i, path in enumerate(ranked, start=1) if path in gold), None)
        repo = str(item.get("repo") or item["repo_dir"])
        language = str(item.get("language") or "?")
        outcomes.append(
            Outcome(
                item["instance_id"], repo, language, first, seconds, ranked[:100], picked, planner_seconds
            )
        )
    return outcomes


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    count = len(outcomes) or 1
    times = sorted(o.seconds for o in outcomes)
    return {
        "instances": len(outcomes),
        **{
            f"recall@{k}": round(sum(o.rank is not None and o.rank <= k for o in outcomes) / count, 4)
            for k in KS
        },
        "mrr": round(sum(1 / o.rank for o in outcomes if o.rank) / count, 4),
        "median_seconds": round(statistics.median(times), 4) if times else 0.0,
        "p95_seconds": round(times[max(0, int(len(times) * 0.95) - 1)], 4) if times else 0.0,
    }


def _line(name: str, result: dict[str, Any]) -> str:
    return (
        f"{name:<30} {result['instances']:>5} {result['recall@1']:>6.3f} {result['recall@5']:>6.3f}"
        f" {result['recall@10']:>6.3f} {result['mrr']:>6.3f} {result['median_seconds'] * 1000:>7.1f}"
    )


def halves(instances: list[dict[str, Any]]) -> dict[str, str]:
    """instance_id → "odd" or "even", by its place in the dataset (from 1): a ranking change that holds on
    both halves is less likely to be tuned to a few instances."""
    return {str(item["instance_id"]): ("even", "odd")[n % 2] for n, item in enumerate(instances, start=1)}


def report(outcomes: list[Outcome], half_of: dict[str, str] | None = None) -> str:
    """The whole suite's line, then a table per half (when given), per language and per repository."""
    total = summarize(outcomes)
    lines = [
        f"instances {total['instances']}  recall@1 {total['recall@1']:.3f}  recall@5 {total['recall@5']:.3f}"
        f"  recall@10 {total['recall@10']:.3f}  MRR {total['mrr']:.3f}"
        f"  median {total['median_seconds'] * 1000:.1f} ms/query  p95 {total['p95_seconds'] * 1000:.1f} ms",
    ]
    planned = [o.planner_seconds for o in outcomes if o.planner_seconds]
    if planned:
        picked = sum(1 for o in outcomes if o.picked)
        median = statistics.median(planned)
        lines.append(f"planner: picked for {picked} of {len(outcomes)}, median {median:.2f} s a call")
    keys = {
        "half": lambda o: (half_of or {}).get(o.instance_id, "?"),
        "language": lambda o: o.language,
        "repository": lambda o: o.repo,
    }
    for title, key in keys.items():
        if title == "half" and half_of is None:
            continue
        groups = sorted({key(o) for o in outcomes})
        if len(groups) < 2:
            continue
        lines.append(f"\n{title:<30} {'n':>5} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR':>6} {'ms':>7}")
        for group in groups:
            lines.append(_line(group, summarize([o for o in outcomes if key(o) == group])))
    return "\n".join(lines)


class PlannerModel:
    """The planner's model called directly: an evaluation has no job to charge, so no budget guard."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tokens_in = 0

    async def chat(self, *, role: str, messages: list[dict[str, Any]], max_tokens: int = 400) -> LLMReply:
        client = make_openai_client(self.settings)
        try:
            response = await client.chat.completions.create(
                model=self.settings.model_planner,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
            )
        finally:
            await client.close()
        usage = response.usage
        self.tokens_in += usage.prompt_tokens if usage else 0
        content = response.choices[0].message.content if response.choices else None
        return LLMReply(content=content, tool_calls=[])


def main_eval(args: argparse.Namespace, settings: Settings) -> int:
    try:
        instances = load_dataset(args.dataset)
    except (OSError, ValueError) as error:
        print(f"autodev eval-localization: {error}", file=sys.stderr)
        return 2
    half_of = halves(instances)
    if args.only:
        wanted = set(args.only)
        instances = [i for i in instances if {i.get("repo"), i.get("language"), i["repo_dir"]} & wanted]
    instances = instances[: args.limit] if args.limit is not None else instances
    missing = sorted({i["repo_dir"] for i in instances if not (args.repos / i["repo_dir"]).is_dir()})
    if missing:
        print(
            f"autodev eval-localization: no such repo_dir under {args.repos}: {', '.join(missing)}",
            file=sys.stderr,
        )
        return 2
    planner = None
    if args.with_planner:
        if not settings.llm_configured:
            print(
                "autodev eval-localization: --with-planner needs OPENAI_API_KEY or OPENAI_BASE_URL",
                file=sys.stderr,
            )
            return 2
        planner = PlannerModel(settings)
    engine = ContextEngine(_cache_dir(settings))
    try:
        outcomes = asyncio.run(
            evaluate(engine, instances, args.repos, planner=planner, shortlist=args.shortlist)
        )
    except subprocess.CalledProcessError as error:
        print(
            f"autodev eval-localization: {error} ({error.stderr.decode(errors='replace').strip()})",
            file=sys.stderr,
        )
        return 2
    if args.out:
        args.out.write_text(
            "".join(
                json.dumps(
                    {
                        "instance_id": o.instance_id,
                        "rank": o.rank,
                        "picked": o.picked,
                        "ranked_files": o.ranked,
                    }
                )
                + "\n"
                for o in outcomes
            )
        )
    print(report(outcomes, half_of))
    return 0
