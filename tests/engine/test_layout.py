"""The engine's layout: layers import only the layers above them, no module imports in a circle, and the
adapters point one way (autodev → {github_app, bot, web, workers} → engine)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engine"
# Top-level modules first, then the subpackages in the order of engine/__init__.py's docstring.
CONTRACTS = {
    "states",
    "errors",
    "views",
    "ports",
    "settings",
    "events",
    "logctx",
    "repo_config",
    "redact",
    "tracing",
}
LAYERS = ["store", "llm", "context", "workspace", "agents", "pipeline"]
ADAPTERS = ["github_app", "bot", "web", "workers"]
MAX_LINES = 320


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, wherever the import stands (top level, a function, TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def engine_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ENGINE.rglob("*.py") if "migrations" not in p.parts}
    return {
        name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()
    }


def layer_of(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    if part == "" or part in CONTRACTS:
        return 0
    return LAYERS.index(part) + 1


def test_every_engine_part_has_a_known_layer() -> None:
    parts = {p.name.removesuffix(".py") for p in ENGINE.iterdir() if p.suffix == ".py" or p.is_dir()}
    parts -= {"__init__", "__pycache__"}
    assert parts <= CONTRACTS | set(LAYERS)


def test_each_layer_imports_only_the_layers_above_it() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in engine_graph().items()
        for target in targets
        if layer_of(target) > layer_of(module)
    ]
    assert wrong == []


def test_no_engine_module_imports_itself_in_a_circle() -> None:
    graph = engine_graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            pytest.fail("import circle: " + " → ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


@pytest.mark.parametrize("package", ["engine", *ADAPTERS])
def test_imports_point_from_the_adapters_to_the_engine(package: str) -> None:
    forbidden = {"autodev", *ADAPTERS} - {package}
    wrong = [
        f"{module_name(path)} imports {target}"
        for path in (ROOT / package).rglob("*.py")
        for target in imports_of(path)
        if target.split(".")[0] in forbidden
    ]
    assert wrong == []


def test_engine_modules_read_top_to_bottom() -> None:
    """No module in engine/ grows past ~300 lines (one concern a module)."""
    long = {
        str(p.relative_to(ROOT)): n
        for p in ENGINE.rglob("*.py")
        if "versions" not in p.parts and (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_each_subpackage_says_what_it_is_for() -> None:
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((ENGINE / layer / "__init__.py").read_text()))
        assert doc, f"engine/{layer}/__init__.py has no docstring"
