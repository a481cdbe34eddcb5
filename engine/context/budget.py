"""Fitting candidates to a token budget: greedy by score, long ones compacted to their relevant spans, and a
final count of the assembled text so the hard cap holds whatever the per-part estimates said."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.context.tokenize import tokenize
from engine.llm.tokens import count_tokens

CONTEXT_LINES = 3
MIN_USEFUL_TOKENS = 40  # a compacted piece smaller than this is noise, not context


@dataclass
class Candidate:
    source: str  # "code", "memory", "repo-map" or an extra's name
    title: str  # what the reader sees in the heading: a path with lines, "memory notes", …
    text: str
    score: float
    reasons: list[str] = field(default_factory=list)
    focus: set[int] = field(default_factory=set)  # 1-based line numbers within `text` that must stay
    first_line: int = 1  # the line number of text's first line in its file (for "lines a-b" headings)
    language: str = ""


def render(candidate: Candidate, text: str) -> str:
    return f"### {candidate.title}\n```{candidate.language}\n{text}\n```\n"


def compact(text: str, terms: set[str], max_tokens: int, focus: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    """The lines near query terms (and focus lines), gaps marked `⋮`, within max_tokens; "" if none fit."""
    lines = text.splitlines()
    if not lines or max_tokens <= 0:
        return ""
    weights = [
        (10 if i + 1 in focus else 0) + sum(1 for t in set(tokenize(line)) if t in terms)
        for i, line in enumerate(lines)
    ]
    seeds = sorted((i for i, w in enumerate(weights) if w > 0), key=lambda i: (-weights[i], i))
    keep: set[int] = set()
    cost = [count_tokens(line) + 1 for line in lines]
    used = 0

    def take(indices: range) -> bool:
        nonlocal used
        extra = [i for i in indices if i not in keep]
        price = sum(cost[i] for i in extra) + 3  # the gap marker
        if used + price > max_tokens:
            return False
        keep.update(extra)
        used += price
        return True

    take(range(0, 1))  # the first line: a signature or a heading says what the rest is
    for seed in seeds:
        if not take(range(max(0, seed - CONTEXT_LINES), min(len(lines), seed + CONTEXT_LINES + 1))):
            take(range(seed, seed + 1))
    if not seeds:
        for i in range(len(lines)):
            if not take(range(i, i + 1)):
                break
    result = _join(lines, keep)
    while result and count_tokens(result) > max_tokens:
        keep.discard(max(keep))
        result = _join(lines, keep)
    return result


def _join(lines: list[str], keep: set[int]) -> str:
    out: list[str] = []
    previous = -1
    for i in sorted(keep):
        if i != previous + 1:
            out.append(f"⋮ ({i - previous - 1} lines)")
        out.append(lines[i])
        previous = i
    if keep and previous < len(lines) - 1:
        out.append(f"⋮ ({len(lines) - 1 - previous} lines)")
    return "\n".join(out)


@dataclass
class Fitted:
    text: str
    tokens: int
    chosen: list[dict[str, object]]
    dropped: list[dict[str, object]]
    clipped_tokens: int


def fit(candidates: list[Candidate], terms: set[str], limit: int, max_share: float = 0.5) -> Fitted:
    """Take candidates best first while they fit; one that does not (or that alone would take more than
    `max_share` of the limit) is compacted to what is left."""
    parts: list[tuple[Candidate, str, int, int]] = []  # candidate, rendered, tokens, full tokens
    dropped: list[dict[str, object]] = []
    used = 0
    clipped = 0
    for candidate in sorted(candidates, key=lambda c: -c.score):
        if limit - used < MIN_USEFUL_TOKENS:  # full: the rest is not even measured
            dropped.append(_describe(candidate, -1, 0))
            continue
        full = render(candidate, candidate.text)
        full_tokens = count_tokens(full)
        room = min(limit - used, int(limit * max_share))
        rendered, tokens = full, full_tokens
        if full_tokens > room:
            overhead = count_tokens(render(candidate, ""))
            body = compact(candidate.text, terms, room - overhead - 2, candidate.focus)
            rendered = render(candidate, body) if body else ""
            tokens = count_tokens(rendered) if rendered else 0
            if not rendered or tokens > room or tokens < MIN_USEFUL_TOKENS:
                dropped.append(_describe(candidate, full_tokens, 0))
                continue
            clipped += full_tokens - tokens
        parts.append((candidate, rendered, tokens, full_tokens))
        used += tokens
    text = "\n".join(p[1] for p in parts)
    # Per-part counts need not add up to the count of the whole; the whole is what the model pays for.
    total = count_tokens(text)
    while parts and total > limit:
        candidate, _, _, full_tokens = parts.pop()
        dropped.append(_describe(candidate, full_tokens, 0))
        text = "\n".join(p[1] for p in parts)
        total = count_tokens(text)
    chosen = [_describe(c, full, tokens) for c, _, tokens, full in parts]
    return Fitted(text, total if text else 0, chosen, dropped, clipped)


def _describe(candidate: Candidate, full_tokens: int, tokens: int) -> dict[str, object]:
    return {
        "source": candidate.source,
        "title": candidate.title,
        "score": round(candidate.score, 3),
        "tokens": tokens,
        "full_tokens": full_tokens,
        "compacted": 0 < tokens < full_tokens,
        "reasons": candidate.reasons[:6],
    }
