"""Token counts without a download: an estimate that errs high by about the same share whatever the text.

tiktoken fetches its encodings from the internet on first use, which a worker may not reach. OpenAI's BPE
encodings (o200k_base, cl100k_base) first cut text into pieces with a regular expression, the one below
(cl100k's, with o200k's cut between camelCase humps), and never merge across pieces, so a text costs the sum
of its pieces. A space, indentation run, newline run, up to three digits or one or two punctuation marks is
one token. A word costs one token plus, between each pair of its letters, the chance that BPE cuts there:
common pairs ("th", "er") almost never, rare ones ("kq") usually — a 26×26 table fitted to where o200k and
cl100k cut the words of real code and prose. Long punctuation runs, non-ASCII letters and symbols are costed
by measured rates, base64-like blobs by their length. On code, data, diffs and prose in English that sum is
the real count give or take 5% by kind, 20% for any 4 KB of text; it is scaled up so that it stays above the
real count of both encodings, which the budget guards need. A model's tokens are then about 0.77 of the
estimate whatever the kind of text, steadily enough for engine.store.calibration to learn the ratio. Other
scripts are overcounted more (o200k needs fewer tokens for them than cl100k). The tables and the scale come
from `bench/token_estimate.py --fit`, which also measures the ratio per kind of text.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

_PIECES = re.compile(
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|(?:[^\r\n\w]|_)?[^\W\d_]+|\d{1,3}| ?(?:[^\s\w]|_)+[\r\n]*|\s*[\r\n]+"""
    r"""|\s+(?!\S)|\s+""",
)
_WORD = re.compile(r"(?:[^\r\n\w]|_)?[^\W\d_]+")
_HUMPS = re.compile(r"[A-Z]*[a-z]+|[A-Z]+|[^\x00-\x7f]+")
_BLOB = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")  # base64, keys, hashes: a token per 1.5 characters or so
_PREFIX_SYMBOLS = "\t !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"  # before a word, with a table of cuts below
_PREFIX_OTHER = 0.8  # any other character before a word: usually a token of its own
_PER_MESSAGE_OVERHEAD = 4  # role and separators, as OpenAI's cookbook counts them

# --- fitted by bench/token_estimate.py --fit (do not edit by hand) ---
_SCALE = 1.29  # the highest real / estimate of the fit corpus's texts (1.22), over 0.95
_SPLIT = (
    "5000c20110000060a000000000",
    "2558181a20b1bg3gc12532d606",
    "160706803g006603c030358908",
    "2420025d12025b11a5462bi20c",
    "1410100248100012000042000b",
    "16841154158170022040121502",
    "51gh0d5012f24018e12021h235",
    "1cec0hb02gg8f310213019d26d",
    "1000000c200000004000707080",
    "2c82122b95311912150c871222",
    "7fei1e283ficb1dg233d821249",
    "238000251hf0g411a410113g0a",
    "11ha082c3a8102102e042jg869",
    "2210010826023121cg00229017",
    "1000400210000010100000030c",
    "1fd20b2027500800g110128012",
    "0522c5518c205bd5119a028272",
    "131104061b041003712010410f",
    "4b130920170337131900143d2e",
    "1f3303d01852272120101a310c",
    "0000000203000020a00048b040",
    "02aa0f42199ebc1d7de255ba1e",
    "27gd1j80117b20022116a2014a",
    "12157572312e0ca027e0b56532",
    "b67c5ie93k6121112210ji4615",
    "1b1c02d4425age4c279g526a17",
)
_UPPER_PAIR = 0.095
_CAPITAL_PAIR = 0.027
_PREFIX_CUTS = ("10kakkg110a9h9205ebc8jfga1jg1fjiji", "e0ghih7ee5hij9508hka8gkjbiih1jijgg")
_PUNCT = (1.0, 1.02, 1.16, 1.58, 2.13, 2.35, 3.02, 3.26)
_PUNCT_CHAR = 0.03
_BLOB_CHAR = 0.75
_NON_ASCII = {
    "punctuation": 1.0,
    "latin": 1.43,
    "greek": 1.14,
    "cyrillic": 0.67,
    "hebrew, arabic": 1.25,
    "indic, thai": 2.0,
    "cjk, hangul": 1.5,
    "letter2": 2.0,
    "letter3": 3.0,
    "letter4": 4.0,
    "symbol2": 2.0,
    "symbol3": 3.0,
    "symbol4": 4.0,
}
# --- end of fitted values ---

_LONG_HUMP = 12  # letters

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_PAIR = {a + b: int(_SPLIT[i][j], 36) / 20 for i, a in enumerate(_LETTERS) for j, b in enumerate(_LETTERS)}
_PREFIX = {
    symbol + case: int(cuts[i], 36) / 20
    for case, cuts in zip("aA", _PREFIX_CUTS, strict=True)
    for i, symbol in enumerate(_PREFIX_SYMBOLS)
}


def count_tokens(text: str) -> int:
    if len(text) <= _SHORT:
        return math.ceil(_count_line(text) * _SCALE)
    total = 0.0
    run = 0  # characters of the blank lines that join the newline before them, as one piece would
    follows_newline = False
    for line in text.splitlines(keepends=True):
        if follows_newline and line in _NEWLINES:
            run += len(line)
            continue
        if run:
            total += (run + 1) // _RUN_PER_TOKEN  # what that piece costs beyond its first newline
            run = 0
        total += _count_line(line)
        follows_newline = line[-1] in "\r\n"
    if run:
        total += (run + 1) // _RUN_PER_TOKEN
    return math.ceil(total * _SCALE)


