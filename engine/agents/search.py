"""The coder's `search`: a regular expression over the repository's files, bounded in time, bytes and output.

Patterns run on RE2 (google-re2), whose matching time grows with the text, never exponentially with the
pattern: `(a+)+$` costs what `a+$` costs. RE2 also releases the GIL while it matches, so a search in a
worker thread leaves the event loop free. A pattern RE2 cannot run (backreferences, lookaround) or too long
is searched for as literal text, and the answer says so. Python's `re` is never used on the model's
patterns: it backtracks, holds the GIL, and cannot be interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import re2

from engine.agents.filetext import human_size, is_binary
from engine.workspace.guard import EditGuard, EditRefused, Entry
from engine.workspace.paths import split_path

SEARCH_MAX_HITS = 80
SEARCH_MAX_CHARS = 12_000
SEARCH_SECONDS = 5.0
SEARCH_MAX_BYTES = 64 * 1024 * 1024  # read in all, per search
SEARCH_FILE_MAX_BYTES = 2 * 1024 * 1024  # larger files are skipped (read them in ranges)
SEARCH_MAX_ENTRIES = 50_000  # directory entries looked at
PATTERN_MAX_CHARS = 1_000
HIT_MAX_CHARS = 200
# Neither list_files nor search goes into these (tools and caches, never the repository's own code).
SKIP_DIRS = frozenset(
    {".git", "node_modules", "__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache", "dist"}
)


def compile_pattern(pattern: str) -> tuple[re2._Regexp, str]:
    """The compiled pattern (multi-line: ^ and $ match at each line) and a note for the model, if any."""
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 32 * 1024 * 1024
    if len(pattern) <= PATTERN_MAX_CHARS:
        try:
            return re2.compile(b"(?m)" + pattern.encode("utf-8", "surrogatepass"), options), ""
        except re2.error as exc:
            why = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
            note = f"[the pattern is not one RE2 runs ({why}); searched for it as literal text]"
    else:
        note = f"[the pattern is over {PATTERN_MAX_CHARS:,} characters; searched for it as literal text]"
    options.literal = True
    return re2.compile(pattern.encode("utf-8", "surrogatepass"), options), note


def search_files(
    guard: EditGuard, pattern: str, path: str = "", *, clock: Callable[[], float] = time.monotonic
) -> str:
    regex, note = compile_pattern(pattern)
    give_up = clock() + SEARCH_SECONDS
    hits: list[str] = []
    chars = scanned = too_big = 0
    stopped = ""
    for entry in _files(guard, path):
        if entry.kind == "truncated":
            stopped = f"looked at {SEARCH_MAX_ENTRIES:,} entries; search a subdirectory with path="
            break
        if clock() > give_up:
            stopped = f"the search took over {SEARCH_SECONDS:.0f} s; narrow it with path="
            break
        if scanned > SEARCH_MAX_BYTES:
            stopped = f"read {human_size(SEARCH_MAX_BYTES)} of files; narrow the search with path="
            break
        if entry.kind != "file":
            continue
        try:
            with guard.open_file(entry.rel) as opened:
                if opened.size > SEARCH_FILE_MAX_BYTES:
                    too_big += 1
                    continue
                data = opened.file.read(SEARCH_FILE_MAX_BYTES)
        except (EditRefused, OSError):
            continue
        scanned += len(data)
        if is_binary(data):
            continue
        for line_no, line in _matching_lines(regex, data):
            hit = f"{entry.rel}:{line_no}: {line}"
            if len(hits) >= SEARCH_MAX_HITS or chars + len(hit) > SEARCH_MAX_CHARS:
                stopped = f"{len(hits)} matches shown, more not shown; narrow the pattern or path="
                break
            hits.append(hit)
            chars += len(hit) + 1
        if stopped:
            break
    notes = [note] if note else []
    if too_big:
        notes.append(f"[skipped {too_big} files over {human_size(SEARCH_FILE_MAX_BYTES)}]")
    if stopped:
        notes.append(f"[stopped: {stopped}]")
    return "\n".join([*hits, *notes]) if hits else "\n".join(["no matches", *notes])


def _files(guard: EditGuard, path: str) -> Iterator[Entry]:
    try:
        yield from guard.walk(path, skip=SKIP_DIRS, limit=SEARCH_MAX_ENTRIES)
    except NotADirectoryError:
        yield Entry("/".join(split_path(path)), "file")  # one file


def _matching_lines(regex: re2._Regexp, data: bytes) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line where a match starts; one search call per matching line."""
    pos, line_no, counted = 0, 1, 0
    while pos < len(data):
        match = regex.search(data, pos)
        if match is None:
            return
        start = match.start()
        line_no += data.count(b"\n", counted, start)
        counted = start
        begin = data.rfind(b"\n", 0, start) + 1
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        yield line_no, data[begin : min(end, begin + HIT_MAX_CHARS)].decode("utf-8", errors="replace")
        pos = end + 1
