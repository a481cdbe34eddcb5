"""Build the localization suite: (issue-like text → files the fix changed) pairs from public fix commits.

    uv run python bench/localization/build_suite.py [--mirrors /work/.mirror] [--per-repo 25]
        [--out bench/localization/suite.jsonl] [--repos data/localization/repos]

For each repository in REPOS it reads the history (a local mirror `<mirrors>/<owner>+<name>/repo` when
given, else a clone of https://github.com/<owner>/<name>), keeps non-merge commits whose message describes a
bug fix and that modify 1-3 existing source files (tests, docs, changelogs, examples, benchmarks and
vendored code do not count, and a commit touching more than 4 source files is a refactor, not a fix), and
writes one JSONL line per pair:

    {"instance_id", "repo", "language", "repo_dir", "commit", "fix_commit", "query", "gold_files"}

`commit` is the fix's parent: the tree the ranking is evaluated on. The query is the commit message with
trailers, URLs and any line that names a changed file (path or base name) removed, so the answer is not
spelled out. `--repos` gets one plain clone per repository (no checkout) for `autodev eval-localization`,
which checks out each instance's `commit` there.

Pairs are chosen evenly across each repository's history with a fixed seed, so a rebuild from the same
history gives the same suite.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
from pathlib import Path

# owner/name → language of its source files. Python repositories from SWE-bench Lite are left out on
# purpose: that set is the held-out judge and nothing here should resemble tuning to it.
REPOS: dict[str, str] = {
    "pallets/click": "python",
    "encode/httpx": "python",
    "psf/black": "python",
    "python-attrs/attrs": "python",
    "marshmallow-code/marshmallow": "python",
    "tornadoweb/tornado": "python",
    "pypa/pip": "python",
    "spf13/cobra": "go",
    "gin-gonic/gin": "go",
    "BurntSushi/ripgrep": "rust",
    "clap-rs/clap": "rust",
    "axios/axios": "javascript",
    "expressjs/express": "javascript",
    "vuejs/core": "typescript",
    "google/gson": "java",
    "apache/commons-lang": "java",
}
SOURCE_SUFFIXES = {
    "python": (".py",),
    "go": (".go",),
    "rust": (".rs",),
    "javascript": (".js", ".mjs", ".cjs", ".ts"),
    "typescript": (".ts", ".tsx", ".js"),
    "java": (".java",),
}
NOT_SOURCE = re.compile(
    r"(^|/)(tests?|testing|__tests__|spec|specs|docs?|examples?|benches|benchmarks?|vendor|_vendor|"
    r"third_party|fixtures|scripts|\.github)/"
    r"|(^|/)(test_[^/]*|[^/]*_test\.(py|go)|[^/]*\.(test|spec)\.[jt]sx?|[^/]*Tests?\.java|conftest\.py"
    r"|setup\.py|noxfile\.py|build\.rs)$"
)
FIX_WORDS = re.compile(
    r"\b(fix(es|ed)?|bug|crash(es)?|regression|incorrect(ly)?|wrong|broken|error|fails?|failing|"
    r"exception|panic(s)?|closes? #|resolves? #)\b",
    re.I,
)
SKIP_SUBJECT = re.compile(
    r"^(revert|merge|bump|release|prepare|update (the )?(changelog|docs)|chore|ci|docs?|test|style|build)"
    r"\b|typo|dependabot|pre-commit",
    re.I,
)
TRAILER = re.compile(
    r"^\s*(signed-off-by|co-authored-by|reviewed-by|acked-by|tested-by|reported-by|cc|change-id|"
    r"\(cherry picked from|git-svn-id)\b",
    re.I,
)
CONVENTIONAL = re.compile(r"^\w+(\([^)]*\))?!?:\s*")  # `fix(compiler-sfc): ` names the package: dropped
URL = re.compile(r"https?://\S+")
MIN_QUERY_CHARS = 50
MAX_QUERY_CHARS = 4000
MAX_GOLD = 3
MAX_SOURCE_CHANGED = 4


def git(git_dir: Path, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True, text=True, errors="replace"
    ).stdout


def mirror_of(repo: str, mirrors: Path | None, work: Path) -> Path:
    """A git directory holding the repository's history: the local mirror, or a bare clone made once."""
    if mirrors is not None:
        candidate = mirrors / repo.replace("/", "+") / "repo"
        if candidate.is_dir():
            return candidate
    bare = work / "bare" / (repo.replace("/", "+") + ".git")
    if not bare.is_dir():
        bare.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "clone", "-q", "--bare", f"https://github.com/{repo}.git", str(bare)], check=True
        )
    return bare


