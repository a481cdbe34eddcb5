"""How far engine.llm.tokens' estimate is from OpenAI's real token counts, per kind of text.

    uv run python bench/token_estimate.py [--corpus fit|check|both] [--chunk 4000] [--per-kind 300]
    uv run python bench/token_estimate.py --fit          # the tables for engine/llm/tokens.py
    uv run python bench/token_estimate.py --fixtures tests/fixtures/token-counts/counts.json

Two corpora, so that what the estimate was fitted on is not what judges it:
- fit: this machine's Python standard library, JS/TS from a few npm packages (lodash-es, rxjs, zod, yaml,
  commander, marked; dayjs's locales for non-ASCII in code; installed once under
  ~/.cache/autodev-bench/corpus), the JSON, YAML and Markdown of the Google Cloud SDK, tornado's and
  marshmallow's history as diffs and commit messages, chardet's test texts in 30 encodings;
- check: this repository's code, docs, diffs and commit messages, the repositories fetched under /work/.mirror
  (Go: gin, cobra; Rust: ripgrep, clap; Java: gson, commons-lang; JS/TS: vue, axios, express; Python: click,
  httpx, black, pip, attrs), charset_normalizer's samples, Vim's tutor and GnuPG's help in a dozen languages,
  and the chunks of all those that are mostly indentation or whose names are long.
Each file is cut into chunks of up to --chunk characters at line ends; each chunk is counted by the
estimate and by o200k_base and cl100k_base (npm gpt-tokenizer, as bench/token_calibration.py does).
Printed per kind: real / estimated tokens, min · median · max over the chunks, for the estimate of session 5
(`old`) and the one in engine.llm.tokens (`new`), the worse of the two encodings each time, and µs per KB.
A ratio above 1 is an estimate that counted low. `--fit` prints the fitted tables to paste between the
markers in engine/llm/tokens.py; the report then says which `_SCALE` keeps every chunk at 0.95 or less.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import re
import statistics
import subprocess
import sys
import sysconfig
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.token_calibration import TOOL_DIR, real_counts
from engine.llm import tokens

HOME = Path.home()
CORPUS_DIR = HOME / ".cache" / "autodev-bench" / "corpus"
NPM = ["lodash-es", "rxjs", "zod", "yaml", "commander", "marked", "dayjs"]
MIRRORS = Path("/work/.mirror")
SDK = Path("/usr/lib/google-cloud-sdk")
CHARDET = SDK / "platform/gsutil/third_party/chardet/tests"
SAMPLES = SDK / "platform/gsutil/third_party/charset_normalizer/data"
REPO = Path(__file__).resolve().parents[1]


# The estimate of session 5, kept to compare against: ceil(len/3) per word piece, a token per 2 bytes of
# other pieces, one per space run.
_OLD_PIECES = re.compile(
    r"""'(?:[sdmt]|ll|ve|re)|[^\r\n\w]?[^\W\d_]+|\d{1,3}|[^\s\w]+[\r\n]*|\s*[\r\n]+|\s+""", re.UNICODE
)


def old_count(text: str) -> int:
    if len(text) <= 200:
        return _old_pieces(text)
    return sum(map(_old_line, text.splitlines(keepends=True)))


@functools.lru_cache(maxsize=1 << 16)
def _old_line(line: str) -> int:
    return _old_pieces(line)


def _old_pieces(text: str) -> int:
    total = 0
    for piece in _OLD_PIECES.findall(text):
        stripped = piece.strip()
        if not stripped:
            total += 1
        elif stripped.isascii() and stripped.isalnum():
            total += max(1, math.ceil(len(stripped) / 3))
        else:
            total += max(1, math.ceil(len(piece.encode()) / 2))
    return total


# Where texts come from -------------------------------------------------------------------------------


