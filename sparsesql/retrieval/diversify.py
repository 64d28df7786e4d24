"""Choosing LIMIT documents from a candidate pool so that together they cover its meanings.

Coverage ("Beyond Nearest Neighbors: Semantic Compression and Graph-Augmented Retrieval"): choose
documents S from the pool P by greedily maximising the monotone submodular objective

    F(S) = lambda * (1 / PAGE) * sum_{s in S} r(s) + (1 - lambda) * (1 / |P|) * sum_{i in P} max_{s in S} sim(i, s)

where r is the search's relevance min-max scaled to [0, 1] over the pool and sim is cosine
similarity clipped at 0 (negative similarities would break monotonicity). The first term is the
mean relevance of a page of PAGE chosen documents, the second the facility-location coverage of
the pool averaged over its documents: for one page both lie in [0, 1], so lambda trades one for
the other on one scale. PAGE is a constant (the default LIMIT), never LIMIT itself: were the
relevance a mean over LIMIT, a larger LIMIT would shrink every relevance gain, coverage would
decide what comes first, and LIMIT 100's first ten would not be LIMIT 10's. With F independent of
LIMIT, greedy selection is a prefix order: LIMIT n returns the first n of any larger LIMIT.
Greedy selection is within (1 - 1/e) of the best set of its size; lazy greedy (Minoux) gives the
same order as plain greedy while re-evaluating only the documents whose stale bound is on top.

MMR (Carbonell and Goldstein) is the classic baseline: lambda * r(s) - (1 - lambda) * the
largest similarity to an already chosen document.
"""

from __future__ import annotations

import heapq

import numpy as np

PAGE = 10  # the page whose mean relevance the objective weighs: the dialect's default LIMIT


def relevance_scale(scores: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; a pool whose scores are all equal is all 1 (equally relevant)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores
    low, high = scores.min(), scores.max()
    if high - low <= 0:
        return np.ones_like(scores)
    return (scores - low) / (high - low)


def similarity(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pair, clipped to [0, 1]."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    v = v / np.where(norms > 0, norms, 1.0)
    return np.clip(v @ v.T, 0.0, 1.0)


def objective(relevance: np.ndarray, sim: np.ndarray, chosen: list[int], lam: float) -> float:
    """F(S) as defined above; F(empty set) = 0."""
    if not chosen:
        return 0.0
    cover = sim[:, chosen].max(axis=1).sum() / sim.shape[0]
    return float(lam * relevance[chosen].sum() / PAGE + (1 - lam) * cover)


def coverage_select(relevance: np.ndarray, sim: np.ndarray, k: int, lam: float) -> list[int]:
    """Indices of the k chosen documents in selection order (lazy greedy on F).

    Ties go to the lower index, as `np.argmax` breaks them in plain greedy, so the two agree
    exactly: a popped document is taken only when its fresh gain beats every stale bound, or
    equals the best bound and its index is lower.
    """
    n = sim.shape[0]
    if n == 0:
        return []
    weight, scale = lam / PAGE, (1 - lam) / n
    k = min(k, n)
    best = np.zeros(n)  # max similarity of each pool item to the chosen set

    def gain(j: int) -> float:
        return weight * relevance[j] + scale * np.maximum(sim[:, j] - best, 0.0).sum()

    # Initial bounds in one matrix operation (with nothing chosen, a gain is relevance plus the
    # column sum); every document is evaluated again, by gain(), before it is taken.
    first = weight * relevance + scale * sim.sum(axis=0)
    heap = [(-float(g), j) for j, g in enumerate(first)]
    heapq.heapify(heap)
    chosen: list[int] = []
    while heap and len(chosen) < k:
        _, j = heapq.heappop(heap)
        fresh = gain(j)
        if heap and (-heap[0][0], -heap[0][1]) > (fresh, -j):
            heapq.heappush(heap, (-fresh, j))
            continue
        chosen.append(j)
        best = np.maximum(best, sim[:, j])
    return chosen


def mmr_select(relevance: np.ndarray, sim: np.ndarray, k: int, lam: float) -> list[int]:
    """Indices chosen by maximal marginal relevance, in selection order."""
    n = sim.shape[0]
    k = min(k, n)
    chosen: list[int] = []
    redundancy = np.zeros(n)
    free = np.ones(n, dtype=bool)
    for _ in range(k):
        value = np.where(free, lam * relevance - (1 - lam) * redundancy, -np.inf)
        j = int(np.argmax(value))
        chosen.append(j)
        free[j] = False
        redundancy = np.maximum(redundancy, sim[:, j])
    return chosen
