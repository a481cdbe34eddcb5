"""What part a file plays in a repository (source, test, docs, vendored…) and how likely a fix is to touch it.

A fix rarely edits documentation, changelogs, benchmarks, examples, vendored or generated files, a test is
useful to read but is rarely the file to fix, and a type declaration (`.pyi`, `.d.ts`) repeats the names of
the code it describes without its logic: their scores are multiplied by a prior below 1. A
repository can move paths between roles in `.github/autodev.yml`:

    context:
      exclude: ["legacy/**"]      # never ranked
      include: ["docs/conf.py"]   # ranked as source whatever the defaults say
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from engine.errors import PermanentFailure
from engine.repo_config import CONFIG_PATH, parse_repo_config

log = logging.getLogger(__name__)

_CODE_SUFFIXES_TEXT = """
    py pyi pyx go rs js jsx mjs cjs ts tsx mts cts vue svelte java kt kts scala groovy c h cc cpp cxx hpp hh
    cs fs rb php swift m mm lua pl pm r jl ex exs erl hs ml clj dart zig nim sh bash sql"""
CODE_SUFFIXES = frozenset(_CODE_SUFFIXES_TEXT.split())
PRIORS = {
    "source": 1.0,
    "config": 0.6,  # build files, manifests, settings: sometimes the fix, seldom the whole of it
    "declaration": 0.6,  # .pyi, .d.ts: the names of the code beside them, not its logic
    "test": 0.35,
    "example": 0.3,
    "docs": 0.15,
    "vendored": 0.05,
    "generated": 0.05,
}
_VENDORED = re.compile(r"(^|/)(vendor|vendored|_vendor|third_party|thirdparty|external|extern|node_modules)/")
_GENERATED = re.compile(
    r"^(dist|build|out|target|\.next)/|(^|/)(generated|__generated__)/"
    r"|(\.min\.(js|css)|_pb2\.pyi?|_pb2_grpc\.py|\.pb\.go|\.pb\.(h|cc)|\.g\.dart|\.generated\.\w+|\.snap"
    r"|(^|/)(package-lock\.json|yarn\.lock|pnpm-lock\.yaml|poetry\.lock|Cargo\.lock|go\.sum|uv\.lock))$"
)
_TEST = re.compile(
    r"(^|/)(tests?|testing|__tests__|__mocks__|spec|specs|testdata|test_data|fixtures|src/test)/"
    r"|(^|/)(test_[^/]*\.py|[^/]*_tests?\.(py|go|rs)|[^/]*\.(test|spec)\.[cm]?[jt]sx?|[^/]*Tests?\.(java|kt|cs)"
    r"|conftest\.py)$"
)
_DECLARATION = re.compile(r"\.(pyi|d\.[cm]?ts)$")
_EXAMPLE = re.compile(r"(^|/)(examples?|samples?|demos?|bench|benches|benchmarks?|asv_bench|playground)/")
_DOCS = re.compile(
    r"(^|/)(docs?|documentation|man|changelog\.d|changes|news|\.github)/"
    r"|\.(md|mdx|rst|txt|adoc|asciidoc|rdoc|tex|ipynb|po)$"
    r"|(^|/)(changelog|changes|history|news|authors|contributors|license|licence|copying|notice|readme)"
    r"(\.\w+)?$",
    re.I,
)


def _role(path: str) -> str:
    lowered = path.lower()
    if _VENDORED.search(lowered):
        return "vendored"
    if _GENERATED.search(path):
        return "generated"
    if _TEST.search(path):
        return "test"
    if _DOCS.search(path):
        return "docs"
    if _EXAMPLE.search(lowered):
        return "example"
    if _DECLARATION.search(lowered):
        return "declaration"
    suffix = lowered.rsplit(".", 1)[-1] if "." in lowered.rsplit("/", 1)[-1] else ""
    return "source" if suffix in CODE_SUFFIXES else "config"


@lru_cache(maxsize=100_000)
def role_of(path: str) -> str:
    """The role of a path by its name alone: vendored, generated, test, docs, example, declaration, source
    or config."""
    return _role(path)


@dataclass(frozen=True)
class RolePolicy:
    """The default priors, with the repository's own excludes and includes (glob patterns) on top."""

    exclude: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    priors: dict[str, float] = field(default_factory=lambda: dict(PRIORS))

    @classmethod
    def of(cls, exclude: Iterable[str] = (), include: Iterable[str] = ()) -> RolePolicy:
        return cls(tuple(exclude), tuple(include))

    def prior(self, path: str) -> float:
        """How much of its score a file keeps: 0 for an excluded file, 1 for source or an included one."""
        if self.include and _matches(path, self.include):
            return 1.0
        if self.exclude and _matches(path, self.exclude):
            return 0.0
        return self.priors[role_of(path)]


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    # fnmatch's `*` also crosses `/`, so `docs/*` covers the whole folder; `dir/` means the folder too.
    return any(
        fnmatch.fnmatchcase(path, pattern) or (pattern.endswith("/") and path.startswith(pattern))
        for pattern in patterns
    )


DEFAULT_POLICY = RolePolicy()


def policy_for(root: Path) -> RolePolicy:
    """The policy the tree's `.github/autodev.yml` asks for; the defaults when it is absent or invalid."""
    try:
        text = (root / CONFIG_PATH).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return DEFAULT_POLICY
    try:
        config = parse_repo_config(text).context
    except PermanentFailure as error:
        log.warning("context: %s; ranking with the default roles", error)
        return DEFAULT_POLICY
    if not config.exclude and not config.include:
        return DEFAULT_POLICY
    return RolePolicy.of(config.exclude, config.include)