def is_source(path: str, language: str) -> bool:
    return path.endswith(SOURCE_SUFFIXES[language]) and not NOT_SOURCE.search(path) and ".d.ts" not in path


def clean_query(message: str, changed: list[str]) -> str:
    """The message without trailers, URLs, a conventional-commit prefix or lines naming a changed file."""
    lines = message.strip().splitlines()
    if lines:
        lines[0] = CONVENTIONAL.sub("", lines[0])
    names = {p for path in changed for p in (path, path.rsplit("/", 1)[-1])}
    kept = []
    for line in lines:
        if TRAILER.match(line) or any(name in line for name in names):
            continue
        kept.append(URL.sub("", line).rstrip())
    text = "\n".join(kept).strip()
    return re.sub(r"\n{3,}", "\n\n", text)[:MAX_QUERY_CHARS]


def candidates(git_dir: Path, repo: str, language: str) -> list[dict[str, object]]:
    log = git(git_dir, "log", "--no-merges", "--format=%x00%H %P%x01%B", "HEAD")
    found = []
    for record in log.split("\0"):
        if "\x01" not in record:
            continue
        head, message = record.split("\x01", 1)
        shas = head.split()
        if len(shas) != 2:
            continue
        fix, parent = shas
        subject = message.strip().splitlines()[0] if message.strip() else ""
        if SKIP_SUBJECT.search(subject) or not FIX_WORDS.search(message):
            continue
        status = git(
            git_dir, "diff-tree", "--no-commit-id", "-r", "--name-status", "--no-renames", parent, fix
        )
        changed = [line.split("\t", 1) for line in status.splitlines() if "\t" in line]
        source = [(kind, path) for kind, path in changed if is_source(path, language)]
        gold = sorted(path for kind, path in source if kind == "M")
        if not gold or len(gold) > MAX_GOLD or len(source) > MAX_SOURCE_CHANGED:
            continue
        query = clean_query(message, [path for _, path in changed])
        if len(query) < MIN_QUERY_CHARS:
            continue
        found.append(
            {
                "instance_id": f"{repo}@{fix[:10]}",
                "repo": repo,
                "language": language,
                "repo_dir": repo.replace("/", "+"),
                "commit": parent,
                "fix_commit": fix,
                "query": query,
                "gold_files": gold,
            }
        )
    return found


def spread(items: list[dict[str, object]], count: int, seed: str) -> list[dict[str, object]]:
    """`count` items spread evenly along the list (newest first), each from a seeded spot in its slice."""
    if len(items) <= count:
        return items
    rng = random.Random(seed)
    step = len(items) / count
    return [items[int(i * step + rng.random() * step)] for i in range(count)]


def prepare_clone(git_dir: Path, target: Path) -> None:
    """A working clone (nothing checked out yet) the evaluation checks commits out in."""
    if (target / ".git").is_dir():
        subprocess.run(
            ["git", "-C", str(target), "fetch", "-q", str(git_dir), "+HEAD:refs/suite/head"], check=True
        )
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(git_dir), str(target)], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mirrors", type=Path, help="folder of <owner>+<name>/repo git directories")
    parser.add_argument("--work", type=Path, default=Path("data/localization"), help="bare clones go here")
    parser.add_argument("--repos", type=Path, default=Path("data/localization/repos"))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("suite.jsonl"))
    parser.add_argument("--per-repo", type=int, default=25)
    parser.add_argument("--no-clones", action="store_true", help="write the JSONL only")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    for repo, language in REPOS.items():
        git_dir = mirror_of(repo, args.mirrors, args.work)
        found = candidates(git_dir, repo, language)
        chosen = spread(found, args.per_repo, repo)
        print(f"{repo:<32} {language:<11} {len(found):>5} fix commits, {len(chosen)} taken", file=sys.stderr)
        rows.extend(chosen)
        if not args.no_clones:
            prepare_clone(git_dir, args.repos / repo.replace("/", "+"))
    args.out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    print(f"{len(rows)} pairs → {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
