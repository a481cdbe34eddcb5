"""`autodev context`: what the context engine would send for a query, with scores."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
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