def _files(root: Path, suffixes: tuple[str, ...], skip: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    for path in sorted(root.rglob("*")):
        name = str(path)
        if path.suffix in suffixes and path.is_file() and not any(s in name for s in skip):
            try:
                yield name, path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue


def _git_files(repo: Path, suffixes: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """Files at HEAD of a (bare) repository."""
    git = ["git", "-C", str(repo)]
    names = subprocess.run(
        [*git, "ls-tree", "-r", "--name-only", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    for name in names:
        if name.endswith(suffixes):
            blob = subprocess.run([*git, "show", f"HEAD:{name}"], capture_output=True, check=False).stdout
            try:
                yield f"{repo}:{name}", blob.decode("utf-8")
            except UnicodeDecodeError:
                continue


def _git_file(name: str) -> Iterator[tuple[str, str]]:
    repo, path = name.split(":")
    blob = subprocess.run(
        ["git", "-C", str(MIRRORS / repo / "repo"), "show", f"HEAD:{path}"], capture_output=True, check=False
    ).stdout
    if blob:
        yield name, blob.decode("utf-8")


def _mirrors(names: list[str], suffixes: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    for name in names:
        repo = MIRRORS / name / "repo"
        if repo.exists():
            yield from _git_files(repo, suffixes)


def _git_log(repo: Path, args: list[str], count: int) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "log", "--no-merges", f"-n{count}", "--format=%x00%s%n%n%b", *args],
        capture_output=True,
        check=False,
    ).stdout.decode("utf-8", "replace")
    return [entry.strip() for entry in out.split("\x00") if len(entry.strip()) > 40]


def _diffs(repos: list[Path], count: int) -> Iterator[tuple[str, str]]:
    for repo in repos:
        if repo.exists():
            for i, diff in enumerate(_git_log(repo, ["-p"], count)):
                yield f"{repo}@{i}", diff


def _messages(repos: list[Path], count: int) -> Iterator[tuple[str, str]]:
    for repo in repos:
        if repo.exists():
            messages = _git_log(repo, [], count)
            for i in range(0, len(messages), 8):  # a few messages a chunk, as a task's text is
                yield f"{repo}#{i}", "\n\n".join(messages[i : i + 8])


def _chardet() -> Iterator[tuple[str, str]]:
    for folder in sorted(CHARDET.iterdir()) if CHARDET.exists() else []:
        words = folder.name.split("-")  # "iso-8859-2-polish", "windows-1251-russian", "EUC-JP"
        codecs = ["-".join(words[:n]) for n in range(len(words), 0, -1)]
        for path in sorted(folder.glob("*")):
            for codec in codecs:
                try:
                    text = path.read_bytes().decode(codec)
                    break
                except (LookupError, UnicodeDecodeError):
                    continue
            else:
                continue
            yield str(path), text


def _npm() -> Path:
    modules = CORPUS_DIR / "node_modules"
    if not all((modules / name).exists() for name in NPM):
        CORPUS_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--prefix", str(CORPUS_DIR), *NPM], check=True)
    return modules


def fit_corpus() -> dict[str, Iterator[tuple[str, str]]]:
    modules = _npm()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return {
        "python": _files(stdlib, (".py",), ("site-packages",)),
        "js/ts": _files(modules, (".js", ".ts", ".mjs"), ("dayjs", ".min.")),
        "json": _files(SDK, (".json",)),
        "markdown": (f for f in _files(SDK, (".md",))),
        "yaml": _files(SDK, (".yaml", ".yml")),
        "diff": _diffs(FIT_HISTORY, 300),
        "commit messages": _messages(FIT_HISTORY, 800),
        "non-ascii": _non_ascii(_chardet()),
        "non-ascii code": _files(modules / "dayjs" / "locale", (".js",)),
    }


CHECK_MIRRORS = {
    "python": ["pallets+click", "encode+httpx", "psf+black", "pypa+pip", "python-attrs+attrs"],
    "go": ["gin-gonic+gin", "spf13+cobra"],
    "rust": ["BurntSushi+ripgrep", "clap-rs+clap"],
    "java": ["google+gson", "apache+commons-lang"],
    "js/ts": ["vuejs+core", "axios+axios", "expressjs+express"],
}
ALL_MIRRORS = sorted({n for names in CHECK_MIRRORS.values() for n in names})
FIT_HISTORY = [MIRRORS / name / "repo" for name in ("tornadoweb+tornado", "marshmallow-code+marshmallow")]
NON_ASCII = [
    "psf+black:tests/data/cases/preview_long_strings__east_asian_width.py",
    "pypa+pip:src/pip/_vendor/rich/_spinners.py",
    "pypa+pip:src/pip/_vendor/rich/_emoji_codes.py",
    "pypa+pip:src/pip/_vendor/rich/box.py",
    "apache+commons-lang:src/test/resources/lang-708-input.txt",
]


def check_corpus() -> dict[str, Iterator[tuple[str, str]]]:
    mirror_repos = [MIRRORS / name / "repo" for name in ALL_MIRRORS]
    return {
        "python": _chain(_git_files(REPO, (".py",)), _mirrors(CHECK_MIRRORS["python"], (".py",))),
        "go": _mirrors(CHECK_MIRRORS["go"], (".go",)),
        "rust": _mirrors(CHECK_MIRRORS["rust"], (".rs",)),
        "java": _mirrors(CHECK_MIRRORS["java"], (".java",)),
        "js/ts": _mirrors(CHECK_MIRRORS["js/ts"], (".js", ".ts", ".tsx")),
        "json": _chain(_git_files(REPO, (".json",)), _mirrors(ALL_MIRRORS, (".json",))),
        "markdown": _chain(_git_files(REPO, (".md",)), _mirrors(ALL_MIRRORS, (".md", ".rst"))),
        "yaml": _chain(_git_files(REPO, (".yml", ".yaml")), _mirrors(ALL_MIRRORS, (".yml", ".yaml"))),
        "diff": _diffs([REPO, *mirror_repos], 60),
        "commit messages": _messages([REPO, *mirror_repos], 400),
        "non-ascii": _non_ascii(
            _chain(
                _files(SAMPLES, (".txt",)),
                _files(Path("/usr/share/vim/vim90/tutor"), (".utf-8",)),
                _files(Path("/usr/share/gnupg"), (".txt",)),
            )
        ),
        "non-ascii code": _chain(*(_git_file(name) for name in NON_ASCII)),
        "indented": _pick(_mirrors(ALL_MIRRORS, (".py", ".java", ".ts", ".rs", ".go", ".json")), _indented),
        "long identifiers": _pick(_mirrors(ALL_MIRRORS, (".java", ".py", ".ts", ".go")), _long_names),
    }


def _non_ascii(source: Iterator[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    return (f for f in source if sum(1 for c in f[1] if ord(c) > 127) > len(f[1]) / 10)


def _chain(*sources: Iterator[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    for source in sources:
        yield from source


def _pick(source: Iterator[tuple[str, str]], keep: Callable[[str], bool]) -> Iterator[tuple[str, str]]:
    for name, text in source:
        for i, chunk in enumerate(_chunks(text, 4000)):
            if keep(chunk):
                yield f"{name}[{i}]", chunk


def _indented(text: str) -> bool:
    """Leading whitespace is more than a third of the text."""
    lines = text.splitlines()
    indent = sum(len(line) - len(line.lstrip()) for line in lines)
    return len(text) > 1000 and indent > len(text) / 3


def _long_names(text: str) -> bool:
    """Letter runs average 9 characters or more (camelCase and snake_case names)."""
    runs = [len(m) for m in re.findall(r"[A-Za-z_]{2,}", text)]
    return len(text) > 1000 and bool(runs) and statistics.mean(runs) >= 9


def _chunks(text: str, size: int) -> Iterator[str]:
    lines = text.splitlines(keepends=True)
    chunk: list[str] = []
    length = 0
    for line in lines:
        if chunk and length + len(line) > size:
            yield "".join(chunk)
            chunk, length = [], 0
        chunk.append(line[: size * 2])
        length += len(chunk[-1])
    if chunk:
        yield "".join(chunk)


def sample(source: Iterator[tuple[str, str]], chunk: int, per_kind: int) -> list[str]:
    """Up to per_kind chunks, taken evenly (by a hash of the file name) from all the source's files."""
    named = sorted(source, key=lambda f: hashlib.sha1(f[0].encode()).hexdigest())
    texts: list[str] = []
    for _, text in named:
        texts.extend(c for c in list(_chunks(text, chunk))[:3] if len(c.strip()) > 200)
        if len(texts) >= per_kind:
            break
    return texts[:per_kind]


# Fitting ---------------------------------------------------------------------------------------------

SPLITS = """
import fs from 'fs';
const o = await import('gpt-tokenizer/encoding/o200k_base');
const c = await import('gpt-tokenizer/encoding/cl100k_base');
const texts = JSON.parse(fs.readFileSync(0, 'utf8'));
const lengths = (m, t) => m.encode(t).map(id => m.decode([id]).length);
console.log(JSON.stringify(texts.map(t => [lengths(o, t), lengths(c, t)])));
"""


def token_lengths(texts: list[str]) -> list[list[int]]:
    """The characters in each token of each (ASCII) text, in the encoding that cuts it into more tokens."""
    real_counts([])  # installs gpt-tokenizer
    script = TOOL_DIR / "splits.mjs"
    script.write_text(SPLITS)
    run = ["node", str(script)]
    done = subprocess.run(
        run, input=json.dumps(texts), capture_output=True, text=True, check=True, cwd=TOOL_DIR
    )
    return [max(pair, key=len) for pair in json.loads(done.stdout)]


def _ratio(pairs: list[tuple[float, float]], fallback: float, least: float = 200) -> float:
    """Σ cost / Σ size over (cost, size) pairs; the fallback when the sizes add up to less than `least`."""
    size = sum(p[1] for p in pairs)
    return sum(p[0] for p in pairs) / size if size >= least else fallback


def fit(kinds: dict[str, list[str]]) -> str:
    """engine.llm.tokens' fitted values, as Python source, from the real counts of the pieces of `kinds`."""
    pieces: Counter[str] = Counter()
    blobs: list[str] = []
    for texts in kinds.values():
        for text in texts:
            for line in text.splitlines(keepends=True):
                blobs += [m.group() for m in tokens._BLOB.finditer(line) if tokens._blobs(m.group())[1]]
                pieces.update(tokens._PIECES.findall(tokens._blobs(line)[0] if len(line) >= 24 else line))
    unique = list(pieces)
    real = {p: max(r) for p, r in zip(unique, _batched(real_counts, unique), strict=True)}
    words = [p for p in unique if p.isascii() and tokens._WORD.fullmatch(p)]
    cuts = {p: _cuts(lengths) for p, lengths in zip(words, _batched(token_lengths, words), strict=True)}

    # Between two letters: how often the encoding that cuts more cuts there.
    pairs: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for word in words:
        n, cut = pieces[word], cuts[word]
        start = 0 if word[0].isalpha() else 1
        if start:  # how often the symbol or space before a word is a token of its own, by the letter's case
            key = "prefix", word[0] + ("A" if word[1].isupper() else "a")
            pairs[key][0] += n
            pairs[key][1] += n * (1 in cut)
        for hump in tokens._HUMPS.finditer(word, start):
            for i in range(hump.start() + 1, hump.end()):
                pair = word[i - 1 : i + 1]
                kind = "lower" if pair.islower() else "upper" if pair.isupper() else "capital"
                pairs[kind, pair.lower()][0] += n
                pairs[kind, pair.lower()][1] += n * (i in cut)
    split = {
        a + b: (pairs["lower", a + b][1] + 5 * 0.1) / (pairs["lower", a + b][0] + 5)
        for a in tokens._LETTERS
        for b in tokens._LETTERS
    }
    rows = tuple("".join(_base36(round(split[a + b] * 20)) for b in tokens._LETTERS) for a in tokens._LETTERS)
    quantized = {pair: round(p * 20) / 20 for pair, p in split.items()}

    def extra(kind: str) -> float:
        """What a pair of this kind costs beyond the same letters in lower case."""
        return _ratio([(v[1] - v[0] * quantized[k[1]], v[0]) for k, v in pairs.items() if k[0] == kind], 0.1)

    upper, capital = extra("upper"), extra("capital")
    prefix = tuple(
        "".join(
            _base36(round((pairs["prefix", s + case][1] + 5 * 0.8) / (pairs["prefix", s + case][0] + 5) * 20))
            for s in tokens._PREFIX_SYMBOLS
        )
        for case in "aA"
    )

    # Punctuation runs by length; non-ASCII characters by script.
    by_length: dict[int, list[tuple[float, float]]] = defaultdict(list)
    by_script: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for piece, n in pieces.items():
        core = piece.strip()
        if not core or core.isdigit() or tokens._WORD.fullmatch(piece):
            foreign = [c for c in core if not c.isascii()]
            scripts = {tokens._script(c) for c in foreign}
            if len(scripts) == 1 and piece[0] in " " + core[0]:  # a word in one script (and ASCII letters)
                ascii_part = "".join(c if c.isascii() else " " for c in core).split()
                rest = sum(1 + _letters_cost(part, quantized, upper, capital) for part in ascii_part)
                by_script[scripts.pop()].append((n * (real[piece] - rest), n * len(foreign)))
            continue
        if core.isascii():
            by_length[min(len(core), 9)].append((n * real[piece], n))
        elif not any(c.isascii() for c in core):
            scripts = {tokens._script(c) for c in core}
            if len(scripts) == 1:
                by_script[scripts.pop()].append((n * real[piece], n * len(core)))
    punct = tuple(round(_ratio(by_length[n], n / 2, least=50), 2) for n in range(1, 9))
    long_runs = [
        (n * (real[p] - punct[-1]), n * (len(p.strip()) - 8))
        for p, n in pieces.items()
        if p.strip().isascii() and len(p.strip()) > 8 and not tokens._WORD.fullmatch(p) and not p.isspace()
    ]
    names = ["punctuation", "latin", "greek", "cyrillic", "hebrew, arabic", "indic, thai", "cjk, hangul"]
    non_ascii = {name: round(_upper_quartile(by_script[name], 2.0), 2) for name in names}
    rare = {f"{kind}{size}": float(size) for kind in ("letter", "symbol") for size in (2, 3, 4)}
    non_ascii |= rare  # scripts and symbols seen too little: a token per UTF-8 byte, as BPE falls back to
    blob_rates = sorted(max(r) / len(b) for r, b in zip(_batched(real_counts, blobs), blobs, strict=True))
    blob_rate = blob_rates[len(blob_rates) * 9 // 10] if len(blob_rates) >= 10 else 0.8  # the 90th percentile
    return "\n".join(
        [
            f"_SPLIT = (\n{chr(10).join(f'    {row!r},' for row in rows)}\n)",
            f"_UPPER_PAIR = {upper:.3f}",
            f"_CAPITAL_PAIR = {capital:.3f}",
            f"_PREFIX_CUTS = {prefix!r}",
            f"_PUNCT = {punct!r}",
            f"_PUNCT_CHAR = {_ratio(long_runs, 0.5, least=20):.2f}",
            f"_BLOB_CHAR = {blob_rate:.2f}",
            f"_NON_ASCII = {non_ascii!r}",
        ]
    )


def _upper_quartile(pairs: list[tuple[float, float]], fallback: float) -> float:
    """The cost per unit of size that 3/4 of the (cost, size) pairs, weighted by size, stay under."""
    if sum(p[1] for p in pairs) < 200:
        return fallback
    rates = sorted((cost / size, size) for cost, size in pairs if size > 0)
    seen, total = 0.0, sum(size for _, size in rates)
    for rate, size in rates:
        seen += size
        if seen >= total * 3 / 4:
            return rate
    return rates[-1][0]


def _letters_cost(letters: str, pairs: dict[str, float], upper: float, capital: float) -> float:
    """Tokens beyond the first of ASCII letters, as engine.llm.tokens._word counts them."""
    cost = 0.0
    for i, hump in enumerate(tokens._HUMPS.findall(letters)):
        lower = hump.lower()
        cost += (1.0 if i else 0.0) + sum(pairs[lower[j : j + 2]] for j in range(len(hump) - 1))
        cost += (len(hump) - 1) * upper if hump.isupper() else capital if hump[0].isupper() else 0.0
    return cost


def _cuts(lengths: list[int]) -> set[int]:
    """The positions between characters where a token ends."""
    cuts, at = set(), 0
    for length in lengths[:-1]:
        at += length
        cuts.add(at)
    return cuts


def _base36(n: int) -> str:
    return "0123456789abcdefghijklmnopqrstuvwxyz"[n]


def _batched(count: Callable[[list[str]], list[Any]], texts: list[str], size: int = 40_000) -> list[Any]:
    return [r for i in range(0, len(texts), size) for r in count(texts[i : i + size])]


# Fixtures for the tests ------------------------------------------------------------------------------

FIXTURE_COMMIT = "9d5062b"  # this repository's files and history as they were when the fixtures were made
FIXTURE_FILES = {
    "python": "engine/llm/client.py",
    "markdown": "docs/architecture.md",
    "json": "tests/fixtures/github-webhooks/examples/check_run/completed.1.payload.json",
    "yaml": "app.yml",
    "seccomp json (tabs)": "deploy/worker-seccomp.json",
}
FIXTURE_MIRRORS = {
    "go": "gin-gonic+gin:context.go",
    "rust": "BurntSushi+ripgrep:crates/core/main.rs",
    "java": "apache+commons-lang:src/main/java/org/apache/commons/lang3/StringUtils.java",
    "typescript": "vuejs+core:packages/reactivity/src/effect.ts",
}


def fixtures() -> dict[str, str]:
    """Texts of every kind the estimate must not count low, each a few KB: this repository's own files,
    a few open-source files' openings (MIT or Apache licensed), and made-up texts of the awkward kinds."""
    import base64
    import random

    def show(spec: str) -> str:
        out = subprocess.run(["git", "-C", str(REPO), "show", spec], capture_output=True, check=True)
        return out.stdout.decode()

    texts = {kind: _head(show(f"{FIXTURE_COMMIT}:{path}"), 3000) for kind, path in FIXTURE_FILES.items()}
    texts |= {kind: _head(next(_git_file(spec))[1], 3000) for kind, spec in FIXTURE_MIRRORS.items()}
    texts["diff"] = _head(show(f"{FIXTURE_COMMIT}~3"), 3000)
    log = ["git", "-C", str(REPO), "log", "-n12", "--format=%s%n%n%b", FIXTURE_COMMIT]
    messages = subprocess.run(log, capture_output=True, text=True, check=True).stdout
    texts["commit messages"] = _head(messages, 3000)
    rng = random.Random(20)
    texts["base64 certificate"] = "-----BEGIN CERTIFICATE-----\n" + "\n".join(
        base64.b64encode(rng.randbytes(48)).decode() for _ in range(20)
    )
    texts["hashes"] = "\n".join(
        f'"{name}": {{"version": "1.{i}.0", "integrity": "sha256-{rng.randbytes(32).hex()}"}},'
        for i, name in enumerate(["left-pad", "lodash", "react", "vue", "zod", "yaml", "marked", "chalk"] * 3)
    )
    texts["nested json"] = json.dumps({"a": [{"b": {"c": [1, 2, {"d": "deep"}]}}] * 12}, indent=8)
    texts["long identifiers"] = "\n".join(
        f"AbstractSingletonProxyFactoryBean{i} configurationPropertiesBindingPostProcessor{i} = "
        f"new AbstractSingletonProxyFactoryBean{i}(transactionAwareDataSourceProxyRegistrar_{i});"
        for i in range(20)
    )
    texts["mashed keys"] = "\n".join(
        "".join(rng.choice("asdfghjklqwertzuiop") for _ in range(60)) + f" = {i}" for i in range(20)
    )
    texts["prose, several languages"] = NON_ASCII_PROSE
    texts["emoji and symbols"] = "\n".join(
        f'    "{name}": "{emoji}",  # {arrow} ≥ {i}° · “quoted” — ⠋⠙⠹'
        for i, (name, emoji, arrow) in enumerate(
            [
                ("rocket", "🚀", "→"),
                ("flag", "🇩🇬", "←"),
                ("family", "👨\u200d👩\u200d👦", "↔"),
                ("ok", "✅", "⇒"),
            ]
            * 6
        )
    )
    return texts


NON_ASCII_PROSE = """\
Русский: Этот текст проверяет, что оценка числа токенов не занижает их для кириллицы и длинных слов.
Ελληνικά: Αυτό το κείμενο ελέγχει ότι η εκτίμηση δεν μετρά λιγότερα κομμάτια από όσα πραγματικά υπάρχουν.
中文：这段文字用来检查估计的令牌数不会低于真实的数量，即使是很长的句子也一样。
日本語：この文章は、見積もりが実際のトークン数を下回らないことを確かめるためのものです。
한국어: 이 문장은 추정치가 실제 토큰 수보다 적게 세지 않는지 확인합니다.
العربية: يتحقق هذا النص من أن التقدير لا يقل عن العدد الحقيقي للرموز.
עברית: הטקסט הזה בודק שההערכה אינה נמוכה ממספר האסימונים האמיתי.
हिन्दी: यह पाठ जाँचता है कि अनुमान वास्तविक टोकन संख्या से कम न हो।
ไทย: ข้อความนี้ตรวจสอบว่าการประมาณไม่ต่ำกว่าจำนวนโทเค็นจริง
Tiếng Việt: Đoạn văn này kiểm tra rằng ước lượng không thấp hơn số token thật.
Deutsch: Größenordnungsabschätzungen für Übersetzungsprogramme dürfen nicht zu niedrig ausfallen.
"""


def _head(text: str, size: int) -> str:
    return next(_chunks(text, size), "")


def write_fixtures(path: Path) -> None:
    texts = fixtures()
    counts = real_counts(list(texts.values()))
    entries = {
        name: {"o200k_base": o200k, "cl100k_base": cl100k, "text": text}
        for (name, text), (o200k, cl100k) in zip(texts.items(), counts, strict=True)
    }
    note = (
        "Real token counts of each text, made by `uv run python bench/token_estimate.py --fixtures "
        f"{path.relative_to(REPO)}` with the npm package gpt-tokenizer (o200k_base, cl100k_base). "
        "The texts: this repository's files at commit "
        f"{FIXTURE_COMMIT}, the openings of gin, ripgrep, commons-lang and vue files, and made-up texts."
    )
    path.write_text(json.dumps({"how": note, "texts": entries}, ensure_ascii=False, indent=1) + "\n")
    for name, entry in entries.items():
        real = max(entry["o200k_base"], entry["cl100k_base"])
        print(f"{name}: real {real}, estimate {tokens.count_tokens(entry['text'])}")


# What is printed -------------------------------------------------------------------------------------


def ratios(texts: list[str], real: list[tuple[int, int]], count: Callable[[str], int]) -> list[float]:
    """The worse encoding's real count over the estimate, per text."""
    return [max(r) / count(t) for t, r in zip(texts, real, strict=True)]


def spread(values: list[float]) -> str:
    return f"{min(values):.3f} · {statistics.median(values):.3f} · {max(values):.3f}"


def micro_seconds_per_kb(texts: list[str], count: Callable[[str], int]) -> float:
    size = sum(len(t.encode()) for t in texts) / 1000
    start = time.perf_counter()
    for text in texts:
        count(text)
    return (time.perf_counter() - start) * 1e6 / size


def report(name: str, kinds: dict[str, list[str]]) -> None:
    print(f"\n{name} corpus: real / estimated tokens, the worse of o200k_base and cl100k_base")
    print("| kind | chunks | KB | old: min · median · max | new: min · median · max |")
    print("|---|---|---|---|---|")
    everything: list[str] = []
    real_all: list[tuple[int, int]] = []
    for kind, texts in kinds.items():
        if not texts:
            continue
        real = real_counts(texts)
        everything += texts
        real_all += real
        kb = sum(len(t.encode()) for t in texts) / 1000
        old = spread(ratios(texts, real, old_count))
        new = spread(ratios(texts, real, tokens.count_tokens))
        print(f"| {kind} | {len(texts)} | {kb:.0f} | {old} | {new} |")
    print(
        f"| all | {len(everything)} | {sum(len(t.encode()) for t in everything) / 1000:.0f}"
        f" | {spread(ratios(everything, real_all, old_count))}"
        f" | {spread(ratios(everything, real_all, tokens.count_tokens))} |"
    )
    highest = max(ratios(everything, real_all, tokens.count_tokens))
    scale = tokens._SCALE * highest / 0.95
    print(f"highest real / estimate: {highest:.3f}; for 0.95 at most: _SCALE = {scale:.3f}")
    for label, count in (("old", old_count), ("new", tokens.count_tokens)):
        _old_line.cache_clear()
        tokens._count_line.cache_clear()
        tokens._COSTS.clear()
        cold = micro_seconds_per_kb(everything, count)
        pack = everything[::10][:40]  # about a context pack's worth of text, counted again as budget.fit does
        micro_seconds_per_kb(pack, count)
        warm = micro_seconds_per_kb(pack, count)
        print(f"{label}: {cold:.0f} µs per KB counted first, {warm:.0f} µs per KB again (lines cached)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", choices=("fit", "check", "both"), default="both")
    parser.add_argument("--chunk", type=int, default=4000)
    parser.add_argument("--per-kind", type=int, default=300)
    parser.add_argument("--fit", action="store_true", help="print the tables fitted on the fit corpus")
    parser.add_argument("--fixtures", type=Path, help="write the tests' texts and their real counts here")
    args = parser.parse_args()
    if args.fixtures:
        write_fixtures(args.fixtures.resolve())
        return 0
    if args.fit:
        print(fit({k: sample(v, args.chunk, args.per_kind) for k, v in fit_corpus().items()}))
        return 0
    corpora = {"fit": fit_corpus, "check": check_corpus}
    for name in ("fit", "check") if args.corpus == "both" else (args.corpus,):
        kinds = {k: sample(v, args.chunk, args.per_kind) for k, v in corpora[name]().items()}
        report(name, kinds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
