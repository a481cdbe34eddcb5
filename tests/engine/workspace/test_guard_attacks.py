"""The edit guard against a hostile model: names, symlinks, protected patterns, races and special files."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import pytest

from engine.repo_config import parse_repo_config
from engine.workspace.guard import EditGuard, EditRefused

ESCAPES = [
    "../outside",
    "../../etc/passwd",
    "sub/../../x",
    "a/b/../../../x",
    "./../x",
    "/etc/x",
    "//etc/x",
    "~/x",
    "~root/x",
    "C:/x",
    "c:x",
    "..\\x",
    "a\\..\\..\\x",
    "",
    "   ",
    ".",
    "./",
    "a/\x00b",
    "a\nb",
    "a\rb",
    "tab\there",
    "esc\x1b[0m",
    "lone\ud800surrogate",
    "x" * 2000,
]
GIT_NAMES = [
    ".git",
    ".git/config",
    ".git/hooks/pre-commit",
    "sub/.git/config",
    ".GIT/config",
    ".Git/HEAD",
    "a/.gIt/x",
    ".git./x",
    ".git../x",
    ".git /x",
    ".git . /x",
    ".git::$INDEX_ALLOCATION/x",
    ".git:stream",
    "git~1/config",
    "GIT~1/config",
    "git~1. /x",
    ".g\u200cit/config",
    ".gi\u200dt/config",
    "\ufeff.git/config",
    ".git\u200e/x",
]
PROTECTED_BY_DEFAULT = [
    ".github/workflows/ci.yml",
    ".github/workflows/new.yml",
    ".github/workflows/deep/x.yml",
    ".github/workflows",
    "./.github//workflows/ci.yml",
    ".github/actions/setup/action.yml",
    ".github/autodev.yml",
    ".GitHub/Workflows/ci.yml",
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "sub").mkdir()
    return root


def nothing_outside(tmp_path: Path) -> bool:
    return sorted(p.name for p in tmp_path.iterdir()) == ["tree"]


@pytest.mark.parametrize("path", ESCAPES + GIT_NAMES + PROTECTED_BY_DEFAULT)
def test_a_hostile_name_is_refused_for_write_and_delete_and_nothing_is_written(
    tmp_path: Path, tree: Path, path: str
) -> None:
    guard = EditGuard(tree)
    with pytest.raises(EditRefused):
        guard.write(path, "x")
    with pytest.raises(EditRefused):
        guard.delete(path)
    assert nothing_outside(tmp_path)
    assert sorted(p.name for p in tree.iterdir()) == ["sub"] and guard.changed == set()


@pytest.mark.parametrize("path", [".GIT/config", ".git./x", ".git /x", "git~1/x", "a\\.git\\x"])
def test_a_name_git_refuses_is_refused_with_gits_reason(tree: Path, path: str) -> None:
    with pytest.raises(EditRefused, match=r"git|\\.git|backslash") as refused:
        EditGuard(tree).write(path, "x")
    assert "protected" not in refused.value.reason


def test_names_git_accepts_are_written(tree: Path) -> None:
    guard = EditGuard(tree)
    accepted = (".gitignore", ".github/CODEOWNERS", "a.git/x", "git/x", ".gitx/y", "d/.github/workflows.md")
    for path in accepted:
        assert guard.write(path, "x") == path
    assert guard.write("./src//main.py", "y") == "src/main.py"
    assert (tree / "src/main.py").read_text() == "y"


@pytest.mark.parametrize(
    ("patterns", "refused", "allowed"),
    [
        (["secrets"], ["secrets", "secrets/prod.env", "app/secrets/key"], ["secretsx", "my_secrets.txt"]),
        (["/config/**"], ["config/app.yml", "config/a/b.yml"], ["src/config/app.yml", "configx/a"]),
        (["infra/"], ["infra/main.tf", "deploy/infra/x.tf"], ["infra.md", "infrastructure/x"]),
        (["*.pem", "!public.pem"], ["key.pem", "a/b/key.pem"], ["public.pem", "pem.txt"]),
        (["secrets/*", "deploy/**"], ["secrets/prod.env", "deploy/k8s/app.yml"], ["src/ok.py"]),
        (["/Makefile"], ["Makefile"], ["sub/Makefile"]),
        (["infra/", "!infra/ok.txt"], ["infra/ok.txt"], []),  # as git: no re-including under a directory
    ],
)
def test_protected_patterns_have_gitignore_semantics(
    tree: Path, patterns: list[str], refused: list[str], allowed: list[str]
) -> None:
    guard = EditGuard(tree, patterns)
    for path in refused:
        with pytest.raises(EditRefused, match="protected"):
            guard.write(path, "x")
        assert not (tree / path).exists()
    for path in allowed:
        assert guard.write(path, "x") == path


def test_the_repository_config_cannot_unprotect_the_defaults(tree: Path) -> None:
    config = parse_repo_config("protected_paths:\n  - '!.github/workflows/'\n  - '!/.github/autodev.yml'\n")
    guard = EditGuard(tree, config.protected_paths)
    for path in (".github/workflows/ci.yml", ".github/autodev.yml", ".github/actions/a/action.yml"):
        with pytest.raises(EditRefused, match="protected"):
            guard.write(path, "x")


def test_a_symlink_into_a_protected_directory_is_refused_as_protected(tmp_path: Path, tree: Path) -> None:
    """Regression: a link `docs_wf -> .github/workflows` let a write land in .github/workflows/."""
    (tree / ".github/workflows").mkdir(parents=True)
    (tree / ".github/workflows/ci.yml").write_text("on: push\n")
    (tree / "docs_wf").symlink_to(".github/workflows")
    (tree / "ci_link.yml").symlink_to(".github/workflows/ci.yml")
    guard = EditGuard(tree)
    for path in ("docs_wf/ci.yml", "docs_wf/new.yml", "ci_link.yml"):
        with pytest.raises(EditRefused, match="protected"):
            guard.write(path, "on: pull_request_target\n")
    with pytest.raises(EditRefused, match="protected"):
        guard.delete("docs_wf/ci.yml")
    assert sorted(os.listdir(tree / ".github/workflows")) == ["ci.yml"]
    assert (tree / ".github/workflows/ci.yml").read_text() == "on: push\n"
    assert (tree / "ci_link.yml").is_symlink()


def test_writes_never_follow_a_symlink_even_inside_the_tree(tree: Path) -> None:
    (tree / "real").mkdir()
    (tree / "real/a.txt").write_text("a")
    (tree / "alias").symlink_to("real")
    (tree / "a_link.txt").symlink_to("real/a.txt")
    guard = EditGuard(tree)
    with pytest.raises(EditRefused, match=r"'real/b\.txt'"):
        guard.write("alias/b.txt", "x")
    with pytest.raises(EditRefused, match="symlink"):
        guard.write("a_link.txt", "x")
    assert (tree / "real/a.txt").read_text() == "a" and not (tree / "real/b.txt").exists()
    # Reading may follow a link that stays inside; the real path is what is reported.
    assert guard.read("alias/a.txt") == "a" and guard.read("a_link.txt") == "a"
    with guard.open_file("alias/a.txt") as opened:
        assert opened.rel == "real/a.txt"
    # Deleting a link removes the link, never its target.
    assert guard.delete("a_link.txt") == "a_link.txt"
    assert not (tree / "a_link.txt").is_symlink() and (tree / "real/a.txt").exists()


def test_reads_refuse_symlinks_that_leave_the_tree_or_reach_git(tmp_path: Path, tree: Path) -> None:
    (tmp_path / "secret.txt").write_text("s3cret")
    (tree / ".git").mkdir()
    (tree / ".git/config").write_text("[core]")
    links = {
        "abs": str(tmp_path / "secret.txt"),
        "rel": "../secret.txt",
        "deep": "sub/../../secret.txt",
        "gitdir": ".git",
        "gitcfg": ".git/config",
        "loop": "loop",
    }
    for name, target in links.items():
        (tree / name).symlink_to(target)
    (tree / "sub/up").symlink_to("..")
    guard = EditGuard(tree)
    for path in ("abs", "rel", "deep", "gitdir/config", "gitcfg", "sub/up/rel", "sub/up/sub/up/abs", "loop"):
        with pytest.raises(EditRefused, match=r"outside|git's own|too many"):
            guard.read(path)


def test_a_directory_flipping_to_a_symlink_never_lets_a_byte_out(tmp_path: Path, tree: Path) -> None:
    """Regression: flipping a directory to a symlink between the check and the write put 4 of 1,793
    writes outside the worktree."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (tree / "sub/deeper").mkdir()
    guard = EditGuard(tree)
    stop = threading.Event()
    flips = strays = 0

    def put(src: str, dst: str) -> None:
        """rename src → dst; a `dst` directory the guard made in the gap is moved aside (inside the tree)."""
        nonlocal strays
        while True:
            try:
                os.rename(tree / src, tree / dst)
                return
            except OSError:
                strays += 1
                with contextlib.suppress(OSError):
                    os.rename(tree / dst, tree / f"stray{strays}")

    def flip() -> None:
        nonlocal flips
        while not stop.is_set():
            put("sub", "sub.real")
            os.symlink(outside, tree / "sub.tmp")
            put("sub.tmp", "sub")  # "sub" is now a symlink to outside, atomically
            put("sub", "sub.link")
            put("sub.real", "sub")
            flips += 1

    descriptors = len(os.listdir("/proc/self/fd"))
    flipper = threading.Thread(target=flip)
    flipper.start()
    written = refused = 0
    try:
        give_up = time.monotonic() + 2.0
        i = 0
        while time.monotonic() < give_up:
            i += 1
            for path in (f"sub/f{i % 50}.txt", f"sub/deeper/g{i % 50}.txt", f"sub/new{i % 7}/h.txt"):
                try:
                    guard.write(path, "payload")
                    written += 1
                except (EditRefused, OSError):
                    refused += 1
    finally:
        stop.set()
        flipper.join()
    assert list(outside.iterdir()) == [], "a write landed outside the worktree"
    assert len(os.listdir("/proc/self/fd")) == descriptors, "a refused walk left a descriptor open"
    assert flips > 100 and written > 100 and refused > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "tree"]


