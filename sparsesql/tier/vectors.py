"""The fine granularity of the dense tier: full-precision vectors on local disk, for exact scores.

The codes (tier/dense.py) only choose candidates; every score a search returns is the exact
cosine of the stored vector, as PostgreSQL's `1 - (embedding <=> query)` computes it. Reading
those vectors back from PostgreSQL cost a search a round trip and most of its time (761 rows of
384 floats at 100k documents: 3.3 of a 5.7 ms HYBRID), so the tier keeps them beside the codes:
float32, as pgvector stores them (float16 halves the disk but moves scores by ~1e-3, which
reorders near ties against the SQL path), sorted by doc id. The snapshot's array is memory-mapped,
so every process on the machine reads one copy through the page cache and the OS decides what
stays in RAM; vectors added since the snapshot live in a small in-memory delta until the next one.

A score is the float32 dot product (pgvector sums in float32 too) over the float64 norms kept
beside the vectors: the two agree to ~1e-7. The dot products are numpy's einsum, not BLAS:
OpenBLAS may hand a product this small to threads that then spin, taking a core from the
server's other workers. A zero vector's cosine is NaN, as in pgvector, and NaN ranks first, as PostgreSQL's
ORDER BY ... DESC puts it.
"""

from __future__ import annotations

import numpy as np


def _sorted(ids: np.ndarray, vectors: np.ndarray, dim: int, norms: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """(ids ascending, their float32 vectors, their squared norms in float64)."""
    ids = np.asarray(ids, dtype=np.int64)
    vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, dim)
    if norms is None:
        norms = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
    if len(ids) > 1 and np.any(ids[1:] < ids[:-1]):
        order = np.argsort(ids, kind="stable")
        ids, vectors, norms = ids[order], vectors[order], norms[order]
    return ids, vectors, np.asarray(norms, dtype=np.float64)


class FullVectors:
    """Every live document's vector by doc id: a (mapped) base and an in-memory delta."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray, dim: int, norms: np.ndarray | None = None) -> None:
        self.dim = dim
        self.mapped = isinstance(vectors, np.memmap)
        self.ids, self.vectors, self.norms = _sorted(ids, vectors, dim, norms)
        self.delta_ids, self.delta_vectors, self.delta_norms = _sorted(np.zeros(0), np.zeros((0, dim)), dim)
        self.dead = np.zeros(0, dtype=np.int64)  # removed since the base was written (sorted)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.delta_ids, self.delta_vectors, self.delta_norms = _sorted(
                np.concatenate([self.delta_ids, np.asarray(ids, dtype=np.int64)]),
                np.concatenate([self.delta_vectors, np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)]),
                self.dim,
            )

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.dead = np.union1d(self.dead, np.asarray(ids, dtype=np.int64))

    def top(self, query: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k of `ids` with the highest cosine to `query` (ties by doc id), and those cosines;
        ids the tier does not hold (or holds as removed) are left out."""
        ids = np.asarray(ids, dtype=np.int64)
        q = np.ascontiguousarray(query, dtype=np.float32)
        q_norm = float(np.dot(q.astype(np.float64), q.astype(np.float64)))
        found, scores = [], []
        rest = ids
        for source_ids, vectors, norms in ((self.ids, self.vectors, self.norms), (self.delta_ids, self.delta_vectors, self.delta_norms)):
            if not len(source_ids) or not len(rest):
                continue
            at = np.minimum(np.searchsorted(source_ids, rest), len(source_ids) - 1)
            hit = source_ids[at] == rest
            rows = at[hit]
            with np.errstate(invalid="ignore", divide="ignore"):
                scores.append(np.einsum("ij,j->i", vectors[rows], q).astype(np.float64) / np.sqrt(norms[rows] * q_norm))
            found.append(rest[hit])
            rest = rest[~hit]
        if not found:
            return ids[:0], np.zeros(0)
        found, scores = (np.concatenate(found), np.concatenate(scores)) if len(found) > 1 else (found[0], scores[0])
        if len(self.dead):
            alive = ~np.isin(found, self.dead)
            found, scores = found[alive], scores[alive]
        scores = np.clip(scores, -1.0, 1.0)
        order = np.lexsort((found, np.where(np.isnan(scores), -np.inf, -scores)))[:k]
        return found[order], scores[order]

    def memory_bytes(self) -> int:
        """What the process holds beyond the mapped file: the delta (and a base never saved)."""
        held = self.delta_vectors.nbytes + self.delta_ids.nbytes + self.delta_norms.nbytes + self.dead.nbytes
        return held if self.mapped else held + self.vectors.nbytes + self.ids.nbytes + self.norms.nbytes

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Base and delta merged, the removed left out: what a new snapshot holds."""
        ids = np.concatenate([self.ids, self.delta_ids])
        keep = ~np.isin(ids, self.dead) if len(self.dead) else np.ones(len(ids), dtype=bool)
        ids, vectors, norms = _sorted(
            ids[keep], np.concatenate([self.vectors, self.delta_vectors])[keep], self.dim, np.concatenate([self.norms, self.delta_norms])[keep]
        )
        return {"vector_ids": ids, "vectors": vectors, "vector_norms": norms}
