"""Masking secrets in text: configured values, passwords in URLs, and values that look like keys.

Test output is written by the repository's code, which may be an attacker's: it can print a secret that
reached it some other way, or an encoding of one. So output bound for the model, the job page and the
database is masked for

- each configured secret, and its reversed, percent-encoded and base64 forms (at the three alignments a
  value can take inside a longer base64 text, as GitHub Actions masks its secrets);
- the password of any URL with one (`scheme://user:password@host`), whatever the value;
- tokens whose shape gives them away: GitHub (`ghp_`, `ghs_`, `gho_`, `ghu_`, `ghr_`, `github_pat_`), Slack
  (`xoxb-` and the other `xox?-`, `xapp-`), OpenAI-style `sk-…` (`sk-proj-`, …), AWS access key ids
  (`AKIA…`, `ASIA…`), Google API keys (`AIza…`), JWTs and PEM private keys;
- with `high_entropy=True`, any other run of 32+ base64/base62 characters that reads as random: upper and
  lower case letters and digits, and a character entropy no English identifier or path reaches.

Hexadecimal runs are never masked by the last rule: commit SHAs, content hashes and UUIDs fill test output
and are not secrets; a configured secret that happens to be hex is still masked by its value. Stdlib only.
"""

from __future__ import annotations

import base64
import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

PLACEHOLDER = "[redacted]"
MIN_FORM_LENGTH = 8  # a reversed or encoded form shorter than this would mask ordinary words
MIN_ENTROPY_TOKEN = 32  # as in _TOKEN
# looks_random's bar. Measured on 18,000 random base62/base64/base64url tokens of 32 to 64 characters and
# on identifiers, paths and test names: random tokens score 5.9 on average (0.2 % below 5.2, nearly all of
# them 32 characters long); CamelCase names, snake_case names and paths score 4.5 to 5.2.
RANDOMNESS_BAR = 5.2

KEY_PATTERNS = (
    r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z ]{0,40}PRIVATE KEY-----|\Z)",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",
    r"\bgithub_pat_[A-Za-z0-9_]{30,}",
    r"\bxox[a-z]-[A-Za-z0-9-]{10,}",
    r"\bxapp-[A-Za-z0-9-]{10,}",
    r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{20,}",
    r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
    r"\bAIza[A-Za-z0-9_-]{35}",
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
)
# `scheme://user:password@`: the user name stays (it says which account), the password goes. The scheme
# starts where a word starts: tried from inside a long word, it would scan to the word's end each time, and
# test output is the repository's to write (a megabyte of letters after `https://` took minutes).
URL_PASSWORD = re.compile(r"(?P<head>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)")
_KEYS = re.compile("|".join(KEY_PATTERNS))
_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_-]{32,}={0,2}(?![A-Za-z0-9+/_=-])")
_HEX = re.compile(r"[0-9a-fA-F-]+")


def url_password(url: str | None) -> str | None:
    """The password in `url`'s user info, decoded; None when there is none."""
    if not url or "@" not in url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def url_secrets(*urls: str | None) -> list[str]:
    """The passwords in `urls` worth masking wherever they appear, as written and decoded.

    In URL form a password is always masked (URL_PASSWORD). Alone, a password shorter than 8 characters
    or equal to its user name (docker-compose.yml's `autodev:autodev`) is a published default, and
    masking the word everywhere would mangle every log line and prompt that names the service.
    """
    found: list[str] = []
    for url in urls:
        password = url_password(url)
        if password is None or len(password) < 8:
            continue
        try:
            user = unquote(urlsplit(url or "").username or "")
        except ValueError:
            user = ""
        if password != user:
            found += {password, quote(password, safe="")}
    return found


def pem_secrets(pem: str | None) -> list[str]:
    """A PEM key's text and each line of its body, so a part of the key quoted alone is masked too."""
    if not pem:
        return []
    lines = [line.strip() for line in pem.splitlines()]
    return [pem, *(line for line in lines if len(line) >= 16 and not line.startswith("-----"))]


def secret_forms(secret: str) -> set[str]:
    """`secret` and the forms test code could print it in to slip past an exact match."""
    forms = {secret, secret[::-1], quote(secret, safe="")}
    raw = secret.encode()
    for pad in range(3):
        # Preceded by `pad` bytes, the secret's base64 starts at a fixed point; the characters that mix
        # its bytes with the neighbours' are left out at both ends.
        encoded = base64.b64encode(b"\0" * pad + raw).decode().rstrip("=")
        start = math.ceil(pad * 4 / 3)
        end = ((pad + len(raw)) * 4) // 3
        for text in (encoded, encoded.replace("+", "-").replace("/", "_")):
            forms.add(text[start:end])
    return {f for f in forms if len(f) >= MIN_FORM_LENGTH or f == secret}


def looks_random(token: str) -> bool:
    """True for a 32+ character token of mixed case that reads as random rather than as words.

    The score is the characters' Shannon entropy (bits per character) plus twice the share of neighbours
    of different kinds (upper, lower, digit, other): a key changes kind at ~60 % of its characters, a
    CamelCase or snake_case name only where a word ends (25-40 %).
    """
    body = token.rstrip("=")
    if len(body) < MIN_ENTROPY_TOKEN or _HEX.fullmatch(body):
        return False
    if not (any(c.islower() for c in body) and any(c.isupper() for c in body)):
        return False
    size = len(body)
    entropy = -sum(n / size * math.log2(n / size) for n in Counter(body).values())
    kinds = [_kind(c) for c in body]
    changes = sum(a != b for a, b in itertools.pairwise(kinds)) / (size - 1)
    return entropy + 2 * changes >= RANDOMNESS_BAR


def _kind(char: str) -> int:
    return 0 if char.isupper() else 1 if char.islower() else 2 if char.isdigit() else 3


class Redactor:
    """A reusable masker: `redactor(text)` is `text` with every secret it can tell replaced."""

    def __init__(
        self,
        secrets: Iterable[str] = (),
        *,
        placeholder: str = PLACEHOLDER,
        encoded_forms: bool = True,
        key_shapes: bool = True,
        high_entropy: bool = True,
    ) -> None:
        values: set[str] = set()
        for secret in secrets:
            if secret:
                values |= secret_forms(secret) if encoded_forms else {secret}
        # Longest first: a secret that contains another is replaced whole.
        ordered = sorted(values, key=len, reverse=True)
        self._values = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self.placeholder = placeholder
        self.key_shapes = key_shapes
        self.high_entropy = high_entropy

    def __call__(self, text: str) -> str:
        if self._values is not None:
            text = self._values.sub(self.placeholder, text)
        if "://" in text:
            text = URL_PASSWORD.sub(lambda m: m["head"] + self.placeholder, text)
        if self.key_shapes:
            text = _KEYS.sub(self.placeholder, text)
        if self.high_entropy:
            text = _TOKEN.sub(lambda m: self.placeholder if looks_random(m[0]) else m[0], text)
        return text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with configured secrets, URL passwords and key-like values masked (see the module's doc)."""
    return Redactor(secrets)(text)
