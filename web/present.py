"""Turns a JobView into what the job page shows: per-file highlighted diffs, a cost chart, readable values."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer

from engine.llm.money import usd
from engine.views import JobView

TEST_TAIL_LINES = 60
INLINE_VALUE_CHARS = 120
PYGMENTS_CSS = HtmlFormatter(style="default").get_style_defs(".hl")


@dataclass(frozen=True, slots=True)
class FileDiff:
    path: str
    added: int
    removed: int
    html: Markup


def split_diff(diff: str | None) -> list[FileDiff]:
    """One entry per file of a unified (git) diff, each highlighted; pygments escapes the text."""
    if not diff or not diff.strip():
        return []
    chunks: list[list[str]] = []
    for line in diff.splitlines():
        if line.startswith("diff --git ") or not chunks:
            chunks.append([])
        chunks[-1].append(line)
    return [_file_diff(lines) for lines in chunks]


def _file_diff(lines: list[str]) -> FileDiff:
    path = ""
    added = removed = 0
    in_hunk = False
    for line in lines:
        if line.startswith("@@"):
            in_hunk = True
        elif in_hunk and line.startswith("+"):
            added += 1
        elif in_hunk and line.startswith("-"):
            removed += 1
        elif not in_hunk and line.startswith("+++ ") and line[4:] != "/dev/null":
            path = line[4:].removeprefix("b/")
        elif not in_hunk and line.startswith("--- ") and not path and line[4:] != "/dev/null":
            path = line[4:].removeprefix("a/")
    if not path and lines[0].startswith("diff --git "):
        path = lines[0].rsplit(" b/", 1)[-1]
    body = highlight("\n".join(lines), DiffLexer(), HtmlFormatter(nowrap=True))
    return FileDiff(path=path or "(diff)", added=added, removed=removed, html=Markup(body))


def tail(text: str | None, lines: int = TEST_TAIL_LINES) -> str:
    if not text:
        return ""
    kept = text.rstrip("\n").splitlines()
    if len(kept) <= lines:
        return "\n".join(kept)
    return f"… {len(kept) - lines} earlier lines not shown\n" + "\n".join(kept[-lines:])


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def safe_url(url: str | None) -> str | None:
    """Only web links become hrefs; a `javascript:` URL from anywhere stays text."""
    if url and url.startswith(("https://", "http://")):
        return url
    return None


@dataclass(frozen=True, slots=True)
class Field:
    """One key of an event's data or a diagnostics entry: short values inline, long ones folded."""

    key: str
    text: str
    long: bool


def fields_of(data: Any) -> list[Field]:
    if not isinstance(data, dict):
        return [_field("value", data)]
    return [_field(str(key), value) for key, value in data.items()]


def _field(key: str, value: Any) -> Field:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        text = ", ".join(str(v) for v in value)
    elif isinstance(value, dict | list):
        text = json.dumps(value, indent=2, default=str)
    else:
        text = "—" if value is None else str(value)
    return Field(key=key, text=text, long=len(text) > INLINE_VALUE_CHARS or "\n" in text)


@dataclass(frozen=True, slots=True)
class ChartPoint:
    x: float
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class CostChart:
    """A cumulative cost line in a 0..WIDTH x 0..HEIGHT box, with the budget line when it is in range."""

    points: list[ChartPoint]
    path: str
    budget_y: float | None
    top_label: str
    span_label: str

    WIDTH = 600
    HEIGHT = 160


def cost_chart(job: JobView) -> CostChart | None:
    if not job.costs:
        return None
    start = min([c.created_at for c in job.costs] + ([job.started_at] if job.started_at else []))
    end = max(c.created_at for c in job.costs)
    span = max((end - start).total_seconds(), 1.0)
    total = sum(c.usd for c in job.costs)
    # Scale to the budget once it is within reach, else to the spend so the line is readable.
    top = max(job.budget_usd, total) * 1.05 if total >= job.budget_usd / 2 else max(total * 1.25, 1e-6)
    width, height = CostChart.WIDTH, CostChart.HEIGHT
    points: list[ChartPoint] = []
    running = 0.0
    for cost in job.costs:
        running += cost.usd
        x = (cost.created_at - start).total_seconds() / span * width
        y = height - running / top * height
        label = f"{cost.role} · {cost.model} · {usd(cost.usd)} (total {usd(running)})"
        points.append(ChartPoint(round(x, 1), round(y, 1), label))
    path = f"M0,{height}" + "".join(f" H{p.x} V{p.y}" for p in points)
    budget_y = round(height - job.budget_usd / top * height, 1) if job.budget_usd <= top else None
    return CostChart(points, path, budget_y, usd(top), duration(span))


def budget_percent(job: JobView) -> float:
    if job.budget_usd <= 0:
        return 100.0
    return round(min(100.0, job.cost_usd / job.budget_usd * 100), 1)


def fingerprint(job: JobView, last_seq: int) -> str:
    """Changes whenever anything the page shows changes, so the live channel knows when to refresh."""
    steps = [
        (s.index, s.state, s.test_passed, s.commit_sha, len(s.diff or ""), len(s.test_output or ""))
        for s in job.steps
    ]
    parts = (
        last_seq,
        job.state.value,
        job.phase,
        job.cost_usd,
        job.requests,
        job.pr_url,
        job.cancel_requested,
        len(job.context_diagnostics),
        steps,
        job.plan is not None,
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""
