"""Repository context for the prompts and memory notes: the one place that talks to engine.context.

The context engine chooses the context (its diagnostics go to a `context` event and the job); should it
fail, the fallback is a bounded file tree plus the files the task or step names, so the job goes on.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.agents.tools import SKIP_DIRS
from engine.context import ContextEngine
from engine.context.embeddings import LLMEmbedder
from engine.context.engine import OUTPUT_RESERVE_TOKENS
from engine.context.memory import MemoryStore
from engine.errors import JobCancelled
from engine.llm.client import LLMClient
from engine.llm.tokens import count_tokens
from engine.settings import Settings
from engine.store.jobs import JobStore

log = logging.getLogger(__name__)

TREE_MAX_ENTRIES = 300
FILE_MAX_CHARS = 12_000


@dataclass
class Context:
    text: str
    tokens: int
    diagnostics: dict[str, Any] = field(default_factory=dict)


async def gather_context(
    *,
    settings: Settings,
    store: JobStore,
    worktree: Path,
    repo: str,
    query: str,
    job_id: str,
    named_files: list[str] | None = None,
    llm: LLMClient | None = None,
    step_index: int | None = None,
    model: str | None = None,
) -> Context:
    """`llm`: the job's LLM client, through which embeddings are asked for (and billed) when configured;
    `model`: the one that reads the context, whose reported usage turns CONTEXT_BUDGET_TOKENS (its tokens)
    into the estimated tokens the pack may fill."""
    calibration = await store.token_calibration(model, repo) if model else None
    budget, reserve = settings.context_budget_tokens, OUTPUT_RESERVE_TOKENS
    if calibration is not None:  # both in estimated tokens, so that the pack is in the model's
        budget, reserve = calibration.limit(budget), calibration.limit(reserve)
    cache = (settings.workspace_dir or settings.data_dir / "work") / "context-cache"
    embedder = _embedder(settings, llm, step_index)
    try:
        engine = ContextEngine(
            cache, sessions=store.sessions, embedder=embedder, output_reserve_tokens=reserve
        )
        pack = await engine.build(
            repo_dir=worktree,
            repo=repo,
            query=query,
            budget_tokens=budget,
            job_id=job_id,
            named=named_files or (),
        )
    except JobCancelled:
        raise  # a cancel seen by an embeddings request's guard stops the job, not just the context
    except Exception:
        # A context engine bug must not fail the job: the fallback still gives the model a usable view.
        log.exception("context engine failed; using the file-tree fallback", extra={"job_id": job_id})
        return _fallback(worktree, query, named_files or [], budget)
    diagnostics = dict(pack.diagnostics)
    if calibration is not None:
        diagnostics["calibration"] = calibration.describe()
        diagnostics["budget_model_tokens"] = settings.context_budget_tokens
        diagnostics["model_tokens_expected"] = round(pack.tokens * calibration.ratio)
    return Context(pack.text, pack.tokens, diagnostics)


def _embedder(settings: Settings, llm: LLMClient | None, step_index: int | None) -> LLMEmbedder | None:
    """Embeddings join BM25 only when EMBEDDING_MODEL names a model the LLM endpoint serves."""
    if not settings.embedding_model or not settings.llm_configured or llm is None:
        return None
    return LLMEmbedder(llm, settings.embedding_model, step_index=step_index)


async def save_note(store: JobStore, *, repo: str, job_id: str, kind: str, text: str) -> None:
    await MemoryStore(store.sessions).add(repo=repo, job_id=job_id, kind=kind, text=text)


def _fallback(worktree: Path, query: str, named: list[str], budget_tokens: int) -> Context:

    tree = file_tree(worktree)
    mentioned = [p for p in tree if p in named or re.search(rf"(?<![\w/.]){re.escape(p)}(?![\w/])", query)]
    parts = ["## Files\n" + "\n".join(tree[:TREE_MAX_ENTRIES])]
    if len(tree) > TREE_MAX_ENTRIES:
        parts.append(f"[{len(tree) - TREE_MAX_ENTRIES} more files not listed]")
    used = count_tokens(parts[0])
    chosen: list[str] = []
    for rel in mentioned:
        path = worktree / rel
        if path.is_symlink() or not path.is_file():
            continue
        body = path.read_text(encoding="utf-8", errors="replace")[:FILE_MAX_CHARS]
        cost = count_tokens(body)
        if used + cost > budget_tokens:
            break
        used += cost
        chosen.append(rel)
        parts.append(f"## {rel}\n```\n{body}\n```")
    text = "\n\n".join(parts)
    return Context(
        text, used, {"engine": "fallback", "chosen": chosen, "considered": len(tree), "tokens": used}
    )


def file_tree(worktree: Path) -> list[str]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(worktree):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        found += [str((Path(dirpath) / n).relative_to(worktree)) for n in sorted(filenames)]
        if len(found) > TREE_MAX_ENTRIES * 4:
            break
    return found