# A text is counted line by line, each line once per process (a context pack is made of the same lines as
# the chunks it was fitted from; source lines repeat across files and prompts). No piece spans two lines but
# a run of newlines ("\n\n\n" is one token), whose lines after the first cost a token per 16 together.
_LINE_CACHE = 1 << 16
_SHORT = 200  # characters: shorter texts (a line, a title) are counted whole, through the same cache
_NEWLINES = frozenset(("\n", "\r\n", "\r"))
_SPACES_PER_TOKEN = 100  # o200k and cl100k: 128 (measured on runs of 100,000)
_RUN_PER_TOKEN = 16  # tabs, newlines: 16 (cl100k: 32 newlines)
_MIXED_PUNCT_CHAR = 0.5  # "!?" × 50,000: cl100k 50,001 tokens, o200k 25,002
_PIECE_CACHE = 1 << 17
_COSTS: dict[str, float] = {}  # each piece's cost, once per process


@functools.lru_cache(maxsize=_LINE_CACHE)
def _count_line(line: str) -> float:
    return _count_text(line)


def _count_text(text: str) -> float:
    blobs = 0.0
    if len(text) >= 24 and _BLOB.search(text):
        text, blobs = _blobs(text)
    pieces = _PIECES.findall(text)
    try:
        return blobs + sum(map(_COSTS.__getitem__, pieces))
    except KeyError:  # a piece not seen yet
        if len(_COSTS) > _PIECE_CACHE:
            _COSTS.clear()
        total = blobs
        for piece in pieces:
            cost = _COSTS.get(piece)
            if cost is None:
                cost = _COSTS[piece] = _piece(piece)
            total += cost
        return total


def _blobs(text: str) -> tuple[str, float]:
    """The text without its base64-like runs, and what those cost: a long run that switches between upper
    case, lower case and digits at least every other character or so (camelCase names switch less often)."""
    cost = 0.0

    def cut(match: re.Match[str]) -> str:
        nonlocal cost
        run = match.group()
        kinds = [c.isdigit() + 2 * c.isupper() for c in run]
        if sum(a != b for a, b in itertools.pairwise(kinds)) >= 0.4 * len(run):
            cost += len(run) * _BLOB_CHAR
            return " "
        return run

    return _BLOB.sub(cut, text), cost


def _piece(piece: str) -> float:
    if piece.isspace():
        # BPE has tokens for runs of up to 128 spaces but of only 16 tabs or newlines: a megabyte of tabs
        # (test output is anyone's) must not pass for a few hundred tokens.
        spaces = piece.count(" ")
        return 1.0 + spaces // _SPACES_PER_TOKEN + (len(piece) - spaces) // _RUN_PER_TOKEN
    if _WORD.fullmatch(piece):
        if piece[0].isalpha() or len(piece) == 1:
            return max(1.0, 1.0 + _word(piece))
        cut = _PREFIX.get(piece[0] + ("A" if piece[1].isupper() else "a"), _PREFIX_OTHER)
        return max(1.0, 1.0 + cut + _word(piece[1:]))
    core = piece.strip()
    if core.isdigit():
        return 1.0
    if core.isascii():
        return _punct(core)
    # Symbols among other characters: each ASCII run as a run of its own, each other character at its rate.
    runs = "".join(c if c.isascii() else " " for c in core).split()
    return max(1.0, sum(map(_punct, runs)) + sum(_NON_ASCII[_script(c)] for c in core if not c.isascii()))


def _punct(run: str) -> float:
    n = len(run)
    if n <= len(_PUNCT):
        return _PUNCT[n - 1]
    # A long run of one mark ("=====", "-----") is a few tokens; of several ("!?!?", "|-|-") up to one per
    # two characters, and only a crafted text has a long one.
    per_char = _PUNCT_CHAR if len(set(run)) == 1 else _MIXED_PUNCT_CHAR
    return _PUNCT[-1] + (n - len(_PUNCT)) * per_char


def _word(letters: str) -> float:
    """Tokens beyond the first in a run of letters."""
    cost = 0.0
    for i, hump in enumerate(_HUMPS.findall(letters)):
        if not hump.isascii():
            cost += sum(_NON_ASCII[_script(c)] for c in hump) - (1.0 if i == 0 else 0.0)
        else:
            cost += (1.0 if i else 0.0) + _hump(hump)  # o200k cuts between camelCase humps
    return cost


def _hump(hump: str) -> float:
    lower = hump.lower()
    cost = sum(_PAIR[lower[j : j + 2]] for j in range(len(hump) - 1))
    if hump.isupper():
        cost += (len(hump) - 1) * _UPPER_PAIR
    elif hump[0].isupper():
        cost += _CAPITAL_PAIR
    # No word is that long: mashed keys, hashes, "loooong" cost a token per two letters or so.
    return max(cost, (len(hump) - _LONG_HUMP) / 2)


def _script(char: str) -> str:
    """Which rate a non-ASCII character is costed at."""
    code = ord(char)
    if not char.isalpha():
        if code < 0x100 or 0x2000 <= code < 0x2300 or 0x2500 <= code < 0x2580 or 0x3000 <= code < 0x3040:
            return "punctuation"  # ·, —, “, →, ≥, box drawing, CJK punctuation: mostly a token each
        return f"symbol{len(char.encode())}"  # the rest, emoji and braille: up to a token per byte
    if code < 0x180:
        return "latin"
    if 0x370 <= code < 0x400:
        return "greek"
    if 0x400 <= code < 0x460:
        return "cyrillic"
    if 0x590 <= code < 0x700:
        return "hebrew, arabic"
    if 0x900 <= code < 0xE80:
        return "indic, thai"
    if 0x3040 <= code < 0x3100 or 0x4E00 <= code < 0xA000 or 0xAC00 <= code < 0xD7B0:
        return "cjk, hangul"
    return f"letter{len(char.encode())}"


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
