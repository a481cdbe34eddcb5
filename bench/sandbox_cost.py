"""The sandbox's cost per command: `true` and `python3 -c pass` through each runner, N times.

    .venv/bin/python bench/sandbox_cost.py [-n 200]

Runs in a temp worktree with the default limits and sandbox_env(); the runners alternate per command so
that a slow phase of the machine hits both alike. Prints, per runner and command, p50 and p95 wall time in
ms (nearest rank) as one line each and, last, a JSON object with the same numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
from pathlib import Path

from engine.workspace.sandbox import BwrapRunner, CommandRunner, UnsandboxedRunner, bwrap_problem, sandbox_env

COMMANDS = ("true", "python3 -c pass")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def main(n: int) -> dict[str, dict[str, dict[str, float]]]:
    problem = bwrap_problem()
    runners: list[CommandRunner] = [UnsandboxedRunner()] + ([] if problem else [BwrapRunner()])
    if problem:
        print(f"bwrap skipped: {problem}")
    env = sandbox_env()
    times: dict[tuple[str, str], list[float]] = {(r.name, c): [] for r in runners for c in COMMANDS}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n + 5):
            for command in COMMANDS:
                for runner in runners:
                    started = time.perf_counter()
                    result = await runner.run(command, Path(tmp), env=env)
                    took = (time.perf_counter() - started) * 1000
                    assert result.exit_code == 0, result.output
                    if i >= 5:  # the first few warm the caches (toolchain lookup, page cache)
                        times[runner.name, command].append(took)
    report: dict[str, dict[str, dict[str, float]]] = {}
    for (name, command), values in times.items():
        p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
        report.setdefault(name, {})[command] = {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2)}
        print(f"{name:5} {command:18} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  (n={len(values)})")
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200)
    print(json.dumps(asyncio.run(main(parser.parse_args().n))))
