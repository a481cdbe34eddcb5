"""Token counts without a download: an estimate that errs high, for budgets and hard caps.

tiktoken fetches its encodings from the internet on first use, which a worker may not reach. BPE
tokenizers (cl100k, o200k and their kin) first split text into pieces with a regex much like the one below
and then never merge across pieces, so every piece costs at least one token; a long piece costs about one
token per few characters. Counting ceil(len/3) per word piece and one per punctuation or space run lands
at or above the real count for code and English prose, which is the side a budget must err on.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

_PIECES = re.compile(
    r"""'(?:[sdmt]|ll|ve|re)|[^\r\n\w]?[^\W\d_]+|\d{1,3}|[^\s\w]+[\r\n]*|\s*[\r\n]+|\s+""",
    re.UNICODE,
)
_PER_MESSAGE_OVERHEAD = 4  # role and separators, as OpenAI's cookbook counts them


# A text is counted line by line, each line once per process (a context pack is made of the same lines as
# the chunks it was fitted from; source lines repeat across files and prompts). No piece spans two lines but
# a run of blank lines, which then counts a token a line: the sum errs high, never low.
_LINE_CACHE = 1 << 16
_SHORT = 200  # characters: shorter texts are counted directly


def count_tokens(text: str) -> int:
    if len(text) <= _SHORT:
        return _count_pieces(text)
    return sum(map(_count_line, text.splitlines(keepends=True)))


@functools.lru_cache(maxsize=_LINE_CACHE)
def _count_line(line: str) -> int:
    return _count_pieces(line)


def _count_pieces(text: str) -> int:
    total = 0
    for piece in _PIECES.findall(text):
        stripped = piece.strip()
        if not stripped:
            total += 1
        elif stripped.isascii() and stripped.isalnum():
            total += max(1, math.ceil(len(stripped) / 3))
        else:
            # Non-ASCII and symbol runs: a token per 2 UTF-8 bytes at worst.
            total += max(1, math.ceil(len(piece.encode()) / 2))
    return total


def count_message_tokens(messages: Iterable[Mapping[str, Any]], tools: Iterable[Any] = ()) -> int:
    """Tokens a chat request's prompt will cost: every message's text, tool calls and the tool schemas."""
    import json

    total = 3  # the reply's priming
    for message in messages:
        total += _PER_MESSAGE_OVERHEAD
        for key, value in message.items():
            if value is None:
                continue
            total += count_tokens(value if isinstance(value, str) else json.dumps(value, default=str))
            if key == "name":
                total += 1
    for tool in tools:
        total += count_tokens(json.dumps(tool, default=str))
    return total