def test_a_fifo_is_refused_at_once_never_waited_on(tree: Path) -> None:
    """Regression: read_file on a FIFO blocked until something wrote to it."""
    os.mkfifo(tree / "pipe")
    (tree / "pipe_link").symlink_to("pipe")
    guard = EditGuard(tree)
    started = time.monotonic()
    for path in ("pipe", "pipe_link"):
        with pytest.raises(EditRefused, match="FIFO"):
            guard.read(path)
    with pytest.raises(EditRefused, match="FIFO"):
        guard.write("pipe", "x")
    with pytest.raises(EditRefused, match="FIFO"):
        guard.delete("pipe")
    with pytest.raises(EditRefused, match="FIFO"), guard.open_file("pipe", for_write=True):
        pass
    assert time.monotonic() - started < 1.0
    assert (tree / "pipe").exists()


def test_a_directory_is_neither_read_nor_overwritten(tree: Path) -> None:
    guard = EditGuard(tree)
    with pytest.raises(EditRefused, match="directory"):
        guard.read("sub")
    with pytest.raises(EditRefused, match="directory"):
        guard.write("sub", "x")
    with pytest.raises(EditRefused, match="directory"):
        guard.delete("sub")
    assert (tree / "sub").is_dir()


def test_a_write_replaces_the_file_and_keeps_its_mode(tmp_path: Path, tree: Path) -> None:
    """A hard link to a file outside is replaced, not written through; the executable bit survives."""
    (tmp_path / "outside.txt").write_text("untouched")
    os.link(tmp_path / "outside.txt", tree / "hard.txt")
    (tree / "run.sh").write_text("#!/bin/sh\n")
    (tree / "run.sh").chmod(0o755)
    guard = EditGuard(tree)
    guard.write("hard.txt", "new")
    guard.write("run.sh", "#!/bin/sh\necho hi\n")
    assert (tmp_path / "outside.txt").read_text() == "untouched"
    assert (tree / "hard.txt").read_text() == "new"
    assert (tree / "run.sh").stat().st_mode & 0o777 == 0o755
    assert not [p for p in tree.rglob("*.tmp")], "no temporary file is left behind"


