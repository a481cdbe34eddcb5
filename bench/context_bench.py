"""Context engine benchmark on a real repository: this machine's Python standard library in a git repo.

    uv run python bench/context_bench.py [--files 3500] [--queries 50] [--budget 24000] [--no-git]

Copies the standard library's .py files (site-packages after it, in sorted order, until --files is
reached: the standard library alone has fewer than 3,000), commits them to a git repository in a temp dir,
then measures the cold index time, warm query times (median, p95), peak RSS, and checks every assembled
prompt against its budget. With --no-git the copy stays a plain folder (the index is then cached by the
files' content hash). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from engine.context import ContextEngine
from engine.context import engine as engine_module
from engine.context.store import IndexCache

QUERIES = [
    "json decoder raises JSONDecodeError on trailing comma",
    "asyncio event loop run_until_complete cancels pending tasks",
    "http.client HTTPConnection request sends chunked body",
    "pathlib Path.resolve on a symlink loop",
    "subprocess Popen communicate timeout kills the child",
    "email parser header folding with encoded words",
    "logging handlers RotatingFileHandler rollover",
    "dataclasses field default_factory with frozen=True",
    "shutil.copytree ignore_dangling_symlinks",
    "csv DictReader restkey and restval",
    'Traceback (most recent call last):\n  File "lib/json/decoder.py", line 355, in raw_decode\n'
    "StopIteration",
    "argparse ArgumentParser add_subparsers required",
    "zipfile ZipFile extractall path traversal",
    "concurrent.futures ThreadPoolExecutor shutdown cancel_futures",
    "urllib.parse urlsplit with IPv6 netloc",
    "typing get_type_hints forward references",
    "sqlite3 connection isolation_level autocommit",
    "tarfile extraction filter data_filter",
    "functools lru_cache cache_info typed",
    "unittest mock patch.object autospec",
]


def copy_corpus(target: Path, wanted: int, git: bool = True) -> int:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    site = stdlib / "site-packages"
    sources = sorted(
        p for p in stdlib.rglob("*.py") if site not in p.parents and "__pycache__" not in p.parts
    )
    if len(sources) < wanted and site.is_dir():
        sources += sorted(p for p in site.rglob("*.py") if "__pycache__" not in p.parts)[
            : wanted - len(sources)
        ]
    for source in sources[:wanted]:
        relative = source.relative_to(stdlib)
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target / relative)
    if not git:
        return min(wanted, len(sources))
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "bench"}
    env["GIT_COMMITTER_EMAIL"] = "b@x"
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "corpus"]):
        subprocess.run(["git", "-C", str(target), *command], check=True, env=env)
    return min(wanted, len(sources))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as temp:
        repo = Path(temp) / "repo"
        repo.mkdir()
        files = copy_corpus(repo, args.files, git=not args.no_git)
        engine = ContextEngine(Path(temp) / "cache")
        started = time.perf_counter()
        index, how = await engine.index(repo, "bench/stdlib")
        cold = time.perf_counter() - started
        rss_after_index = peak_rss_mb()
        # A fresh engine on the same cache: what a restarted worker pays for the first query.
        engine_module._LOADED.clear()
        started = time.perf_counter()
        await ContextEngine(Path(temp) / "cache").index(repo, "bench/stdlib")
        from_disk = time.perf_counter() - started
        queries = [random.Random(i).choice(QUERIES) + f" (variant {i})" for i in range(args.queries)]
        times: list[float] = []
        over_budget = 0
        for query in queries:
            started = time.perf_counter()
            pack = await engine.build(repo, "bench/stdlib", query, args.budget)
            times.append(time.perf_counter() - started)
            over_budget += pack.tokens > args.budget
        times.sort()
        cache_bytes = sum(
            p.stat().st_size for p in IndexCache(Path(temp) / "cache").folder("bench/stdlib").rglob("*.json")
        )
        return {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "python": sys.version.split()[0],
            "numpy": version("numpy"),
            "files_copied": files,
            "files_indexed": len(index.files),
            "index": how["index"],
            "cold_index_s": round(cold, 2),
            "index_from_disk_cache_s": round(from_disk, 2),
            "cache_mb": round(cache_bytes / 1e6, 1),
            "warm_query_median_ms": round(statistics.median(times) * 1000, 1),
            "warm_query_p95_ms": round(times[int(len(times) * 0.95) - 1] * 1000, 1),
            "queries": len(times),
            "budget_tokens": args.budget,
            "packs_over_budget": over_budget,
            "peak_rss_after_index_mb": round(rss_after_index, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=3500)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--budget", type=int, default=24_000)
    parser.add_argument("--no-git", action="store_true", help="index a plain folder, not a git repository")
    result = asyncio.run(run(parser.parse_args()))
    print(json.dumps(result, indent=2))
    return 1 if result["packs_over_budget"] else 0


if __name__ == "__main__":
    sys.exit(main())
