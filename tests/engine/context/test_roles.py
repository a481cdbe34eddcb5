from pathlib import Path

import pytest

from engine.context import ContextEngine
from engine.context.bm25 import Bm25
from engine.context.rank import parse_query, rank_files
from engine.context.roles import PRIORS, RolePolicy, policy_for, role_of

from .conftest import make_repo


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("src/pip/_internal/req/constructors.py", "source"),
        ("src/pip/_vendor/requests/models.py", "vendored"),
        ("vendor/github.com/x/y/z.go", "vendored"),
        ("tests/test_models.py", "test"),
        ("pkg/server_test.go", "test"),
        ("packages/runtime-core/__tests__/vnode.spec.ts", "test"),
        ("src/test/java/com/google/gson/GsonTest.java", "test"),
        ("docs/usage.rst", "docs"),
        ("CHANGELOG.md", "docs"),
        ("benchmarks/bench_parse.py", "example"),
        ("examples/basic/main.rs", "example"),
        ("dist/app.min.js", "generated"),
        ("api/service_pb2.py", "generated"),
        ("Cargo.lock", "generated"),
        ("src/pip/_internal/operations/build/wheel.py", "source"),
        ("pyproject.toml", "config"),
        ("src/attr/validators.pyi", "declaration"),
        ("index.d.ts", "declaration"),
        ("types/index.d.cts", "declaration"),
        ("packages/runtime-core/__tests__/props.d.ts", "test"),
    ],
)
def test_role_of_a_path(path: str, role: str) -> None:
    assert role_of(path) == role


def test_the_repository_config_excludes_and_includes_paths(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "autodev.yml").write_text(
        "context:\n  exclude: ['legacy/*']\n  include: ['docs/conf.py']\n"
    )
    policy = policy_for(tmp_path)
    assert policy.prior("legacy/old.py") == 0.0
    assert policy.prior("docs/conf.py") == 1.0
    assert policy.prior("docs/index.rst") == RolePolicy().prior("docs/index.rst") < 1.0


def test_an_invalid_config_ranks_with_the_defaults(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "autodev.yml").write_text("context:\n  exclude: 3\n")
    assert policy_for(tmp_path) == RolePolicy()


async def test_source_outranks_the_docs_and_tests_that_talk_more_about_the_query(tmp_path: Path) -> None:
    """Regression: docs and tests crowded the source out of the top ranks (issue 20)."""
    files = {
        "shop/coupons.py": "def apply_coupon(order, code):\n    return order.total - discount(code)\n",
        "docs/coupons.md": "# Coupons\n\nA coupon code gives a discount on the order total. " * 5,
        "tests/test_coupons.py": "def test_discount():\n    assert apply_coupon(order, 'coupon code')\n" * 3,
    }
    repo = make_repo(tmp_path / "repo", files)
    ranked = await ContextEngine(tmp_path / "cache").rank_files(
        repo, "acme/shop", "coupon code discount wrong"
    )
    assert ranked[0].path == "shop/coupons.py"
    (repo / ".github").mkdir()
    (repo / ".github" / "autodev.yml").write_text("context:\n  exclude: ['shop/']\n")
    ranked = await ContextEngine(tmp_path / "cache").rank_files(
        repo, "acme/shop", "coupon code discount wrong"
    )
    assert "shop/coupons.py" not in [f.path for f in ranked]


async def test_the_implementation_outranks_the_type_stub_that_repeats_its_names(tmp_path: Path) -> None:
    """Regression: `index.d.ts` and `validators.pyi`, short and full of the API's names, ranked above the
    code that had the bug (issue 20's suite: axios, attrs)."""
    body = "\n".join(f"    value = value + {i}" for i in range(4))
    files = {
        "pkg/validators.py": f"def optional_validator(value):\n{body}\n    return value\n",
        "pkg/validators.pyi": "def optional_validator(value: object) -> object: ...\n",
        **{f"pkg/other_{i}.py": f"def other_{i}():\n    return {i}\n" for i in range(6)},
    }
    repo = make_repo(tmp_path / "repo", files)
    index, _ = await ContextEngine(tmp_path / "cache").index(repo, "acme/pkg")
    hints = parse_query("the optional validator rejects a tuple")
    flat = RolePolicy(priors={**PRIORS, "declaration": 1.0})
    assert next(f.path for f in rank_files(index, hints, policy=flat)) == "pkg/validators.pyi"
    assert [f.path for f in rank_files(index, hints)][:2] == ["pkg/validators.py", "pkg/validators.pyi"]


def test_bm25_prefers_rare_terms_and_shorter_documents() -> None:
    docs = [{"coupon": 1, "order": 1}, {"order": 1}, {"coupon": 1, "order": 1, "total": 20}, {}]
    model = Bm25(docs + [{"order": 1, "cart": 1}] * 4)
    scores = model.scores(["coupon", "order"])
    assert scores[0] > scores[2] > scores[1] > 0  # the rare term counts most, a long document less
    assert scores[3] == 0
    assert model.idf("coupon") > model.idf("order") > 0
    assert list(model.scores(["unknown"])) == [0.0] * 8


async def test_a_benchmarks_chunks_do_not_crowd_the_source_out_of_the_pack(tmp_path: Path) -> None:
    """Regression: chunk scores added their own BM25 unweighted, so a benchmark's many chunks that talk
    about the query filled the pack (`autodev context` on autodev itself: 54% of the budget in bench/)."""
    bench = "\n\n".join(
        f"def bench_webhook_signature_{i}():\n    # webhook signature verification, timed\n    verify(sig)\n"
        for i in range(40)
    )
    files = {
        "app/webhooks.py": "def verify_signature(body, signature):\n    # webhook signature check\n"
        "    return hmac.compare_digest(body, signature)\n",
        "bench/webhook_bench.py": bench,
    }
    repo = make_repo(tmp_path / "repo", files)
    pack = await ContextEngine(tmp_path / "cache").build(
        repo, "acme/app", "webhook signature verification", 3000
    )
    titles = [c["title"] for c in pack.diagnostics["chosen"] if c["source"] == "code"]
    assert titles[0].startswith("app/webhooks.py")
