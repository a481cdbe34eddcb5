"""The coder's tools: their JSON schemas and one executor that turns every call into text for the model.

Every write goes through the EditGuard; a refusal is told to the model, counted and emitted, never applied.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from engine import events
from engine.workspace.commands import TestResult
from engine.workspace.guard import EditGuard, EditRefused

log = logging.getLogger(__name__)

READ_MAX_CHARS = 60_000
LIST_MAX_ENTRIES = 400
SEARCH_MAX_HITS = 80
NOTE_KINDS = ("Decision", "Constraint", "Todo", "Glossary", "Link")
SKIP_DIRS = {".git", "node_modules", "__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache", "dist"}


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


_STR = {"type": "string"}
TOOL_SCHEMAS = [
    _tool("list_files", "List files under a directory of the repository.", {"path": _STR}, []),
    _tool(
        "read_file",
        "Read a file (optionally a 1-based line range).",
        {"path": _STR, "start_line": {"type": "integer"}, "end_line": {"type": "integer"}},
        ["path"],
    ),
    _tool(
        "search",
        "Search file contents with a regular expression.",
        {"pattern": _STR, "path": _STR},
        ["pattern"],
    ),
    _tool(
        "edit_file",
        "Replace exactly one occurrence of old_text with new_text in a file.",
        {"path": _STR, "old_text": _STR, "new_text": _STR},
        ["path", "old_text", "new_text"],
    ),
    _tool("create_file", "Create or overwrite a file.", {"path": _STR, "content": _STR}, ["path", "content"]),
    _tool("delete_file", "Delete a file.", {"path": _STR}, ["path"]),
    _tool("run_tests", "Run the repository's test command and see the result.", {}, []),
    _tool(
        "remember",
        "Keep a lasting note about this repository for future jobs.",
        {"kind": {"type": "string", "enum": list(NOTE_KINDS)}, "text": _STR},
        ["kind", "text"],
    ),
]


class ToolBox:
    """Executes tool calls for one step against one worktree."""

    def __init__(
        self,
        guard: EditGuard,
        *,
        emit: Callable[[str, dict[str, Any]], Awaitable[Any]],
        run_tests: Callable[[], Awaitable[TestResult | None]],
        remember: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self.guard = guard
        self.emit = emit
        self._run_tests = run_tests
        self._remember = remember
        self.refused = 0
        self.last_test: TestResult | None = None

    async def call(self, name: str, raw_arguments: str) -> str:
        try:
            args = json.loads(raw_arguments or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as exc:
            return f"error: the arguments are not valid JSON ({exc})"
        handler = getattr(self, f"_t_{name}", None)
        if handler is None:
            names = ", ".join(t["function"]["name"] for t in TOOL_SCHEMAS)
            return f"error: unknown tool {name!r}; use one of {names}"
        try:
            return str(await handler(**args))
        except EditRefused as exc:
            self.refused += 1
            await self.emit(events.EDIT_REFUSED, {"path": exc.path, "reason": exc.reason})
            return f"error: refused — {exc.reason}. Nothing was changed."
        except TypeError as exc:
            return f"error: bad arguments for {name}: {exc}"
        except (FileNotFoundError, IsADirectoryError) as exc:
            return f"error: no such file: {exc.args[-1] if exc.args else ''}"
        except (OSError, re.error, ValueError) as exc:
            return f"error: {type(exc).__name__}: {exc}"

    async def _t_list_files(self, path: str = "") -> str:
        found: list[str] = []
        for entry in self.guard.walk(path, skip=frozenset(SKIP_DIRS)):
            if entry.kind == "truncated" or len(found) >= LIST_MAX_ENTRIES:
                return "\n".join(found) + f"\n[listing stopped at {len(found)} files]"
            found.append(entry.rel)
        return "\n".join(found) or "(no files)"

    async def _t_read_file(
        self, path: str, start_line: int | None = None, end_line: int | None = None
    ) -> str:
        text = self.guard.read(path)
        if start_line or end_line:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[max(0, (start_line or 1) - 1) : end_line or len(lines)])
        if len(text) > READ_MAX_CHARS:
            return text[:READ_MAX_CHARS] + "\n[truncated; read a line range for the rest]"
        return text

    async def _t_search(self, pattern: str, path: str = "") -> str:
        regex = re.compile(pattern)
        listing = await self._t_list_files(path)
        hits: list[str] = []
        for rel in listing.splitlines():
            if rel.startswith("["):
                continue
            try:
                text = self.guard.read(rel)
            except (EditRefused, OSError):
                continue
            for number, line in enumerate(text.splitlines(), 1):
                if regex.search(line):
                    hits.append(f"{rel}:{number}: {line[:200]}")
                    if len(hits) >= SEARCH_MAX_HITS:
                        return "\n".join(hits) + "\n[more matches not shown]"
        return "\n".join(hits) or "no matches"

    async def _t_edit_file(self, path: str, old_text: str, new_text: str) -> str:
        self.guard.check(path)  # refuse before revealing anything about the file
        text = self.guard.read(path)
        count = text.count(old_text) if old_text else 0
        if count == 0:
            return "error: old_text was not found in " + path + closest_match(text, old_text)
        if count > 1:
            return f"error: old_text occurs {count} times in {path}; include more lines so it is unique"
        self.guard.write(path, text.replace(old_text, new_text, 1))
        return f"edited {path}"

    async def _t_create_file(self, path: str, content: str) -> str:
        rel = self.guard.write(path, content)
        return f"wrote {rel} ({len(content)} characters)"

    async def _t_delete_file(self, path: str) -> str:
        return f"deleted {self.guard.delete(path)}"

    async def _t_run_tests(self) -> str:
        result = await self._run_tests()
        if result is None:
            return "this repository has no test command configured or detected"
        self.last_test = result
        verdict = "PASSED" if result.passed else f"FAILED (exit {result.exit_code})"
        return f"$ {result.command}\n{verdict}\n{result.tail(80)}"

    async def _t_remember(self, kind: str, text: str) -> str:
        if kind not in NOTE_KINDS:
            return f"error: kind must be one of {', '.join(NOTE_KINDS)}"
        if not text.strip():
            return "error: the note is empty"
        await self._remember(kind, text.strip()[:2000])
        return "noted"


def closest_match(text: str, wanted: str) -> str:
    """The span of `text` most like `wanted`, so the model can copy the real text."""
    lines = text.splitlines()
    size = max(1, len(wanted.splitlines()))
    best, best_ratio = "", 0.0
    for start in range(max(1, len(lines) - size + 1)):
        window = "\n".join(lines[start : start + size])
        ratio = difflib.SequenceMatcher(None, window, wanted).quick_ratio()
        if ratio > best_ratio:
            best, best_ratio = window, difflib.SequenceMatcher(None, window, wanted).ratio()
    if not best or best_ratio < 0.3:
        return ". No similar text found; read the file first."
    return f". The closest text in the file is:\n{best}"
