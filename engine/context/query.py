"""What an issue's text says about where to look: its terms, the paths and stack-trace frames it names (links
to a file on GitHub included), and the identifiers (names in backticks, calls, snake_case, camelCase, dotted
paths) it mentions."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from engine.context.tokenize import tokenize

MAX_QUERY_TERMS = 64

_FRAME_PY = re.compile(r'File "([^"]+)", line (\d+)(?:, in ([A-Za-z_]\w*))?')
# Paths start where a token starts: from every position inside a long token the search would scan to its
# end again, and an issue (or a CI log in a task) is text anyone can write.
_PATH_LINE = re.compile(r"(?<![\w./\\-])([\w./\\-]+\.[A-Za-z]{1,5}):(\d+)")
_PATH = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.[A-Za-z][A-Za-z0-9]{0,4})(?![\w/])")
_IDENTIFIER = re.compile(
    r"`([^`\s]+)`|\b([A-Za-z_]\w*)\(|\b([a-z]+(?:_[a-z0-9]+)+|_\w+|[a-z]+[A-Z]\w*|[A-Z][a-z0-9]+[A-Z]\w*)\b"
)
# A link to a file on GitHub (`…/blob/<ref>/path/to/file.py#L12-L20`) names the file, and often the line.
_BLOB_URL = re.compile(r"github\.com/[\w.-]++/[\w.-]++/(?:blob|tree)/[\w.-]++/([\w./-]++)(?:#L(\d+))?")
_DOTTED = re.compile(r"\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)\b")
_PROSE_EXTENSIONS = frozenset({"e.g", "i.e", "etc"})


@dataclass
class QueryHints:
    terms: list[str]
    title_terms: set[str] = field(default_factory=set)  # the first line's: an issue's title says most
    paths: set[str] = field(default_factory=set)
    frames: list[tuple[str, int]] = field(default_factory=list)
    identifiers: set[str] = field(default_factory=set)


def parse_query(query: str) -> QueryHints:
    title = next((line for line in query.splitlines() if line.strip()), "")
    hints = QueryHints(terms=_query_terms(query, title), title_terms=set(tokenize(title)))
    for match in _FRAME_PY.finditer(query):
        hints.frames.append((_normal(match.group(1)), int(match.group(2))))
        if match.group(3) and match.group(3) != "<module>":
            hints.identifiers.add(match.group(3).lower())
    for match in _PATH_LINE.finditer(query):
        hints.frames.append((_normal(match.group(1)), int(match.group(2))))
    for match in _BLOB_URL.finditer(query):
        path = match.group(1).rstrip(".")  # a link that ends a sentence
        hints.paths.add(path)
        if match.group(2):
            hints.frames.append((path, int(match.group(2))))
    for match in _PATH.finditer(query):
        if match.group(1).lower() not in _PROSE_EXTENSIONS:
            hints.paths.add(_normal(match.group(1)))
    for match in _IDENTIFIER.finditer(query):
        word = next(g for g in match.groups() if g)
        for part in re.split(r"[.:]+", word.strip("()")):
            if re.fullmatch(r"[A-Za-z_]\w*", part) and len(part) > 2:
                hints.identifiers.add(part.lower())
    for match in _DOTTED.finditer(query):
        parts = match.group(1).split(".")
        hints.paths.add("/".join(parts) + ".py")  # `engine.jobs` may be the module engine/jobs.py
        hints.identifiers.update(p.lower() for p in parts[1:] if len(p) > 2)
    return hints


def _normal(path: str) -> str:
    return path.replace("\\", "/").lstrip("./") if not path.startswith("/") else path.replace("\\", "/")


def _query_terms(query: str, title: str) -> list[str]:
    """The title's terms, then the text's most frequent others, MAX_QUERY_TERMS in all: a long issue (a
    traceback, a code block, a log) repeats many words more often than its title names its subject once."""
    first = list(dict.fromkeys(tokenize(title)))[:MAX_QUERY_TERMS]
    taken = set(first)
    others = [term for term, _ in Counter(tokenize(query)).most_common() if term not in taken]
    return first + others[: MAX_QUERY_TERMS - len(first)]
