"""The dense half of the memory tier (BiDR's coarse granularity): compressed codes for candidates.

Each collection's vectors are kept in memory as RaBitQ codes (Gao and Long, SIGMOD 2024; its
extended form, Gao et al. 2025, as faiss implements them): two bits a dimension plus correction
factors, 124 bytes with the id for 384 dimensions, 1/12 of the float32 vector. The codes only choose candidates; the full vectors stay in PostgreSQL,
where the search's own snapshot scores the candidates exactly with the SQL path's expression, so
every score a search returns is the exact cosine and a document is never scored from a stale
vector.

Why these codes (measured on this machine, one thread, 100 held-out queries): on MiniLM
embeddings of the shared collections (1.4k-11k documents) a flat scan of the codes, its best
`3k` re-scored exactly, gave the exact top 10 on every query, and the exact top 200 (a HYBRID's
candidate list, whose tail sets min-max fusion's scale) on 98-100 of 100; 1-bit codes needed 5k
for that, and IVF partitioning capped top-10 recall at 0.95-0.98 with 8-32 probes. The codes are
laid out for fast scan (blocks of 32, SIMD lookup tables): 1.0 ms for the best 100 of 100k where
the plain layout took 1.6 ms, with the same recall. A flat scan still grows with n: on 100k
calibrated vectors (benchmarks/synthetic.py, whose intrinsic dimensionality matches MiniLM's) it
took 2.4 ms for the best 600, where IVF with 2 sqrt(n) lists and a sixteenth of them probed took
0.66 ms and held the exact top 200 on 100 of 100 queries (the flat scan: 99). So collections up
to `FLAT_MAX` vectors scan every code (small collections are where IVF's lists are too few and
too coarse: the 11k-document measurement above) and larger ones are partitioned.

Deletes remove codes; an update is a delete plus an add under a new doc id, so the codes hold
exactly the live documents.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass

import faiss
import numpy as np

BITS = 2  # bits a dimension
BLOCK = 32  # vectors a fast-scan block: codes are scanned 32 at a time with SIMD lookup tables
FLAT_MAX = 50_000  # up to this many vectors, scan every code
PROBE_SHARE = 16  # an IVF search probes 1/PROBE_SHARE of its lists
ID_BYTES = 8  # faiss keeps an int64 id beside each code
FACTOR_BYTES = 20  # a code's correction factors (384 dimensions: 96 bytes of bits + 20 = faiss's 116)


def _one_thread() -> None:
    """One query scans on one OpenMP thread: concurrent searches (a server's) must not fight over
    cores. OpenMP's thread count is the calling thread's own, and a thread that never set it (a
    server session's) starts at every core: measured, its idle OpenMP threads then spun on the
    other core, 3.5 ms of CPU a HYBRID search becoming 6.5."""
    faiss.omp_set_num_threads(1)


_one_thread()


@contextmanager
def all_cores():
    """Training and coding a whole collection uses every core (under the tier's lock: no search runs)."""
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        _one_thread()


def _unit(vectors: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit length (cosine = inner product); zero rows stay zero."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms > 0, norms, 1)


@dataclass
class DenseCodes:
    """One collection's codes, searchable by inner product with a unit query vector."""

    index: faiss.Index
    dim: int
    kind: str  # "flat" or "ivf"

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, dim: int) -> "DenseCodes":
        """Codes for (doc id, vector) pairs; the layout (flat or IVF) follows their number."""
        unit = _unit(vectors.reshape(-1, dim))
        if len(unit) <= FLAT_MAX:
            index = faiss.IndexIDMap2(faiss.IndexRaBitQFastScan(dim, faiss.METRIC_INNER_PRODUCT, BLOCK, BITS))
            kind = "flat"
        else:
            lists = int(2 * math.sqrt(len(unit)))
            index = faiss.IndexIVFRaBitQFastScan(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT, BLOCK, True, BITS)
            index.nprobe = max(1, lists // PROBE_SHARE)
            kind = "ivf"
        sample = unit if len(unit) <= 50_000 else unit[np.random.default_rng(0).choice(len(unit), 50_000, replace=False)]
        codes = cls(index, dim, kind)
        with all_cores():
            index.train(sample if len(sample) else np.zeros((1, dim), dtype=np.float32))
            codes.add(ids, unit)
        return codes

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(_unit(vectors.reshape(-1, self.dim)), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))

    def search(self, vector: np.ndarray, k: int) -> np.ndarray:
        """About the k nearest doc ids by the codes' estimate (unordered use: they are re-scored)."""
        if self.count == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64)
        if k >= self.count and self.kind == "flat":
            # Every vector is asked for: all ids, exactly (codes of a vector equal to the codes'
            # centre, as a lone one is, carry no direction and the scan drops them).
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        query = _unit(np.asarray(vector, dtype=np.float32).reshape(1, self.dim))
        _one_thread()
        _, found = self.index.search(query, min(k, self.count))
        return found[0][found[0] >= 0]

    def candidates(self, vector: np.ndarray, k: int, kept: np.ndarray | None = None) -> np.ndarray:
        """About k candidates among the documents a filter keeps (`kept`, sorted doc ids; None:
        all). Few kept: all of them, for exact brute force. IVF lists skip the others as they
        scan (an id bitmap) and probe more lists the smaller the share kept (sqrt of its inverse:
        a tenth kept probes 3.2x the lists, and never fewer than hold about 2k kept documents),
        since fewer kept documents lie in each; the flat
        fast-scan layout takes no id filter, so it is asked deeper in proportion instead."""
        if kept is None:
            return self.search(vector, k)
        if len(kept) <= brute_max(k):
            return kept
        if self.kind == "ivf":
            return self._search_kept(vector, k, kept)
        found = self.search(vector, min(int(np.ceil(k * self.count / len(kept) * 1.5)), self.count))
        at = np.searchsorted(kept, found)
        at[at >= len(kept)] = 0
        return found[kept[at] == found][:k]

    def _search_kept(self, vector: np.ndarray, k: int, kept: np.ndarray) -> np.ndarray:
        mask = np.zeros(int(kept[-1]) + 1, dtype=bool)
        mask[kept] = True
        bitmap = np.packbits(mask, bitorder="little")  # faiss reads bit i of byte i >> 3 for id i
        params = faiss.SearchParametersIVF()
        params.sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap))
        lists = self.index.nlist
        # at least enough lists to hold about 2k kept documents, whatever the share
        params.nprobe = min(lists, int(np.ceil(max(self.index.nprobe * math.sqrt(self.count / len(kept)), lists * 2 * k / len(kept)))))
        query = _unit(np.asarray(vector, dtype=np.float32).reshape(1, self.dim))
        _one_thread()
        _, found = self.index.search(query, min(k, len(kept)), params=params)
        return found[0][found[0] >= 0]

    def describe(self) -> str:
        code = faiss.downcast_index(self.index.index).code_size if self.kind == "flat" else self.index.code_size
        layout = "flat scan" if self.kind == "flat" else f"IVF {self.index.nlist} lists, {self.index.nprobe} probed"
        return f"RaBitQ {BITS}-bit codes ({layout}, {code + ID_BYTES} B a vector)"

    def memory_bytes(self) -> int:
        if self.kind == "flat":
            return self.count * (faiss.downcast_index(self.index.index).code_size + ID_BYTES)
        return self.count * (self.index.code_size + ID_BYTES) + self.index.nlist * self.dim * 4

    def to_bytes(self) -> np.ndarray:
        return faiss.serialize_index(self.index)

    @classmethod
    def from_bytes(cls, data: np.ndarray, dim: int) -> "DenseCodes":
        index = faiss.deserialize_index(data)
        return cls(index, dim, "flat" if isinstance(index, faiss.IndexIDMap2) else "ivf")


def brute_max(k: int) -> int:
    """Up to this many documents kept by a filter, a dense search scores every one exactly."""
    return max(4 * k, 1000)


def estimated_bytes(n_vectors: int, dim: int) -> int:
    """What `n_vectors` codes will take, before building them (the budget check)."""
    return n_vectors * ((dim * BITS + 7) // 8 + FACTOR_BYTES + ID_BYTES)
