"""Keeping each collection's dense tier current (the life in `tier/follow.py`): its codes, which
choose candidates, and its full vectors, which score them exactly. Deleted documents' codes are
removed, added ones' vectors fetched, coded and kept. The snapshot holds faiss's serialised index
and the vectors (memory-mapped when read back, so processes share them); without one every
vector is read by binary COPY, in batches of doc ids, and coded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

from sparsesql.db import copy_binary
from sparsesql.db.catalog import CollectionInfo
from sparsesql.tier.changes import TierRefused, change_log_refusal
from sparsesql.tier.dense import DenseCodes, estimated_bytes
from sparsesql.tier.follow import FollowedTier
from sparsesql.tier.vectors import FullVectors

LOAD_BATCH = 50_000  # vectors per COPY while loading


def _vector_rows(dim: int) -> np.dtype:
    """A binary COPY row (doc_id int8, embedding vector): pgvector sends dim, an unused word, floats."""
    return np.dtype([("n", ">i2"), ("l1", ">i4"), ("doc", ">i8"), ("l2", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("v", ">f4", (dim,))])


def read_vectors(conn: psycopg.Connection, info: CollectionInfo, where: sql.Composable, params: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(doc ids, float32 vectors) of the chosen documents, by binary COPY."""
    query = sql.SQL("SELECT doc_id, embedding FROM {} AS e WHERE {}").format(info.table("dense"), where)
    rows = copy_binary.copy_rows(conn, query, params, _vector_rows(info.settings.dim))
    return rows["doc"].astype(np.int64), rows["v"].astype(np.float32)


def every_vector(conn: psycopg.Connection, info: CollectionInfo) -> tuple[np.ndarray, np.ndarray]:
    """(doc ids ascending, float32 vectors) of the whole collection, LOAD_BATCH doc ids a COPY."""
    top = conn.execute(sql.SQL("SELECT coalesce(max(doc_id), 0) FROM {}").format(info.table("dense"))).fetchone()[0]
    parts = [read_vectors(conn, info, sql.SQL("e.doc_id >= %s AND e.doc_id < %s"), (lo, lo + LOAD_BATCH)) for lo in range(0, top + 1, LOAD_BATCH)]
    ids = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    vectors = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, info.settings.dim), dtype=np.float32)
    order = np.argsort(ids, kind="stable")
    return ids[order], vectors[order]


@dataclass
class DenseData:
    """One collection's dense tier: codes for candidates, full vectors for their exact scores."""

    codes: DenseCodes
    full: FullVectors

    def memory_bytes(self) -> int:
        return self.codes.memory_bytes() + self.full.memory_bytes()


class DenseTier(FollowedTier[DenseData]):
    """The dense tiers of a process's collections (`Followed.data`)."""

    file = "dense"
    origin = "vectors"
    remap = True

    def __init__(self, home: Path | None, memory_limit: int | None = None) -> None:
        super().__init__(home)
        self.memory_limit = memory_limit

    def why_not(self, conn: psycopg.Connection, info: CollectionInfo) -> str | None:
        """Why the collection's dense search is not served from codes, or None when it can be."""
        if info.name in self.loaded:
            return None
        return change_log_refusal(conn, info) or self._over_budget(estimated_bytes(info.n_docs, info.settings.dim))

    def set_budget(self, limit: int | None) -> None:
        """A new dense_tier_memory: codes over it are dropped (their searches run in SQL)."""
        self.memory_limit = limit
        for name, loaded in list(self.loaded.items()):
            if self._over_budget(loaded.data.memory_bytes()):
                del self.loaded[name]

    def _over_budget(self, need: int) -> str | None:
        if self.memory_limit is not None and need > self.memory_limit:
            return f"its dense codes need about {need / 2**20:.1f} MB, over dense_tier_memory ({self.memory_limit / 2**20:.1f} MB)"
        return None

    def refused(self, data: DenseData) -> str | None:
        """Over the budget: the codes (the full vectors are on disk, in the page cache's care)."""
        return self._over_budget(data.codes.memory_bytes())

    def size(self, data: DenseData) -> int:
        return data.codes.count

    def build(self, conn: psycopg.Connection, info: CollectionInfo) -> DenseData:
        ids, vectors = every_vector(conn, info)
        return DenseData(DenseCodes.build(ids, vectors, info.settings.dim), FullVectors(ids, vectors, info.settings.dim))

    def apply(self, conn: psycopg.Connection, info: CollectionInfo, data: DenseData, removed: np.ndarray, added: list[int]) -> None:
        data.codes.remove(removed)
        data.full.remove(removed)
        if added:
            ids, vectors = read_vectors(conn, info, sql.SQL("e.doc_id = ANY(%s)"), (added,))
            data.codes.add(ids, vectors)
            data.full.add(ids, vectors)

    def to_arrays(self, data: DenseData) -> dict[str, np.ndarray]:
        return {"index": data.codes.to_bytes(), **data.full.to_arrays()}

    def from_arrays(self, arrays: dict[str, np.ndarray], info: CollectionInfo) -> DenseData | None:
        if "vector_norms" not in arrays:  # written before the tier kept full vectors: built again
            return None
        codes = DenseCodes.from_bytes(arrays["index"], info.settings.dim)
        if codes.index.d != info.settings.dim:
            raise TierRefused(f"the snapshot's codes have {codes.index.d} dimensions, the collection {info.settings.dim}")
        return DenseData(codes, FullVectors(arrays["vector_ids"], arrays["vectors"], info.settings.dim, arrays["vector_norms"]))
