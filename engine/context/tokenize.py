"""The lexical tokenizer shared by the index and the queries: identifiers split at camelCase and snake_case.

`parseHTTPRequest_v2` yields `parsehttprequest_v2` itself plus `parse`, `http`, `request`, `v2`, so a query
that says "parse the request" finds it and one that names the identifier exactly ranks it higher still.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from functools import lru_cache

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_PATH_SPLIT = re.compile(r"[/\\._\-\s]+")

# Words too common in prose and code to say anything about where the answer is.
_STOPWORDS_TEXT = """
    a an and are as at be but by for from has have how i if in into is it its of on or so that the their
    then there these this to was we were what when where which while who why will with would you your should
    can could do does not no yes all any also more most some such than too very just only please need needs
    self cls none true false return def"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


@lru_cache(maxsize=200_000)
def split_identifier(word: str) -> tuple[str, ...]:
    """The word lowercased, followed by its camelCase / snake_case parts when it has more than one."""
    if word.isalpha() and (word.islower() or word.isupper() or word[1:].islower()):
        return (sys.intern(word.lower()),)  # one part: most words, and the quick way to say so
    lowered = word.lower().strip("_")
    if not lowered:
        return ()
    parts = [p.lower() for chunk in word.split("_") for p in _PARTS.findall(chunk)]
    if len(parts) <= 1:
        return (sys.intern(lowered),)
    return (sys.intern(lowered), *(sys.intern(p) for p in parts if len(p) > 1))


def count_terms(text: str) -> dict[str, int]:
    """Term frequencies of a text: each identifier and its parts, stop words dropped."""
    terms: dict[str, int] = {}
    get = terms.get
    for word, count in Counter(_WORD.findall(text)).items():
        for term in _terms_of(word):
            terms[term] = get(term, 0) + count
    return terms


@lru_cache(maxsize=200_000)
def _terms_of(word: str) -> tuple[str, ...]:
    return tuple(t for t in split_identifier(word) if t not in STOPWORDS and len(t) > 1)


def tokenize(text: str) -> list[str]:
    """The terms of a text in order (with repeats), as BM25 wants a document or a query."""
    out: list[str] = []
    for word in _WORD.findall(text):
        out.extend(_terms_of(word))
    return out


def path_terms(path: str) -> list[str]:
    """Words of a file path (`engine/context/RepoIndex.py` → engine, context, repo, index, py…)."""
    out: list[str] = []
    for piece in _PATH_SPLIT.split(path):
        if piece:
            out.extend(t for t in split_identifier(piece) if len(t) > 1)
    return out


def counts_of(text: str, wanted: set[str]) -> tuple[dict[str, int], int]:
    """Frequencies of the wanted terms only, and the text's length in words: all a query's scoring needs."""
    raw = Counter(_WORD.findall(text))
    found: dict[str, int] = {}
    for word, count in raw.items():
        for term in split_identifier(word):
            if term in wanted:
                found[term] = found.get(term, 0) + count
    return found, max(1, sum(raw.values()))
