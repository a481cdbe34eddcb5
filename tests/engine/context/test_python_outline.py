"""The outline read without a syntax tree is the one `ast` gives: on tricky code, on the standard library."""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import pytest

from engine.context.python_outline import Definition, Outline, outline


def ast_outline(source: str) -> Outline:
    """The reference: what the index took from `ast.parse` before (top-level statements, methods, imports)."""
    tree = ast.parse(source)
    definitions: list[Definition] = []
    boundaries: list[int] = []
    imports: list[str] = []

    def first_line(node: ast.stmt) -> int:
        return min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])

    for node in tree.body:
        if isinstance(node, ast.Import):
            imports.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            imports.append(base)
            imports.extend(f"{base}.{a.name}" if node.module else base + a.name for a in node.names)
        start, end = first_line(node), node.end_lineno or node.lineno
        boundaries.append(start)
        if isinstance(node, ast.ClassDef):
            definitions.append(Definition(node.name, "class", start, end))
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    boundaries.append(first_line(item))
                    definitions.append(Definition(item.name, "method", item.lineno, item.end_lineno or 0))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            definitions.append(Definition(node.name, "function", start, end))
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            definitions.extend(Definition(name, "variable", start, end) for name in names)
    return Outline(definitions, sorted(set(boundaries)), list(dict.fromkeys(imports)))


def read(source: str) -> Outline:
    """The outline under test, its boundaries as a set (`x = 1; y = 2` is two statements on one line)."""
    found = outline(source)
    return found._replace(boundaries=sorted(set(found.boundaries)))


TRICKY = '''#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""Module docstring with code in it:

def not_a_function():
    pass
class NotAClass: ...
"""
from __future__ import annotations
import os, sys as system
import json; import re
from . import sibling
from ..pkg.mod import (
    first,
    second as other,  # a comment with a quote: "
)
from pkg \\
    import (third)
from x import *

TAX_RATE = 0.2
a = b = c = 3
d, e = f = (1, 2)
g: int = 4
h: "Alias"
i += 1
j = k == 2
items = [
x for x in range(3)
]
text = f"{os.sep!r} {'}'} {{not a bracket"
raw = r"a \\" still a string " + 'and "this" too'
blob = b"""
class Hidden:
"""
long_line = 1 + \\
2
x = 1; y: int = 2; z = 3


@decorator
@other.decorator(
    argument="def fake(): pass",
)
def decorated(
    value: int,
) -> int:
    """Docstring."""
    return value  # trailing comment

# a comment between definitions


async def fetch():
    await thing()


class Invoice(
    Base,
    metaclass=Meta,
):
    """A class docstring with a quote ' in it."""

    rate = 3

    @property
    def total(self):
        return 1

    async def send(self): ...

    class Inner:
        def not_a_method_of_invoice(self):
            pass

    if sys.version_info > (3, 8):
        def conditional(self):
            pass

    def last(self):
        """
def in_a_string():
"""
        return [
    1,
        ]


class OneLiner: pass


class Tabbed:
\tdef tab_method(self):
\t\treturn 1


if __name__ == "__main__":
    main()
else:
    pass
try:
    import fast
except ImportError:
    fast = None
finally:
    pass
'''


def test_tricky_code_outlines_as_ast_does() -> None:
    assert read(TRICKY) == ast_outline(TRICKY)


def test_what_the_tricky_code_defines() -> None:
    found = {(d.name, d.kind) for d in outline(TRICKY).definitions}
    assert {("decorated", "function"), ("fetch", "function"), ("Invoice", "class")} <= found
    assert {("total", "method"), ("send", "method"), ("last", "method"), ("tab_method", "method")} <= found
    assert {(name, "variable") for name in ("a", "b", "c", "f", "y", "TAX_RATE")} <= found
    hidden = {"not_a_function", "NotAClass", "Hidden", "fake", "in_a_string", "not_a_method_of_invoice"}
    assert not hidden & {d.name for d in outline(TRICKY).definitions}
    assert {"conditional", "d", "e", "i", "Inner"}.isdisjoint(d.name for d in outline(TRICKY).definitions)


def test_windows_line_endings_give_the_same_lines() -> None:
    crlf = TRICKY.replace("\n", "\r\n")
    assert read(crlf) == ast_outline(crlf)


def test_code_ast_rejects_still_gets_an_outline() -> None:
    python2 = 'print "hello"\n\ndef old(x):\n    exec "x = 1"\n\nclass Legacy:\n    def method(self): pass\n'
    found = outline(python2)
    assert [(d.name, d.kind, d.line) for d in found.definitions] == [
        ("old", "function", 3),
        ("Legacy", "class", 6),
        ("method", "method", 7),
    ]
    unterminated = 'x = """never closed\n\ndef inside(): pass\n'
    assert [d.name for d in outline(unterminated).definitions] == ["x"]
    assert outline("") == Outline([], [], [])


def _standard_library_sample(count: int) -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p for p in stdlib.glob("**/*.py") if "site-packages" not in p.parts and "__pycache__" not in p.parts
    )
    return files[:: max(1, len(files) // count)]


@pytest.mark.parametrize("chunk", range(4))
def test_standard_library_outlines_as_ast_does(chunk: int) -> None:
    """Every fourth file of an evenly spread sample: real code of every era and style (the whole standard
    library and site-packages, 13,353 files, differed in one: `(pars): bool = True`, a parenthesised name)."""
    mismatched = []
    for path in _standard_library_sample(240)[chunk::4]:
        source = path.read_bytes().decode("utf-8", errors="replace")
        try:
            expected = ast_outline(source)
        except SyntaxError:  # the test suite's deliberately broken files
            continue
        if read(source) != expected:
            mismatched.append(str(path))
    assert mismatched == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "hostile",
    [
        "from " + "." * 500_000,  # each split of dots between the package and the module tried once: hours
        "from" + " " * 500_000 + "x",
        "from x" + " \\\n" * 200_000,
        "class A(" + "(" * 500_000 + ":\n    def f(self): pass\n",
        '"""' * 300_000,
        "a = " * 200_000 + "1",
        "@d\n" * 200_000 + "def f(): pass\n",
    ],
    ids=["dots", "spaces", "continuations", "brackets", "quotes", "targets", "decorators"],
)
def test_a_hostile_file_costs_one_pass(hostile: str) -> None:
    """The repository is someone else's: a megabyte crafted against a regular expression must not stall the
    index (a quadratic pattern took 3.6 s for 20,000 dots, and grows with the square)."""
    assert isinstance(outline(hostile), Outline)
