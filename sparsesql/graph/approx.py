"""BUILD GRAPH for large collections: candidates from the dense codes, similarities exact.

The exact build scores every pair (O(N^2 d)): 1,460 documents in under a second, but a million
would take days. Past EXACT_MAX documents the build reads every vector once (binary COPY),
codes them as the memory tier does (RaBitQ, IVF lists: tier/dense.py), asks the codes for each
document's best CANDIDATES x k neighbours (a batch of documents at a time, on every core), and
scores those candidates exactly from the full vectors, so every stored similarity is the true
cosine and only a true neighbour the codes missed can be absent. Ties go to the lower doc id,
as in the exact build. Upkeep after the build (`build.connect` / `forget`) stays exact.

Why these settings (vectors in memory, 100k documents, 500 sources against brute force): the
best 4k of the codes held every true neighbour (recall 1.000) on calibrated and on hard vectors
(benchmarks/synthetic.py) with 19 of 632 lists probed, as with 79; the search took 8.5 s for all
100k documents instead of 28, and the exact scoring of the candidates 8-15 s.
"""

from __future__ import annotations

import numpy as np

from sparsesql.tier.dense import DenseCodes, all_cores

EXACT_MAX = 50_000  # up to this many documents BUILD GRAPH scores every pair
CANDIDATES = 4  # the codes bring this many candidates per neighbour kept
PROBE_SHARE = 32  # the build probes 1/PROBE_SHARE of the IVF lists (a search probes 1/16), at least MIN_PROBES
MIN_PROBES = 16
BATCH = 1024  # documents searched and re-scored together


def _unit(vectors: np.ndarray) -> np.ndarray:
    v = vectors.astype(np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def neighbour_lists(ids: np.ndarray, vectors: np.ndarray, k: int, progress=None):
    """Yield (source doc ids, (b, k) neighbour doc ids, (b, k) float32 similarities) batch by
    batch for every document; a row has fewer than k finite similarities only when the
    collection has fewer than k + 1 documents (missing ones are -inf, id -1)."""
    unit = _unit(vectors)
    dim = unit.shape[1]
    codes = DenseCodes.build(ids, unit, dim)
    index = codes.index
    if codes.kind == "ivf":
        index.nprobe = min(index.nlist, max(MIN_PROBES, index.nlist // PROBE_SHARE))
    want = min(CANDIDATES * k + 1, len(ids))
    for start in range(0, len(ids), BATCH):
        src = ids[start:start + BATCH]
        query = unit[start:start + BATCH]
        with all_cores():
            _, found = index.search(query, want)
        rows = np.searchsorted(ids, np.where(found >= 0, found, ids[0]))
        candidates = unit[rows]  # (b, want, dim)
        sims = np.matmul(candidates.astype(np.float64), query.astype(np.float64)[:, :, None])[:, :, 0].astype(np.float32)
        sims[(found < 0) | (found == src[:, None])] = -np.inf
        order = np.lexsort((found, -sims), axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(sims, order, axis=1), np.take_along_axis(found, order, axis=1)
        if best_s.shape[1] < k:  # fewer than k others exist
            pad = k - best_s.shape[1]
            best_s = np.pad(best_s, ((0, 0), (0, pad)), constant_values=-np.inf)
            best_i = np.pad(best_i, ((0, 0), (0, pad)), constant_values=-1)
        if progress is not None:
            progress(len(src))
        yield src, best_i, best_s


def describe() -> str:
    return f"approximate: the best {CANDIDATES}k candidates from RaBitQ codes (IVF, 1/{PROBE_SHARE} of the lists probed, at least {MIN_PROBES}), scored exactly"