def test_the_walk_lists_without_entering_symlinks(tmp_path: Path, tree: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/secret.txt").write_text("s")
    (tree / "sub/a.py").write_text("")
    (tree / "b.py").write_text("")
    (tree / "out").symlink_to(tmp_path / "outside")
    os.mkfifo(tree / "pipe")
    entries = [(e.rel, e.kind) for e in EditGuard(tree).walk()]
    assert entries == [("b.py", "file"), ("out", "link"), ("pipe", "other"), ("sub/a.py", "file")]
    listed = list(EditGuard(tree).walk(limit=2))
    assert listed[-1].kind == "truncated"


def test_a_repo_config_with_a_bad_pattern_names_it() -> None:
    from engine.errors import PermanentFailure

    with pytest.raises(PermanentFailure, match="protected_paths"):
        parse_repo_config("protected_paths: ['!']\n")
    assert parse_repo_config("protected_paths: |\n  secrets\n  # infra\n  /config/**\n").protected_paths == [
        "secrets",
        "/config/**",
    ]


def test_a_path_too_deep_holds_no_pile_of_descriptors(tree: Path) -> None:
    guard = EditGuard(tree)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError, match="directories deep"):
        guard.write("/".join(["d"] * 300) + "/f.txt", "x")
    assert guard.write("/".join(["d"] * 60) + "/f.txt", "x").endswith("/f.txt")
    assert len(os.listdir("/proc/self/fd")) == before
