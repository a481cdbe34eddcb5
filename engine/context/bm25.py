"""Okapi BM25 over documents given as term counts, in numpy: postings per term, scored term by term.

The index already holds each file's term counts (counted in worker processes), so the model is built from
them directly; a query touches only its own terms' postings, not every document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

IDF_FLOOR = 0.05


class Bm25:
    def __init__(
        self,
        counts: Sequence[Mapping[str, int]],
        lengths: Sequence[int] | None = None,
        *,
        k1: float = 1.2,
        b: float = 0.75,
    ) -> None:
        self.k1, self.b = k1, b
        self.size = len(counts)
        self.vocabulary: dict[str, int] = {}
        term_ids: list[int] = []
        frequencies: list[int] = []
        sizes: list[int] = []
        vocabulary = self.vocabulary
        for terms in counts:
            term_ids.extend([vocabulary.setdefault(term, len(vocabulary)) for term in terms])
            frequencies.extend(terms.values())
            sizes.append(len(terms))
        terms_array = np.asarray(term_ids, dtype=np.int32)
        order = np.argsort(terms_array, kind="stable")
        self._docs = np.repeat(np.arange(self.size, dtype=np.int32), sizes)[order]
        self._tf = np.asarray(frequencies, dtype=np.float32)[order]
        document_counts = np.bincount(terms_array, minlength=len(vocabulary))
        self._offsets = np.concatenate(([0], np.cumsum(document_counts))).astype(np.int64)
        if lengths is None:
            lengths = [sum(terms.values()) for terms in counts]
        self._relative = np.asarray(lengths, dtype=np.float32)
        self._relative /= float(self._relative.mean()) if self.size and self._relative.any() else 1.0
        self._norm = self._length_norm(b)
        # Okapi's idf with a small positive floor: a term in more than half the documents would otherwise
        # push its documents below those without it; "mentions it" stays above "does not".
        idf = np.log((self.size - document_counts + 0.5) / (document_counts + 0.5))
        self._idf = np.maximum(idf, IDF_FLOOR).astype(np.float32)

    def _length_norm(self, b: float) -> np.ndarray:
        return (self.k1 * (1 - b + b * self._relative)).astype(np.float32)

    def idf(self, term: str) -> float:
        position = self.vocabulary.get(term)
        return 0.0 if position is None else float(self._idf[position])

    def scores(
        self, terms: Sequence[str], weights: Sequence[float] | None = None, *, b: float | None = None
    ) -> np.ndarray:
        """The score of every document for the query terms (each term once; `weights` scale each term; `b`
        overrides the length normalisation the model was built with)."""
        out = np.zeros(self.size, dtype=np.float32)
        norm = self._norm if b is None or b == self.b else self._length_norm(b)
        for i, term in enumerate(terms):
            position = self.vocabulary.get(term)
            if position is None:
                continue
            start, end = self._offsets[position], self._offsets[position + 1]
            docs, tf = self._docs[start:end], self._tf[start:end]
            gain = self._idf[position] * tf * (self.k1 + 1) / (tf + norm[docs])
            out[docs] += gain * (weights[i] if weights is not None else 1.0)
        return out.astype(float)

    def grouped_scores(
        self,
        groups: Sequence[Sequence[tuple[str, float]]],
        weights: Sequence[float] | None = None,
        *,
        b: float | None = None,
    ) -> np.ndarray:
        """The score of every document when each group of terms (a word and its other forms, each with a
        share of its count) counts as one term: the counts add up before BM25 saturates them, and the
        group's idf is that of the documents holding any of its terms. A group of one term scores as
        `scores` does."""
        out = np.zeros(self.size, dtype=np.float32)
        norm = self._norm if b is None or b == self.b else self._length_norm(b)
        for i, group in enumerate(groups):
            found = self._group_postings(group)
            if found is None:
                continue
            docs, tf, idf = found
            gain = idf * tf * (self.k1 + 1) / (tf + norm[docs])
            out[docs] += gain * (weights[i] if weights is not None else 1.0)
        return out.astype(float)

    def _group_postings(
        self, group: Sequence[tuple[str, float]]
    ) -> tuple[np.ndarray, np.ndarray, float] | None:
        """The documents holding any of the group's terms, their counts summed and the group's idf."""
        postings = []
        for term, share in group:
            position = self.vocabulary.get(term)
            if position is not None:
                start, end = self._offsets[position], self._offsets[position + 1]
                postings.append((position, self._docs[start:end], self._tf[start:end] * np.float32(share)))
        if not postings:
            return None
        if len(postings) == 1:
            position, docs, tf = postings[0]
            return docs, tf, float(self._idf[position])
        docs, inverse = np.unique(np.concatenate([d for _, d, _ in postings]), return_inverse=True)
        summed = np.bincount(inverse, weights=np.concatenate([f for _, _, f in postings])).astype(np.float32)
        held = len(docs)
        return docs, summed, max(float(np.log((self.size - held + 0.5) / (held + 0.5))), IDF_FLOOR)
