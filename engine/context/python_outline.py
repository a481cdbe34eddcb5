"""A Python file's outline without building its syntax tree: top-level statements, classes' methods, imports.

`ast.parse` turns every expression of a file into Python objects; it was three quarters of a cold index's
CPU, for an outline that needs where each top-level statement starts and ends. Python makes that cheap to
read: a top-level statement starts in column 0 outside any string and bracket. So comments and strings are
blanked first (one regex pass; a string that spans lines keeps its line breaks, so line numbers hold),
brackets are counted between candidate lines, and a method is a `def` at the indentation of its class's
body. For valid code the outline is the one ast gave (tests/engine/context/test_python_outline.py holds the
two side by side); for code ast rejects (Python 2, a half-written file) it is a best effort, not an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from keyword import kwlist
from typing import NamedTuple

_BLANKED = re.compile(
    r"""\#[^\n]*+
    | [rRbBuUfF]{0,2}(?:
        \"\"\"(?:[^"\\]++|\\.|"(?!""))*+(?:\"\"\"|\Z)
      | '''(?:[^'\\]++|\\.|'(?!''))*+(?:'''|\Z)
      | "(?:[^"\\\n]++|\\.)*+"?
      | '(?:[^'\\\n]++|\\.)*+'?
    )""",
    re.X | re.S,
)
_TOP_LEVEL = re.compile(r"^[^\s)\]}]", re.M)
_INDENTED = re.compile(r"^([ \t]+)\S", re.M)
_CONTINUATION = re.compile(r"(?:else|elif|except|finally)\b")
_DEFINITION = re.compile(r"(?:async[ \t]+)?(def|class)[ \t]+([A-Za-z_]\w*)")
_NAME = re.compile(r"[A-Za-z_]\w*")
_ANNOTATED = re.compile(r"([A-Za-z_]\w*)[ \t]*:(?!=)")
_ASSIGN = re.compile(r"(?<![=!<>:+\-*/%&|^@~])=(?!=)")
_IMPORT = re.compile(r"import[ \t]+([^;\n]+)")
# Possessive, with no two parts that can match the same characters: a hostile `from` followed by a
# megabyte of dots or spaces must cost one pass, not one per way of splitting it.
_FROM = re.compile(r"from[\s\\]++(\.*+)[\s\\]*+((?!import\b)[\w.]++)?[\s\\]*+import\b[\s\\]*+\(?([^;)]*+)")
_KEYWORDS = frozenset(kwlist)


class Definition(NamedTuple):
    name: str
    kind: str  # class, function, method, variable
    line: int  # first line, decorators included (a method's: its `def` line, as ast says)
    end_line: int


class Outline(NamedTuple):
    definitions: list[Definition]
    boundaries: list[int]  # first line (decorators included) of every top-level statement and method
    imports: list[str]  # top-level imports: modules as written, relative ones with their leading dots


class _Statement(NamedTuple):
    line: int  # first line, decorators included
    head_line: int  # the line after the decorators
    head: int  # offset of that line's first character
    text: str  # from the head to the statement's last non-blank character
    end_line: int


def outline(text: str) -> Outline:
    code = _BLANKED.sub(_blank, text)
    definitions: list[Definition] = []
    boundaries: list[int] = []
    imports: list[str] = []
    for statement in _statements(code, 0, len(code), 1, _TOP_LEVEL, 0):
        boundaries.append(statement.line)
        body = statement.text
        found = _DEFINITION.match(body)
        if found is None:
            # `import os; import sys`, `a = 1; b = 2`: simple statements that share a line
            simple = body.split(";") if ";" in body.partition("\n")[0] else [body]
            for part in simple:
                imported = _imported(part.lstrip())
                if imported is not None:
                    imports.extend(imported)
                    continue
                for name in _targets(part):
                    definitions.append(Definition(name, "variable", statement.line, statement.end_line))
            continue
        kind, name = found.groups()
        definitions.append(
            Definition(name, "class" if kind == "class" else "function", statement.line, statement.end_line)
        )
        if kind == "class":
            for first_line, method in _methods(code, statement):
                definitions.append(method)
                boundaries.append(first_line)
    return Outline(definitions, boundaries, list(dict.fromkeys(imports)))


def _blank(match: re.Match[str]) -> str:
    """A comment goes; a string becomes `""`, and one that spans lines keeps them, each starting with a
    space so that no line inside a string can look like the start of a statement."""
    literal = match.group()
    if literal[0] == "#":
        return ""
    return '"' + "\n " * literal.count("\n") + '"'


def _statements(
    code: str, begin: int, stop: int, line: int, starts: re.Pattern[str], indent: int
) -> Iterator[_Statement]:
    """The statements of `code[begin:stop]` whose first line `starts` matches (and `line` is begin's)."""
    offsets: list[int] = []
    depth = 0
    previous = begin
    count = code.count
    for match in starts.finditer(code, begin, stop):
        offset = match.start()
        depth += count("(", previous, offset) + count("[", previous, offset) + count("{", previous, offset)
        depth -= count(")", previous, offset) + count("]", previous, offset) + count("}", previous, offset)
        depth = max(depth, 0)  # a stray closer in broken code
        previous = offset
        if depth or _continued(code, offset) or _CONTINUATION.match(code, offset + indent):
            continue
        offsets.append(offset)
    decorated: int | None = None
    for i, offset in enumerate(offsets):
        line += code.count("\n", begin, offset)
        begin = offset
        end = offsets[i + 1] if i + 1 < len(offsets) else stop
        text = code[offset + indent : end].rstrip()
        if text.startswith("@"):
            decorated = line if decorated is None else decorated
            continue
        first = line if decorated is None else decorated
        decorated = None
        yield _Statement(first, line, offset + indent, text, line + text.count("\n"))


def _continued(code: str, offset: int) -> bool:
    """Whether the line before `offset` ends in a backslash (CRLF or not)."""
    before = code[max(0, offset - 3) : offset].rstrip("\r\n")
    return before.endswith("\\")


def _methods(code: str, statement: _Statement) -> Iterator[tuple[int, Definition]]:
    """Each method directly in a class's body, with its first line (decorators included)."""
    body = _body_start(code, statement.head, statement.head + len(statement.text))
    if body is None:
        return
    stop = statement.head + len(statement.text)
    indented = _INDENTED.search(code, body, stop)
    if indented is None:
        return
    indent = indented.group(1)
    line = statement.head_line + code.count("\n", statement.head, body)
    for method in _statements(code, body, stop, line, _at_indent(indent), len(indent)):
        found = _DEFINITION.match(method.text)
        if found is not None and found.group(1) == "def":
            yield method.line, Definition(found.group(2), "method", method.head_line, method.end_line)


def _body_start(code: str, head: int, stop: int) -> int | None:
    """Offset of the line after a class header's colon; None when the body is on the header's line."""
    depth = 0
    for i in range(head, stop):
        char = code[i]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == ":" and depth <= 0:
            newline = code.find("\n", i, stop)
            if newline < 0 or code[i + 1 : newline].strip():
                return None
            return newline + 1
    return None


@cache
def _at_indent(indent: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(indent) + r"(?=[^\s)\]}])", re.M)


def _targets(statement: str) -> list[str]:
    """The plain names a top-level assignment binds: `a = b = 1` → a, b; `x: int = 0` → x; `a, b = c = f()`
    → c (a tuple target binds names ast does not call the statement's)."""
    first = statement.partition("\n")[0].strip()
    annotated = _ANNOTATED.match(first)
    if annotated is not None:
        return [] if annotated.group(1) in _KEYWORDS else [annotated.group(1)]
    *targets, _value = _ASSIGN.split(first)
    return [t.strip() for t in targets if _NAME.fullmatch(t.strip()) and t.strip() not in _KEYWORDS]


def _imported(statement: str) -> list[str] | None:
    """`import a.b as c, d` → a.b, d; `from ..m import x` → ..m, ..m.x; `from . import y` → ., .y;
    None for a statement that imports nothing."""
    found = _FROM.match(statement)
    if found is not None:
        dots, module, names = found.groups()
        base = dots + (module or "")
        aliases = [n.split()[0] for n in names.replace("\\", " ").split(",") if n.strip()]
        return [base, *(f"{base}.{a}" if module else base + a for a in aliases)]
    found = _IMPORT.match(statement)
    if found is None:
        return None
    return [n.split()[0] for n in found.group(1).replace("\\", " ").split(",") if n.strip()]
