from pathlib import Path

from engine.context import ContextEngine
from engine.context.graph import import_edges
from engine.context.rank import Weights, parse_query, rank_files

from .conftest import make_repo


def test_imports_resolve_relative_exactly_and_absolute_when_unambiguous() -> None:
    paths = ["src/pkg/__init__.py", "src/pkg/core.py", "src/pkg/utils.py", "src/other/utils.py", "tests/t.py"]
    imports = {
        "src/pkg/core.py": [".utils", ".", "..other.utils", "os"],
        "tests/t.py": ["pkg.core", "utils", "pkg"],
    }
    assert import_edges(imports, paths) == {
        "src/pkg/core.py": ["src/pkg/utils.py", "src/pkg/__init__.py", "src/other/utils.py"],
        "tests/t.py": ["src/pkg/core.py", "src/pkg/__init__.py"],  # `utils` could be either: no edge
    }


async def test_a_second_hop_lifts_the_module_the_best_hit_imports(tmp_path: Path) -> None:
    files = {
        "shop/__init__.py": "",
        "shop/checkout.py": "from .rounding import to_cents\n\n\ndef checkout_total(cart):\n"
        "    # checkout total for the cart\n    return to_cents(sum(cart))\n",
        "shop/rounding.py": "def to_cents(value):\n    return int(value * 100)\n",
        "shop/unrelated.py": "def banner():\n    return 'total'\n",
    }
    repo = make_repo(tmp_path / "repo", files)
    index, _ = await ContextEngine(tmp_path / "cache").index(repo, "acme/shop")
    assert index.imports["shop/checkout.py"] == ["shop/rounding.py"]
    hints = parse_query("checkout total for the cart is off by a penny")
    plain = [f.path for f in rank_files(index, hints)]
    hopped = rank_files(index, hints, weights=Weights(hop=0.4))
    assert "shop/rounding.py" not in plain
    assert [f.path for f in hopped][:2] == ["shop/checkout.py", "shop/rounding.py"]
    assert "imported by shop/checkout.py" in hopped[1].reasons
