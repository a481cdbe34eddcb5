"""How full a context pack is in a real tokenizer's tokens, before and after per-model calibration.

    uv run python bench/token_calibration.py [--repo PATH] [--budget 24000] [--queries 40] [--warmup 5]
                                             [--warmup-repo PATH]

The provider's `usage.prompt_tokens` is played by OpenAI's own BPE encodings (o200k_base: gpt-4o, gpt-4.1,
o-series, gpt-5; cl100k_base: gpt-4, gpt-3.5), counted by the npm package gpt-tokenizer (installed once
under ~/.cache/autodev-bench; Node.js and the npm registry are needed, the internet is not). For each
encoding: `--warmup` earlier requests (a system prompt, the task and its pack, as a job sends them) are
"reported", which calibrates the estimate as engine.store.calibration does; then each query's pack is built
with and without the calibration and counted. The queries are the repository's own commit messages, the
kind of text a task is. With `--warmup-repo` the earlier requests were made on another repository (a model's
calibration is learned across all the jobs that used it). Printed: the share of the pack's limit (budget
less the output reserve) that the pack fills in real tokens — minimum, median, maximum — and how many packs
went over.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from engine.context import ContextEngine
from engine.context.engine import OUTPUT_RESERVE_TOKENS
from engine.llm.tokens import count_message_tokens
from engine.store.calibration import Calibration, calibrate

TOOL_DIR = Path.home() / ".cache" / "autodev-bench" / "gpt-tokenizer"
COUNTER = """
import fs from 'fs';
const {encode: o200k} = await import('gpt-tokenizer/encoding/o200k_base');
const {encode: cl100k} = await import('gpt-tokenizer/encoding/cl100k_base');
const texts = JSON.parse(fs.readFileSync(0, 'utf8'));
console.log(JSON.stringify(texts.map(t => [o200k(t).length, cl100k(t).length])));
"""
SYSTEM = "You are autodev's coder. Change the repository to do the task; use the tools; keep it small."
PER_MESSAGE = 4  # role and separators per message, 3 to prime the reply: as OpenAI's cookbook counts


def real_counts(texts: list[str]) -> list[tuple[int, int]]:
    """(o200k, cl100k) tokens of each text."""
    if not (TOOL_DIR / "node_modules" / "gpt-tokenizer").exists():
        TOOL_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--prefix", str(TOOL_DIR), "gpt-tokenizer"], check=True)
    script = TOOL_DIR / "count.mjs"
    script.write_text(COUNTER)
    done = subprocess.run(
        ["node", str(script)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        check=True,
        cwd=TOOL_DIR,
    )
    return [tuple(pair) for pair in json.loads(done.stdout)]


def commit_messages(repo: Path, count: int) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "log", "--no-merges", f"-n{count * 3}", "--format=%s%n%n%b%x00"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    messages = [m.strip() for m in out.split("\x00") if len(m.strip()) > 40]
    return messages[:count]


async def packs(
    cache: Path, repo: Path, queries: list[str], calibration: Calibration, budget: int
) -> list[str]:
    """Each query's pack as gather_context builds it for a model with this calibration."""
    engine = ContextEngine(cache, output_reserve_tokens=calibration.limit(OUTPUT_RESERVE_TOKENS))
    return [(await engine.build(repo, "bench/repo", q, calibration.limit(budget))).text for q in queries]


def messages(query: str, pack: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{query}\n\n{pack}"}]


def fill(real: list[int], limit: int) -> str:
    shares = [r / limit for r in real]
    over = sum(1 for r in real if r > limit)
    return (
        f"min {min(shares):.1%} · median {statistics.median(shares):.1%} · max {max(shares):.1%}"
        f" · over the limit: {over} of {len(real)}"
    )


async def measure(args: argparse.Namespace) -> None:
    repo: Path = args.repo
    warmup_repo: Path = args.warmup_repo or repo
    if warmup_repo == repo:
        queries = commit_messages(repo, args.queries + args.warmup)
        warmup, queries = queries[: args.warmup], queries[args.warmup :]
    else:
        warmup, queries = commit_messages(warmup_repo, args.warmup), commit_messages(repo, args.queries)
    cache = Path(tempfile.mkdtemp(prefix="autodev-calib-"))
    reserve = min(OUTPUT_RESERVE_TOKENS, args.budget // 4)
    as_it_is = Calibration("estimate", 1.0, 0)
    print(f"{repo}: {len(queries)} queries, budget {args.budget} (pack limit {args.budget - reserve})")
    if warmup_repo != repo:
        print(f"calibrated on {len(warmup)} requests about {warmup_repo}")

    # The earlier requests a job sent: their estimates, and what each encoding reports for them.
    warmup_packs = await packs(cache, warmup_repo, warmup, as_it_is, args.budget)
    earlier = [messages(q, p) for q, p in zip(warmup, warmup_packs, strict=True)]
    reported = real_counts([m["content"] for msgs in earlier for m in msgs])
    raw_packs = await packs(cache, repo, queries, as_it_is, args.budget)
    raw_real = real_counts(raw_packs)
    for column, encoding in enumerate(("o200k_base", "cl100k_base")):
        pairs = []
        for i, msgs in enumerate(earlier):
            real = 3 + sum(PER_MESSAGE + reported[2 * i + j][column] for j in range(len(msgs)))
            pairs.append((real, count_message_tokens(msgs)))
        calibration: Calibration = calibrate(encoding, pairs)
        calibrated = await packs(cache, repo, queries, calibration, args.budget)
        calibrated_real = [c[column] for c in real_counts(calibrated)]
        limit = args.budget - reserve
        print(f"\n{encoding}: ratio {calibration.ratio:.3f} from {calibration.samples} requests")
        print(f"  estimate as it is: {fill([r[column] for r in raw_real], limit)}")
        print(f"  calibrated:        {fill(calibrated_real, limit)}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--budget", type=int, default=24_000)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--warmup-repo", type=Path, default=None)
    args = parser.parse_args()
    args.repo = args.repo.resolve()
    args.warmup_repo = args.warmup_repo.resolve() if args.warmup_repo else None
    asyncio.run(measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
