"""The coder's tools: their JSON schemas and one executor that turns every call into text for the model.

The model's calls are treated as an attacker's: arguments are checked against the schemas, every path goes
through the EditGuard, and a refusal is told to the model, counted and emitted, never applied and never a
failed job. File work runs in a worker thread with bounds on size, output and time (search.py, filetext.py),
so no call can hold up the event loop the worker's other jobs share.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from engine import events, tracing
from engine.agents.filetext import closest_match, human_size, is_binary, read_range
from engine.agents.search import SKIP_DIRS, search_files
from engine.workspace.commands import TestResult
from engine.workspace.guard import EditGuard, EditRefused, FileTooLarge

__all__ = ["SKIP_DIRS", "TOOL_SCHEMAS", "ToolBox", "closest_match"]

log = logging.getLogger(__name__)

LIST_MAX_ENTRIES = 400
LIST_MAX_SCANNED = 20_000  # directory entries looked at for one listing
EDIT_MAX_BYTES = 1024 * 1024  # edit_file reads, replaces and writes the whole file
NOTE_KINDS = ("Decision", "Constraint", "Todo", "Glossary", "Link")


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
_INT = {"type": "integer"}
TOOL_SCHEMAS = [
    _tool("list_files", "List files under a directory of the repository.", {"path": _STR}, []),
    _tool(
        "read_file",
        "Read a file, or the 1-based line range start_line..end_line of it. A long file comes back in "
        "parts; the answer says which lines it holds and where to read on.",
        {"path": _STR, "start_line": _INT, "end_line": _INT},
        ["path"],
    ),
    _tool(
        "search",
        "Search file contents with a regular expression (RE2 syntax: no backreferences or lookaround; "
        "^ and $ match at each line). path: a directory or file to search in.",
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
# Offered only on a job that answers a review's numbered comments (engine.pipeline.review).
REVIEW_TOOL = _tool(
    "review_comment",
    "Say whether your change addresses numbered review comment `number`, with a one-sentence reply the "
    "reviewer will read in its thread (what you changed, or why you did not change anything).",
    {"number": _INT, "addressed": {"type": "boolean"}, "reply": _STR},
    ["number", "addressed", "reply"],
)
_SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in [*TOOL_SCHEMAS, REVIEW_TOOL]}


class ToolBox:
    """Executes tool calls for one step against one worktree."""

    def __init__(
        self,
        guard: EditGuard,
        *,
        emit: Callable[[str, dict[str, Any]], Awaitable[Any]],
        run_tests: Callable[[], Awaitable[TestResult | None]],
        remember: Callable[[str, str], Awaitable[None]],
        review: Callable[[int, bool, str], Awaitable[str]] | None = None,
    ) -> None:
        self.guard = guard
        self._review = review
        self.schemas = [*TOOL_SCHEMAS, REVIEW_TOOL] if review is not None else TOOL_SCHEMAS
        self.emit = emit
        self._run_tests = run_tests
        self._remember = remember
        self.refused = 0
        self.last_test: TestResult | None = None

    async def call(self, name: str, raw_arguments: str) -> str:
        """The answer the model is given; traced as `execute_tool {name}` (without the arguments)."""
        tool = name if name in _SCHEMAS else "unknown"
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool}
        with tracing.span(f"execute_tool {tool}", attributes) as span:
            answer = await self._call(name, raw_arguments)
            if answer.startswith("error:"):
                span.error("the tool call was refused or failed")
            return answer

    async def _call(self, name: str, raw_arguments: str) -> str:
        try:
            args = json.loads(raw_arguments or "{}")
        except (ValueError, RecursionError) as exc:
            return f"error: the arguments are not valid JSON ({type(exc).__name__})"
        handler = getattr(self, f"_t_{name}", None)
        offered = [t["function"]["name"] for t in self.schemas]
        if handler is None or name not in offered:
            return f"error: unknown tool {name!r}; use one of {', '.join(offered)}"
        args, problem = _arguments(name, args)
        if problem:
            return f"error: bad arguments for {name}: {problem}"
        path = str(args.get("path", ""))
        try:
            return str(await handler(**args))
        except EditRefused as exc:
            self.refused += 1
            await self.emit(events.EDIT_REFUSED, {"path": exc.path, "reason": exc.reason})
            return f"error: refused — {exc.reason}. Nothing was changed."
        except FileTooLarge as exc:
            size, limit = human_size(exc.size), human_size(exc.limit)
            return f"error: {exc.rel} is {size}; {name} works on files up to {limit}. Nothing was changed."
        except FileNotFoundError:
            return f"error: no such file: {path}"
        except IsADirectoryError:
            return f"error: {path} is a directory"
        except NotADirectoryError:
            return f"error: a part of {path} is a file, not a directory"
        except OSError as exc:
            return f"error: {path}: {exc.strerror or type(exc).__name__}"
        except ValueError as exc:
            return f"error: {type(exc).__name__}: {exc}"

    # -- the tools (file work in a thread: it blocks on the disk) -------------------------------------

    async def _t_list_files(self, path: str = "") -> str:
        return await asyncio.to_thread(self._list_files, path)

    async def _t_read_file(
        self, path: str, start_line: int | None = None, end_line: int | None = None
    ) -> str:
        return await asyncio.to_thread(self._read_file, path, start_line, end_line)

    async def _t_search(self, pattern: str, path: str = "") -> str:
        return await asyncio.to_thread(search_files, self.guard, pattern, path)

    async def _t_edit_file(self, path: str, old_text: str, new_text: str) -> str:
        return await asyncio.to_thread(self._edit_file, path, old_text, new_text)

    async def _t_create_file(self, path: str, content: str) -> str:
        rel = await asyncio.to_thread(self.guard.write, path, content)
        return f"wrote {rel} ({len(content)} characters)"

    async def _t_delete_file(self, path: str) -> str:
        return f"deleted {await asyncio.to_thread(self.guard.delete, path)}"

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

    async def _t_review_comment(self, number: int, addressed: bool, reply: str) -> str:
        assert self._review is not None  # offered only with a ledger
        return await self._review(number, addressed, reply)

    def _list_files(self, path: str) -> str:
        found: list[str] = []
        for entry in self.guard.walk(path, skip=SKIP_DIRS, limit=LIST_MAX_SCANNED):
            if entry.kind == "truncated":
                found.append(f"[listing stopped after {LIST_MAX_SCANNED:,} entries; list a subdirectory]")
                break
            if len(found) >= LIST_MAX_ENTRIES:
                found.append(f"[listing stopped at {LIST_MAX_ENTRIES} files; list a subdirectory]")
                break
            suffix = {"link": f" -> {entry.target}", "other": " (not a regular file)"}.get(entry.kind, "")
            found.append(entry.rel + suffix)
        return "\n".join(found) or "(no files)"

    def _read_file(self, path: str, start_line: int | None, end_line: int | None) -> str:
        with self.guard.open_file(path) as opened:
            if is_binary(opened.file.read(8192)):
                return f"{opened.rel} is a binary file ({human_size(opened.size)}); not shown"
            opened.file.seek(0)
            return read_range(opened.file, rel=opened.rel, size=opened.size, start=start_line, end=end_line)

    def _edit_file(self, path: str, old_text: str, new_text: str) -> str:
        self.guard.check(path)  # refuse before revealing anything about the file
        with self.guard.open_file(path, for_write=True) as opened:
            if opened.size > EDIT_MAX_BYTES:
                raise FileTooLarge(opened.rel, opened.size, EDIT_MAX_BYTES)
            raw = opened.file.read(EDIT_MAX_BYTES + 1)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return f"error: {path} is not UTF-8 text; edit_file would corrupt it"
        if old_text and old_text not in text and "\r\n" in text and "\r\n" not in old_text:
            # The model copied a CRLF file's lines without their \r: edit it in the file's own line endings.
            old_text, new_text = old_text.replace("\n", "\r\n"), new_text.replace("\n", "\r\n")
        if not old_text:
            return "error: old_text is empty; to write a whole file use create_file"
        count = text.count(old_text)
        if count == 0:
            return "error: old_text was not found in " + path + closest_match(text, old_text)
        if count > 1:
            return f"error: old_text occurs {count} times in {path}; include more lines so it is unique"
        self.guard.write(path, text.replace(old_text, new_text, 1))
        return f"edited {path}"


def _arguments(name: str, args: Any) -> tuple[dict[str, Any], str]:
    """`args` for the tool `name` without the optional ones given as null, and what is wrong with them by
    the tool's schema ("" when nothing)."""
    if not isinstance(args, dict):
        return {}, "the arguments must be a JSON object"
    schema = _SCHEMAS[name]
    args = {key: value for key, value in args.items() if value is not None or key in schema["required"]}
    problems = [f"{key} is missing" for key in schema["required"] if key not in args]
    problems += [f"there is no argument {key!r}" for key in args if key not in schema["properties"]]
    for key, value in args.items():
        wanted = schema["properties"].get(key, {}).get("type")
        if wanted == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
            problems.append(f"{key} must be an integer")
        if wanted == "string" and not isinstance(value, str):
            problems.append(f"{key} must be a string")
        if wanted == "boolean" and not isinstance(value, bool):
            problems.append(f"{key} must be true or false")
    return args, "; ".join(problems)
