"""The context engine: the right code in the prompt, within a token budget (issue 4)."""

from engine.context.embeddings import Embedder, EmbeddingError, LLMEmbedder
from engine.context.engine import ContextEngine, ContextPack

__all__ = ["ContextEngine", "ContextPack", "Embedder", "EmbeddingError", "LLMEmbedder"]
