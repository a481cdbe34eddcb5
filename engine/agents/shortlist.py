"""The planner picks the files to open from the context engine's shortlist: paths with symbol outlines (not
whole files), one short call, answered as JSON. A pick outside the shortlist is ignored, so the answer can
reorder the engine's candidates but never add a path the engine did not find."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

PICK_MAX_TOKENS = 400
MAX_PICKS = 5
INSTRUCTIONS = (
    "You are choosing which files to open before fixing an issue. Below are the candidate files the search "
    "found, best first, each with the names it defines (and their lines). Pick the files most likely to need "
    f"a change, most likely first, at most {MAX_PICKS}. Answer with one JSON object only: "
    '{"files": ["path", ...]}, using the paths exactly as listed.'
)


class ChatModel(Protocol):
    async def chat(self, *, role: str, messages: list[dict[str, Any]], max_tokens: int = ...) -> Any: ...


def shortlist_prompt(task: str, outlines: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    listing = "\n".join(f"{i}. {path}\n{outline}" if outline else f"{i}. {path}" for i, (path, outline) in
                        enumerate(outlines, start=1))  # fmt: skip
    return [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": f"# Issue\n{task}\n\n# Candidate files\n{listing}"},
    ]


def parse_picks(text: str | None, candidates: Sequence[str]) -> list[str]:
    """The listed paths the answer names, in order: its JSON `files`, else the paths its prose mentions."""
    known = set(candidates)
    named: list[str] = []
    if text:
        match = re.search(r"\{.*\}", text, flags=re.S)
        try:
            files = json.loads(match.group(0)).get("files", []) if match else []
            named = [str(f).strip().lstrip("./") for f in files if isinstance(f, str)]
        except (json.JSONDecodeError, AttributeError):
            named = []
        if not named:  # prose: the listed paths it mentions, where they first appear
            mentioned = sorted((text.find(p), p) for p in candidates if p in text)
            named = [p for _, p in mentioned]
    picks = [p for p in dict.fromkeys(named) if p in known]
    return picks[:MAX_PICKS]


async def pick_files(llm: ChatModel, *, task: str, outlines: Sequence[tuple[str, str]]) -> list[str]:
    """The shortlisted paths the model would open first; [] when it answers nothing usable."""
    if not outlines:
        return []
    reply = await llm.chat(
        role="planner", messages=shortlist_prompt(task, outlines), max_tokens=PICK_MAX_TOKENS
    )
    picks = parse_picks(getattr(reply, "content", None), [path for path, _ in outlines])
    log.info("planner picked %d of %d shortlisted files", len(picks), len(outlines))
    return picks


def with_picks_first(ranked: Sequence[str], picks: Sequence[str]) -> list[str]:
    """The ranking with the picked files moved to the front, in the order they were picked."""
    chosen = [p for p in picks if p in set(ranked)]
    return chosen + [p for p in ranked if p not in set(chosen)]
