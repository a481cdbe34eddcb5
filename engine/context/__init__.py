"""The context engine: the right code in the prompt, within a token budget (issue 4).

Its names are imported on first use: the index's parse worker processes import this package to reach
engine.context.parse, and the engine's own imports (SQLAlchemy for memory notes, numpy) cost each of them
most of a second for nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.context.embeddings import Embedder, EmbeddingError, LLMEmbedder
    from engine.context.engine import ContextEngine, ContextPack

__all__ = ["ContextEngine", "ContextPack", "Embedder", "EmbeddingError", "LLMEmbedder"]
_MODULES = {
    "ContextEngine": "engine.context.engine",
    "ContextPack": "engine.context.engine",
    "Embedder": "engine.context.embeddings",
    "EmbeddingError": "engine.context.embeddings",
    "LLMEmbedder": "engine.context.embeddings",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULES[name]), name)
