"""Which files a Python file imports, resolved to paths in the repository: the edges of a second hop from
the best hits to the code they call."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence


def python_modules(paths: Iterable[str]) -> dict[str, list[str]]:
    """Every dotted name a .py file could be imported by (`src/click/core.py` → src.click.core, click.core,
    core) with the files that name could mean."""
    modules: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        if not path.endswith(".py"):
            continue
        parts = path[:-3].split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        for i in range(len(parts)):
            modules[".".join(parts[i:])].append(path)
    return dict(modules)


def _relative(importer: str, module: str, known: set[str]) -> str | None:
    level = len(module) - len(module.lstrip("."))
    package = importer.split("/")[:-1]
    if level > 1:
        package = package[: -(level - 1)] if level - 1 <= len(package) else []
    rest = [p for p in module[level:].split(".") if p]
    base = "/".join(package + rest)
    for candidate in (f"{base}.py", f"{base}/__init__.py" if base else "__init__.py"):
        if candidate in known:
            return candidate
    return None


def import_edges(imports: Mapping[str, Sequence[str]], paths: Sequence[str]) -> dict[str, list[str]]:
    """Each file's imports resolved to files of the repository: relative imports exactly, absolute ones when
    the dotted name means exactly one file."""
    known = set(paths)
    modules = python_modules(paths)
    edges: dict[str, list[str]] = {}
    for path, names in imports.items():
        found: list[str] = []
        for name in names:
            if name.startswith("."):
                target = _relative(path, name, known)
            else:
                candidates = modules.get(name, [])
                target = candidates[0] if len(candidates) == 1 else None
            if target is not None and target != path:
                found.append(target)
        if found:
            edges[path] = list(dict.fromkeys(found))
    return edges
