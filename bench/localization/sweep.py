"""Compare ranking variants on the localization suite in one pass (each tree is indexed once).

    uv run python bench/localization/sweep.py VARIANTS.json [--suite …] [--repos …] [--only REPO|LANG]

VARIANTS.json maps a name to keyword arguments of engine.context.rank.Weights, e.g.
{"content only": {}, "priors": {"priors": true}}; a "role_priors" entry among them replaces role priors
({"tests 0.5": {"role_priors": {"test": 0.5}}}). Prints recall@1/5/10 and MRR per variant, overall and
per language, then one line per variant with R@1 / R@5 on the suite's two halves (even and odd line numbers:
a change is kept only when it holds on both) and per language, and writes each variant's ranks to --out
(JSON) for a closer look.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from autodev.cmd_eval import Outcome, checkout, halves, load_dataset, report, summarize
from engine.context import ContextEngine
from engine.context.rank import Weights, parse_query, rank_files
from engine.context.roles import PRIORS, RolePolicy

Variant = tuple[Weights, RolePolicy]


async def sweep(instances: list[dict], repos: Path, variants: dict[str, Variant], cache: Path) -> dict:
    engine = ContextEngine(cache)
    outcomes: dict[str, list[Outcome]] = {name: [] for name in variants}
    for number, item in enumerate(instances, start=1):
        repo_dir = repos / item["repo_dir"]
        if item.get("commit"):
            checkout(repo_dir, item["commit"])
        index, _ = await engine.index(repo_dir, item["repo_dir"])
        hints = parse_query(item["query"])
        gold = set(item["gold_files"])
        for name, (weights, policy) in variants.items():
            ranked = [f.path for f in rank_files(index, hints, weights=weights, policy=policy)]
            first = next((i for i, p in enumerate(ranked, start=1) if p in gold), None)
            outcomes[name].append(
                Outcome(item["instance_id"], item["repo"], item["language"], first, 0.0, ranked[:20])
            )
        if number % 50 == 0:
            print(f"{number}/{len(instances)}", file=sys.stderr)
    return outcomes


def compare(outcomes: dict[str, list[Outcome]], half_of: dict[str, str]) -> str:
    """One line per variant: R@1 / R@5 overall, on each half and per language."""
    languages = sorted({o.language for found in outcomes.values() for o in found})
    groups = ["all", "even", "odd", *languages]
    lines = [f"{'variant':<28}" + "".join(f"{g:>13}" for g in groups)]
    for name, found in outcomes.items():
        cells = []
        for group in groups:
            chosen = [o for o in found if group in ("all", o.language, half_of.get(o.instance_id))]
            result = summarize(chosen)
            cells.append(f"{result['recall@1']:.3f}/{result['recall@5']:.3f}")
        lines.append(f"{name[:28]:<28}" + "".join(f"{c:>13}" for c in cells))
    return "\n".join(lines)


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("variants", type=Path)
    parser.add_argument("--suite", type=Path, default=Path(__file__).with_name("suite.jsonl"))
    parser.add_argument("--repos", type=Path, default=Path("data/localization/repos"))
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "autodev-sweep-cache")
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    instances = load_dataset(args.suite)
    half_of = halves(instances)
    if args.only:
        instances = [i for i in instances if {i["repo"], i["language"]} & set(args.only)]
    variants = {}
    for name, kwargs in json.loads(args.variants.read_text()).items():
        priors = {**PRIORS, **kwargs.pop("role_priors", {})}
        variants[name] = (Weights(**kwargs), RolePolicy(priors=priors))
    outcomes = asyncio.run(sweep(instances, args.repos, variants, args.cache))
    for name, found in outcomes.items():
        print(f"\n## {name}\n" + report(found, half_of).split("\n\nrepository")[0])
    print("\nR@1/R@5\n" + compare(outcomes, half_of))
    if args.out:
        args.out.write_text(json.dumps({n: [o.__dict__ for o in found] for n, found in outcomes.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
