"""The index's stored part as plain JSON values: loading one runs no code, whatever wrote the file (never
pickle, which a planted file turns into code execution in the worker). Lookup tables and BM25 are derived."""

from __future__ import annotations

from engine.context.index import RepoIndex
from engine.context.parse import FileEntry, Symbol


def index_to_json(index: RepoIndex) -> dict[str, object]:
    """The index's stored part as plain JSON values (the lookup tables and BM25 are derived on load)."""
    files = {
        path: [e.digest, e.lines, [[s.name, s.kind, s.line, s.end_line] for s in e.symbols], e.chunks,
               e.terms, e.length, e.imports]
        for path, e in index.files.items()
    }  # fmt: skip
    return {
        "version": index.version,
        "repo": index.repo,
        "commit": index.commit,
        "skipped": sorted(index.skipped),
        "files": files,
    }


def index_from_json(stored: dict[str, object]) -> RepoIndex:
    """The index `index_to_json` stored; a value of the wrong shape raises (a miss for the caller)."""
    raw = stored["files"]
    if not isinstance(raw, dict):
        raise ValueError("files is not an object")
    files: dict[str, FileEntry] = {}
    for path, (digest, lines, symbols, chunks, terms, length, imports) in raw.items():
        files[str(path)] = FileEntry(
            path=str(path),
            digest=str(digest),
            lines=int(lines),
            symbols=[Symbol(str(n), str(k), int(a), int(b)) for n, k, a, b in symbols],
            chunks=[(int(a), int(b)) for a, b in chunks],
            terms={str(term): int(count) for term, count in terms.items()},
            length=int(length),
            imports=[str(module) for module in imports],
        )
    skipped = stored["skipped"]
    if not isinstance(skipped, list):
        raise ValueError("skipped is not a list")
    commit = stored["commit"]
    return RepoIndex(
        repo=str(stored["repo"]),
        commit=None if commit is None else str(commit),
        files=files,
        skipped={str(s) for s in skipped},
    ).finalize()
