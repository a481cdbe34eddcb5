"""One file into index material: symbols (Python from its outline, other code through tree-sitter, the rest
by a light regex) and chunks."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.context.python_outline import outline
from engine.context.syntax import language_for, syntax_symbols
from engine.context.tokenize import count_terms

MAX_FILE_BYTES = 1024 * 1024
CHUNK_MAX_LINES = 80

_BINARY_SUFFIXES_TEXT = """
    .png .jpg .jpeg .gif .ico .webp .bmp .pdf .zip .gz .tgz .bz2 .xz .7z .tar .jar .war .whl .egg .so .dll
    .dylib .exe .bin .o .a .pyc .pyo .class .woff .woff2 .ttf .otf .eot .mp3 .mp4 .mov .avi .wav .ogg .sqlite
    .db .lock .min.js .map"""
_BINARY_SUFFIXES = frozenset(_BINARY_SUFFIXES_TEXT.split())
_DEFINITION = re.compile(
    r"^[ \t]*(?:export[ \t]+)?(?:default[ \t]+)?(?:pub(?:\([^)]*\))?[ \t]+)?(?:async[ \t]+)?(?:static[ \t]+)?"
    r"(?:(?:public|private|protected|internal|abstract|final|override)[ \t]+)*"
    r"(function\*?|class|interface|struct|enum|trait|impl|fn|func|def|type|module|object|record)[ \t]+"
    r"([A-Za-z_$][\w$]*)",
    re.M,
)
_ARROW = re.compile(
    r"^[ \t]*(?:export[ \t]+)?(?:const|let|var)[ \t]+([A-Za-z_$][\w$]*)[ \t]*=[ \t]*(?:async[ \t]*)?\(", re.M
)
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+)$", re.M)


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    kind: str  # function, class, method, variable, or the keyword the fallback saw
    line: int
    end_line: int


@dataclass(slots=True)
class FileEntry:
    path: str
    digest: str
    lines: int
    symbols: list[Symbol] = field(default_factory=list)
    chunks: list[tuple[int, int]] = field(default_factory=list)  # 1-based inclusive line spans
    terms: dict[str, int] = field(default_factory=dict)
    length: int = 0
    imports: list[str] = field(default_factory=list)  # Python modules, relative ones with their leading dots


def is_indexable(path: str, size: int) -> bool:
    lowered = path.lower()
    return size <= MAX_FILE_BYTES and not any(lowered.endswith(s) for s in _BINARY_SUFFIXES)


def parse_file(root: Path, path: str) -> FileEntry | None:
    """The entry for `path` under `root`, or None for a file that is binary, too big, gone, or a link.

    A symlink is never followed: the repository is someone else's, and `config.py -> /proc/self/environ`
    would put the worker's environment into the index and from there into a prompt."""
    full = root / path
    try:
        if full.is_symlink() or not full.resolve().is_relative_to(root.resolve()):
            return None
        data = full.read_bytes()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop on the way
        return None
    if len(data) > MAX_FILE_BYTES or b"\0" in data[:8192]:
        return None
    text = data.decode("utf-8", errors="replace")
    line_count = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    imports: list[str] = []
    if path.endswith((".py", ".pyi")):
        found = outline(text)
        symbols = [Symbol(*definition) for definition in found.definitions]
        boundaries, imports = found.boundaries, found.imports
    elif path.endswith((".md", ".rst", ".txt")):
        symbols, boundaries = _headings(text)
    else:
        symbols, boundaries = _code_symbols(path, data, text)
    terms = count_terms(text)
    return FileEntry(
        path=path,
        digest=hashlib.sha1(data).hexdigest(),
        lines=line_count,
        symbols=symbols,
        chunks=chunk_spans(line_count, boundaries),
        terms=terms,
        length=sum(terms.values()),
        imports=imports,
    )


def parse_many(root: str, paths: list[str]) -> list[FileEntry]:
    """A batch for a worker process (plain arguments, so it pickles)."""
    base = Path(root)
    return [entry for entry in (parse_file(base, p) for p in paths) if entry is not None]


def _code_symbols(path: str, data: bytes, text: str) -> tuple[list[Symbol], list[int]]:
    language = language_for(path)
    found = syntax_symbols(data, language) if language else None
    if found is None:
        return _fallback_symbols(text)
    definitions, boundaries = found
    return [Symbol(name, kind, start, end) for name, kind, start, end in definitions], boundaries


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _fallback_symbols(text: str) -> tuple[list[Symbol], list[int]]:
    found: list[tuple[int, str, str]] = []
    for match in _DEFINITION.finditer(text):
        found.append((match.start(), match.group(2), match.group(1).rstrip("*")))
    for match in _ARROW.finditer(text):
        found.append((match.start(), match.group(1), "function"))
    found.sort()
    lines = [_line_of(text, offset) for offset, _, _ in found]
    symbols = [Symbol(name, kind, line, line) for (_, name, kind), line in zip(found, lines, strict=True)]
    return symbols, lines


def _headings(text: str) -> tuple[list[Symbol], list[int]]:
    lines = [_line_of(text, m.start()) for m in _HEADING.finditer(text)]
    return [], lines


def chunk_spans(
    line_count: int, boundaries: list[int], max_lines: int = CHUNK_MAX_LINES
) -> list[tuple[int, int]]:
    """Spans that start at definitions where possible, short neighbours merged, long ones windowed."""
    if line_count <= 0:
        return []
    starts = sorted({1, *(b for b in boundaries if 1 <= b <= line_count)})
    segments = [(s, (starts[i + 1] - 1) if i + 1 < len(starts) else line_count) for i, s in enumerate(starts)]
    windows: list[tuple[int, int]] = []
    for start, end in segments:
        while end - start + 1 > max_lines:
            windows.append((start, start + max_lines - 1))
            start += max_lines
        windows.append((start, end))
    merged: list[tuple[int, int]] = []
    for start, end in windows:
        if merged and end - merged[-1][0] + 1 <= max_lines // 2:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged
