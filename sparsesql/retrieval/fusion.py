"""Fusion of ranked lists: reciprocal rank fusion and normalised linear combination.

RRF (Cormack, Clarke and Buettcher, SIGIR 2009): score(d) = sum_i w_i / (k + rank_i(d)), ranks
from 1, a document absent from a list contributes nothing. Linear: each list's scores are
normalised (min-max to [0, 1], or z-score), then summed with weights; a document absent from a
list gets that list's minimum normalised score, so it is neither rewarded nor dropped for it.
Ties break on the internal document id, so fused rankings are deterministic.
"""

from __future__ import annotations

import numpy as np

Ranked = list[tuple[int, float]]


def rrf(lists: list[Ranked], k: int = 60, weights: tuple[float, ...] | None = None) -> Ranked:
    weights = weights or tuple([1.0] * len(lists))
    scores: dict[int, float] = {}
    for ranked, w in zip(lists, weights):
        for rank, (doc, _) in enumerate(ranked, start=1):
            scores[doc] = scores.get(doc, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def normalise(scores: np.ndarray, norm: str) -> np.ndarray:
    if scores.size == 0 or norm == "none":
        return scores
    if norm == "minmax":
        low, high = scores.min(), scores.max()
        return (scores - low) / (high - low) if high > low else np.ones_like(scores)
    std = scores.std()
    return (scores - scores.mean()) / std if std > 0 else np.zeros_like(scores)


def linear(lists: list[Ranked], weights: tuple[float, ...], norm: str = "minmax") -> Ranked:
    fused: dict[int, float] = {}
    normalised = []
    for ranked in lists:
        values = normalise(np.array([s for _, s in ranked], dtype=np.float64), norm)
        normalised.append(({doc: float(v) for (doc, _), v in zip(ranked, values)}, float(values.min()) if values.size else 0.0))
    docs = {doc for ranked in lists for doc, _ in ranked}
    for doc in docs:
        fused[doc] = sum(w * scores.get(doc, floor) for (scores, floor), w in zip(normalised, weights))
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def fuse(lists: list[Ranked], method: str, *, k: int = 60, weights: tuple[float, ...] = (), norm: str = "minmax") -> Ranked:
    """Dispatch on the checked fusion's method."""
    if method == "rrf":
        return rrf(lists, k, weights or None)
    return linear(lists, weights, norm)
