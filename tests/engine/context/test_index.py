import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from engine.context import ContextEngine
from engine.context import store as store_module
from engine.context.parse import chunk_spans, parse_file
from engine.context.store import IndexCache, within_cap

from .conftest import commit, git, make_repo, write


def test_python_symbols_with_methods_and_constants(sample_repo: Path) -> None:
    entry = parse_file(sample_repo, "billing/invoice.py")
    assert entry is not None
    found = {(s.name, s.kind) for s in entry.symbols}
    assert {("InvoiceBuilder", "class"), ("add_line", "method"), ("render_invoice", "function")} <= found
    assert ("TAX_RATE", "variable") in found


def test_other_languages_get_symbols_with_spans_from_tree_sitter(sample_repo: Path) -> None:
    js = parse_file(sample_repo, "web/static/app.js")
    go = parse_file(sample_repo, "server/main.go")
    assert js is not None and go is not None
    assert {(s.name, s.kind) for s in js.symbols} == {
        ("renderCart", "function"),
        ("CartView", "class"),
        ("constructor", "method"),
        ("fetchOrders", "function"),
    }
    assert {(s.name, s.line, s.end_line) for s in go.symbols} == {("handleLogin", 3, 4), ("Session", 6, 7)}


def test_rust_java_and_typescript_definitions_and_their_spans(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "src/lib.rs": "pub struct Glob { re: String }\n\nimpl Glob {\n    pub fn builder() -> Self {\n"
            "        todo!()\n    }\n}\n\nmacro_rules! glob { () => {} }\n",
            "Dates.java": "public class Dates {\n    public static String format(long t) {\n"
            '        return "";\n    }\n}\n',
            "app.ts": "export interface Options { a: number }\n"
            "app.render = function render(view: string) {\n};\n",
        },
    )
    spans = {
        path: {(s.name, s.kind, s.line, s.end_line) for s in entry.symbols}
        for path in ("src/lib.rs", "Dates.java", "app.ts")
        if (entry := parse_file(tmp_path, path)) is not None
    }
    assert spans["src/lib.rs"] == {
        ("Glob", "class", 1, 1),
        ("Glob", "class", 3, 7),
        ("builder", "method", 4, 6),
        ("glob", "function", 9, 9),
    }
    assert spans["Dates.java"] == {("Dates", "class", 1, 5), ("format", "method", 2, 4)}
    assert spans["app.ts"] == {("Options", "class", 1, 1), ("render", "function", 2, 3)}


def test_a_language_without_a_grammar_falls_back_to_regex_symbols(tmp_path: Path) -> None:
    write(tmp_path, {"script.zig": "pub fn main() void {\n}\n"})
    entry = parse_file(tmp_path, "script.zig")
    assert entry is not None and [s.name for s in entry.symbols] == ["main"]


def test_binary_files_are_not_indexed(sample_repo: Path) -> None:
    assert parse_file(sample_repo, "assets/logo.png") is None


async def test_path_words_and_defined_names_are_fields_of_their_own(
    sample_repo: Path, tmp_path: Path
) -> None:
    index, _ = await ContextEngine(tmp_path / "cache").index(sample_repo, "acme/shop")
    by_path = dict(zip(index.paths, index.field_scores("path", ["billing"]), strict=True))
    assert by_path["billing/payment.py"] > 0 and by_path["web/static/app.js"] == 0
    assert "billing" not in index.files["billing/payment.py"].terms  # the path is not content
    by_symbol = dict(zip(index.paths, index.field_scores("symbols", ["refund"]), strict=True))
    assert by_symbol["billing/payment.py"] > 0 and by_symbol["billing/invoice.py"] == 0


def test_chunks_start_at_definitions_and_long_ones_are_windowed() -> None:
    assert chunk_spans(200, [1, 100], max_lines=80) == [(1, 80), (81, 99), (100, 179), (180, 200)]
    assert chunk_spans(30, [5, 10, 20], max_lines=80) == [(1, 30)]


