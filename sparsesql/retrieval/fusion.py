"""Fusion of ranked lists: reciprocal rank fusion and normalised linear combination.

RRF (Cormack, Clarke and Buettcher, SIGIR 2009): score(d) = sum_i w_i / (k + rank_i(d)), ranks
from 1, a document absent from a list contributes nothing. Linear: each list's scores are
normalised (min-max to [0, 1], or z-score), then summed with weights; a document absent from a
list gets that list's minimum normalised score, so it is neither rewarded nor dropped for it.

A list that holds every document that scores at all (a sparse list shorter than the candidates
asked for: every other document has no matching term) has a known floor: the score of a
non-match, 0. Its absent documents get the floor's normalised value and min-max scales from the
floor, not from its weakest match, which would otherwise be made to look like the worst document
in the collection.

Adaptive weights (`linear(alpha => auto)`, the default HYBRID) weigh each list by how peaked it
is, 1 - the mean of its min-max scaled scores: a list whose top stands out (an exact match of rare
terms) counts for more than one whose candidates score nearly alike (a model that cannot tell
them apart). It is the score-distribution idea behind selective query expansion (Cronen-Townsend
et al.), taken per query and per side, and it has no parameter of its own.

Peakedness compares lists, so it is measured over the same depth for each: the longest list's.
A shorter list counts the documents it lacks at its absent value. Measured over its own matches
alone, an exhaustive sparse list of a few exact matches of a rare term, all scoring alike, looked
like the flattest list there is (scaled from the floor 0 they sit near 1) and lost its weight to
a 200-document dense list, when it is the most peaked: a few documents match, all others score 0.
That is how the default HYBRID fell behind a fixed 0.5 on short queries (docs/decisions.md).

Ties break on the internal document id, so fused rankings are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Ranked = list[tuple[int, float]]


def rrf(lists: list[Ranked], k: int = 60, weights: tuple[float, ...] | None = None) -> Ranked:
    weights = weights or tuple([1.0] * len(lists))
    scores: dict[int, float] = {}
    for ranked, w in zip(lists, weights):
        for rank, (doc, _) in enumerate(ranked, start=1):
            scores[doc] = scores.get(doc, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def normalise(scores: np.ndarray, norm: str, floor: float | None = None) -> tuple[np.ndarray, float]:
    """The scores normalised, and the normalised value of a document the list does not hold: the
    floor's when the list has one, else the list's lowest."""
    if scores.size == 0:
        return scores, 0.0
    if norm == "none":
        return scores, float(scores.min() if floor is None else floor)
    if norm == "minmax":
        low, high = scores.min(), scores.max()
        if floor is not None:
            low = min(low, floor)
        if high <= low:
            return np.ones_like(scores), 1.0 if floor is None else 0.0
        return (scores - low) / (high - low), 0.0
    mean, std = scores.mean(), scores.std()
    if std <= 0:
        return np.zeros_like(scores), 0.0
    z = (scores - mean) / std
    return z, float(z.min() if floor is None else (floor - mean) / std)


def peakedness(scaled: np.ndarray) -> float:
    """1 - the mean of a list's min-max scaled scores: near 1 when a few documents stand out,
    near 0 when the candidates score alike (an empty list: 0)."""
    return float(1.0 - scaled.mean()) if scaled.size else 0.0


def adaptive_weights(scaled: list[np.ndarray], absent: Sequence[float] = ()) -> tuple[float, ...]:
    """Each list's peakedness over the longest list's depth, a shorter list counting the
    documents it lacks at its `absent` value (0 when not given); the weights sum to 1 (equal when
    no list has a peak). An empty list ranks nothing and gets no weight."""
    depth = max((values.size for values in scaled), default=0)
    absent = list(absent) or [0.0] * len(scaled)
    peaks = [
        peakedness(np.concatenate([values, np.full(depth - values.size, missing)])) if values.size else 0.0
        for values, missing in zip(scaled, absent)
    ]
    total = sum(peaks)
    if total <= 0:
        return tuple([1.0 / len(scaled)] * len(scaled))
    return tuple(p / total for p in peaks)


def linear(
    lists: list[Ranked], weights: tuple[float, ...], norm: str = "minmax", floors: Sequence[float | None] = (), *, adaptive: bool = False
) -> tuple[Ranked, tuple[float, ...]]:
    """The weighted sum of normalised scores, and the weights used: with `adaptive`, each list's
    peakedness, from the same min-max scaling when `norm` is minmax."""
    floors = list(floors) or [None] * len(lists)
    scores = [np.array([s for _, s in ranked], dtype=np.float64) for ranked in lists]
    normalised = [normalise(values, norm, floor) for values, floor in zip(scores, floors)]
    if adaptive:
        scaled = normalised if norm == "minmax" else [normalise(values, "minmax", floor) for values, floor in zip(scores, floors)]
        weights = adaptive_weights([values for values, _ in scaled], [missing for _, missing in scaled])
    ids = [np.fromiter((doc for doc, _ in ranked), dtype=np.int64, count=len(ranked)) for ranked in lists]
    docs = np.unique(np.concatenate(ids)) if ids else np.zeros(0, dtype=np.int64)
    fused = np.zeros(len(docs))
    for listed, (values, absent), w in zip(ids, normalised, weights):
        # each document's values are added in list order, as sum() over the lists would
        column = np.full(len(docs), absent, dtype=np.float64)
        column[np.searchsorted(docs, listed)] = values
        fused += w * column
    order = np.lexsort((docs, -fused))
    return list(zip(docs[order].tolist(), fused[order].tolist())), weights


def fuse(
    lists: list[Ranked],
    method: str,
    *,
    k: int = 60,
    weights: tuple[float, ...] = (),
    norm: str = "minmax",
    adaptive: bool = False,
    floors: Sequence[float | None] = (),
) -> tuple[Ranked, tuple[float, ...]]:
    """Dispatch on the checked fusion's method; returns the fused list and the weights used
    (worked out per query when `adaptive`), which EXPLAIN ANALYZE shows."""
    if method == "rrf":
        weights = weights or tuple([1.0] * len(lists))
        return rrf(lists, k, weights), weights
    return linear(lists, weights, norm, floors, adaptive=adaptive)
