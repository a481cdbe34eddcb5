"""`autodev context` (what the context engine would send, with scores) and `autodev eval-localization`."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from engine.context import ContextEngine
from engine.settings import Settings


def add_parsers(subparsers: Any) -> None:
    context = subparsers.add_parser(
        "context",
        help="show the context the engine would send for a query, with scores",
        description="Index the repository (cached under DATA_DIR) and print the context pack for QUERY.",
    )
    context.add_argument("--repo", required=True, type=Path, help="path to the repository's working tree")
    context.add_argument("--name", help="repository name for cache and memory notes (default: folder name)")
    context.add_argument("--budget", type=int, help="token budget (default CONTEXT_BUDGET_TOKENS)")
    context.add_argument("--json", action="store_true", help="print the diagnostics as JSON too")
    context.add_argument("query", help="the task, step or issue text")
    context.set_defaults(handler=main)

    evaluate = subparsers.add_parser(
        "eval-localization",
        help="file-level recall@k and MRR of the engine's ranking on a JSONL dataset",
        description='JSONL lines {"instance_id", "repo_dir", "query", "gold_files"}; '
        "repo_dir is relative to --repos.",
    )
    evaluate.add_argument("dataset", type=Path, help="the JSONL dataset")
    evaluate.add_argument("--repos", required=True, type=Path, help="folder holding the instances' repo_dir")
    evaluate.add_argument("--out", type=Path, help='write {"instance_id", "ranked_files"} per line here')
    evaluate.set_defaults(handler=main_eval)


def _cache_dir(settings: Settings) -> Path:
    return settings.data_dir / "context-cache"


def main(args: argparse.Namespace, settings: Settings) -> int:
    if not args.repo.is_dir():
        print(f"autodev context: {args.repo} is not a directory", file=sys.stderr)
        return 2
    budget = args.budget if args.budget is not None else settings.context_budget_tokens
    engine = ContextEngine(_cache_dir(settings))
    name = args.name or args.repo.resolve().name
    pack = asyncio.run(engine.build(args.repo, name, args.query, budget))
    diagnostics = pack.diagnostics
    print(f"# {pack.tokens} of {budget} tokens, index {diagnostics['index']}, {diagnostics['seconds']} s")
    print("# chosen (score, tokens/full, source, title):")
    for item in diagnostics["chosen"]:
        reasons = "; ".join(item["reasons"])
        print(
            f"#   {item['score']:>7.3f} {item['tokens']:>6}/{item['full_tokens']:<6} {item['source']:<9} "
            f"{item['title']}{'  [' + reasons + ']' if reasons else ''}"
        )
    print(pack.text)
    if args.json:
        print(json.dumps(diagnostics, indent=2, default=str))
    return 0


def load_dataset(path: Path) -> list[dict[str, Any]]:
    """The dataset's instances; a malformed line is an error naming the line."""
    instances = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            missing = {"instance_id", "repo_dir", "query", "gold_files"} - set(item)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not JSON ({error.msg})") from None
        if missing or not isinstance(item["gold_files"], list):
            raise ValueError(f"{path}:{number}: needs instance_id, repo_dir, query and a gold_files list")
        instances.append(item)
    return instances


async def evaluate(engine: ContextEngine, instances: list[dict[str, Any]], repos: Path) -> dict[str, Any]:
    hits = {1: 0, 5: 0, 10: 0}
    reciprocal: list[float] = []
    times: list[float] = []
    ranked_out = []
    for item in instances:
        repo_dir = repos / item["repo_dir"]
        await engine.index(repo_dir, item["repo_dir"])  # indexing is not part of the per-query time
        started = time.perf_counter()
        ranked = [f.path for f in await engine.rank_files(repo_dir, item["repo_dir"], item["query"])]
        times.append(time.perf_counter() - started)
        gold = set(item["gold_files"])
        first = next((i for i, path in enumerate(ranked, start=1) if path in gold), None)
        for k in hits:
            hits[k] += first is not None and first <= k
        reciprocal.append(1 / first if first else 0.0)
        ranked_out.append({"instance_id": item["instance_id"], "ranked_files": ranked[:100]})
    count = len(instances) or 1
    return {
        "instances": len(instances),
        **{f"recall@{k}": round(v / count, 4) for k, v in hits.items()},
        "mrr": round(sum(reciprocal) / count, 4),
        "median_seconds": round(statistics.median(times), 4) if times else 0.0,
        "ranked": ranked_out,
    }


def main_eval(args: argparse.Namespace, settings: Settings) -> int:
    try:
        instances = load_dataset(args.dataset)
    except (OSError, ValueError) as error:
        print(f"autodev eval-localization: {error}", file=sys.stderr)
        return 2
    missing = sorted({i["repo_dir"] for i in instances if not (args.repos / i["repo_dir"]).is_dir()})
    if missing:
        print(
            f"autodev eval-localization: no such repo_dir under {args.repos}: {', '.join(missing)}",
            file=sys.stderr,
        )
        return 2
    result = asyncio.run(evaluate(ContextEngine(_cache_dir(settings)), instances, args.repos))
    ranked = result.pop("ranked")
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in ranked))
    print(
        f"instances {result['instances']}  recall@1 {result['recall@1']:.3f}"
        f"  recall@5 {result['recall@5']:.3f}"
        f"  recall@10 {result['recall@10']:.3f}  MRR {result['mrr']:.3f}"
        f"  median {result['median_seconds'] * 1000:.1f} ms/query"
    )
    return 0