def test_syntax_error_falls_back_to_regex_symbols(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def good():\n    pass\n\nclass Half(:\n")
    entry = parse_file(tmp_path, "broken.py")
    assert entry is not None and {s.name for s in entry.symbols} == {"good", "Half"}


async def test_index_is_cached_per_commit_and_reused(sample_repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    index, how = await ContextEngine(cache).index(sample_repo, "acme/shop")
    assert how["index"] == "built"
    assert "billing/invoice.py" in index.files and "assets/logo.png" not in index.files
    assert index.skipped == {"data/blob.dat"}  # listed, found binary, not parsed again next time
    assert list(IndexCache(cache).folder("acme/shop").glob("*.json"))
    # A new process (a fresh engine and an empty memory cache) reads it from disk, parsing nothing.
    from engine.context import engine as engine_module

    engine_module._LOADED.clear()
    again, how = await ContextEngine(cache).index(sample_repo, "acme/shop")
    assert how == {"index": "cached", "files_parsed": 0, "index_seconds": how["index_seconds"]}
    assert again.files.keys() == index.files.keys()


async def test_new_commit_updates_only_changed_files(sample_repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    await ContextEngine(cache).index(sample_repo, "acme/shop")
    write(sample_repo, {"billing/payment.py": "def capture_payment(intent):\n    return intent\n"})
    (sample_repo / "docs/guide.md").unlink()
    head = commit(sample_repo)
    index, how = await ContextEngine(cache).index(sample_repo, "acme/shop")
    assert how["index"].startswith("updated from") and how["files_parsed"] == 2
    assert index.commit == head
    assert "docs/guide.md" not in index.files
    assert [s.name for s in index.files["billing/payment.py"].symbols] == ["capture_payment"]
    assert "capture_payment" in index.definitions and "charge_card" not in index.definitions


async def test_uncommitted_edits_are_indexed_on_top_of_the_commit(sample_repo: Path, tmp_path: Path) -> None:
    engine = ContextEngine(tmp_path / "cache")
    await engine.index(sample_repo, "acme/shop")
    write(sample_repo, {"billing/new_rules.py": "def apply_discount(order):\n    return order\n"})
    index, how = await engine.index(sample_repo, "acme/shop")
    assert how["files_parsed"] == 1
    assert "apply_discount" in index.definitions


async def test_directory_without_git_is_cached_by_content_and_updated_from_its_stats(tmp_path: Path) -> None:
    """Regression: a tree that is not a git repository was indexed from scratch for every query (issue 20)."""
    from engine.context import engine as engine_module

    plain = tmp_path / "plain"
    write(
        plain, {"a.py": "def alpha():\n    pass\n", ".hidden/b.py": "def beta(): pass\n", "c.py": "X = 1\n"}
    )
    index, how = await ContextEngine(tmp_path / "cache").index(plain, "plain")
    assert how["index"] == "built (not a git repository)"
    assert list(index.files) == ["a.py", "c.py"]
    assert index.commit is not None and index.commit.startswith("tree:")
    engine_module._LOADED.clear()  # a new process: from the disk cache, nothing parsed
    again, how = await ContextEngine(tmp_path / "cache").index(plain, "plain")
    assert (how["index"], how["files_parsed"], again.commit) == (
        "cached (not a git repository)",
        0,
        index.commit,
    )
    write(plain, {"a.py": "def alpha_changed():\n    pass\n", "d.py": "def delta(): pass\n"})
    (plain / "c.py").unlink()
    changed, how = await ContextEngine(tmp_path / "cache").index(plain, "plain")
    assert how["files_parsed"] == 3 and sorted(changed.files) == ["a.py", "d.py"]
    assert "alpha_changed" in changed.definitions and changed.commit != index.commit


async def test_the_cache_survives_a_round_trip_unchanged(sample_repo: Path, tmp_path: Path) -> None:
    index, _ = await ContextEngine(tmp_path / "cache").index(sample_repo, "acme/shop")
    cache = IndexCache(tmp_path / "other")
    cache.save("acme/shop", index, {"README.md"})
    loaded = cache.load_latest("acme/shop")
    assert loaded is not None
    again, dirty = loaded
    assert dirty == {"README.md"}
    assert (again.repo, again.commit, again.skipped) == (index.repo, index.commit, index.skipped)
    assert again.files == index.files
    assert list(again.file_scores(["invoice"])) == list(index.file_scores(["invoice"]))


def test_a_planted_cache_file_runs_no_code_when_loaded(tmp_path: Path) -> None:
    """Regression: the cache was pickle, so a file written into the cache folder ran code in the worker."""
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    cache = IndexCache(tmp_path / "cache")
    folder = cache.folder("acme/shop")
    folder.mkdir(parents=True)
    for name in ("0123abcd.json", "0123abcd.pkl"):
        (folder / name).write_bytes(pickle.dumps({"version": 1, "index": Payload(), "dirty": []}))

    assert cache.load_latest("acme/shop") is None
    assert not marker.exists()


async def test_a_symlink_out_of_the_tree_is_never_read(tmp_path: Path) -> None:
    """Regression: a file symlinked to one outside the repository (`/proc/self/environ`, a key file) was read
    into the index, from where its text could reach a prompt."""
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("OPENAI_API_KEY=sk-live-do-not-leak\n")
    write(tmp_path / "repo", {"app.py": "def run():\n    pass\n"})
    (tmp_path / "repo" / "settings.py").symlink_to(secret)
    (tmp_path / "repo" / "linked").symlink_to(secret.parent, target_is_directory=True)
    for name in ("plain", "git"):
        if name == "git":
            git(tmp_path / "repo", "init", "-q")
            commit(tmp_path / "repo", "with links")
        index, _ = await ContextEngine(tmp_path / f"cache-{name}").index(tmp_path / "repo", f"acme/{name}")
        assert list(index.files) == ["app.py"], name
        assert "sk" not in {t for entry in index.files.values() for t in entry.terms}


def test_the_parse_workers_import_neither_the_llm_client_nor_the_database() -> None:
    """Each spawned parse worker imports engine.context.parse; openai and SQLAlchemy would cost it ~1.5 s of
    imports, and parsing was slower with them loaded (docs/benchmarks.md)."""
    heavy = "{'openai', 'sqlalchemy', 'numpy'}"
    probe = f"import engine.context.parse, sys; print(sorted({heavy} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=root, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("suffix", [".py", ".js", ".go", ".zig", ".md"])
def test_hostile_files_are_indexed_in_one_pass(tmp_path: Path, suffix: str) -> None:
    """The repository is someone else's: files crafted against the parsers' patterns (about a megabyte
    each, the most a file may be) must cost one pass, whatever the language's parser."""
    hostile = {
        "dots": "from " + "." * 1_000_000,
        "words": "a" * 1_000_000,
        "brackets": "x = " + "(" * 500_000 + "[" * 400_000,
        "indentation": "\t" * 1_000_000 + "def x",
        "keywords": "export default pub(" * 50_000,
        "lines": "#\n" * 500_000,
    }
    for name, text in hostile.items():
        (tmp_path / f"{name}{suffix}").write_text(text)
    entries = [parse_file(tmp_path, f"{name}{suffix}") for name in hostile]
    assert all(entry is not None for entry in entries)


def test_a_tree_over_the_file_limit_keeps_source_first_and_the_same_files_each_time() -> None:
    paths = {
        "src/app/deep/module.py",
        "src/app.py",
        "docs/guide.md",
        "vendor/lib/util.js",
        "tests/test_app.py",
        "setup.cfg",
    }
    assert within_cap(paths, limit=3) == {"src/app.py", "src/app/deep/module.py", "setup.cfg"}
    assert within_cap(paths, limit=3) == within_cap(set(sorted(paths, reverse=True)), limit=3)
    assert within_cap(paths, limit=6) == paths


@pytest.mark.parametrize("plain_folder", [False, True], ids=["git", "plain folder"])
async def test_a_repository_over_the_file_limit_is_indexed_in_part_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plain_folder: bool
) -> None:
    """A monorepo, or a repository made to exhaust the worker's memory (~80 KB of index a file)."""
    files = {f"pkg/mod_{i}.py": f"def handler_{i}():\n    return {i}\n" for i in range(8)}
    files |= {f"docs/page_{i}.md": f"# Page {i}\n\nhandler_{i} explained\n" for i in range(6)}
    root = tmp_path / "repo"
    if plain_folder:
        write(root, files)
    else:
        make_repo(root, files)
    monkeypatch.setattr(store_module, "MAX_FILES", 10)

    engine = ContextEngine(tmp_path / "cache")
    index, how = await engine.index(root, "acme/big")
    pack = await engine.build(root, "acme/big", "handler_3 returns the wrong value", 4_000)

    assert len(index.files) == 10 and how["files_left_out"] == 4
    assert {f"pkg/mod_{i}.py" for i in range(8)} <= set(index.files), "the source is all there"
    assert pack.diagnostics["files_left_out"] == 4
