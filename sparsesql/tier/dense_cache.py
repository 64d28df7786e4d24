"""Keeping each collection's dense codes current: built once, following the change log, persisted.

The same life as the sparse tier's (`tier/cache.py`): `get` brings a collection's codes to the
version the search's catalog row shows, inside the search's REPEATABLE READ snapshot, by reading
the change log past the last entry applied (deleted documents' codes removed, added ones' vectors
fetched and coded). A new process starts from the snapshot under `SPARSESQL_HOME/tiers/` (faiss's
serialised index, read in one file) and replays the changes since; without one it reads every
vector with binary COPY, in batches of doc ids, and codes them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

from sparsesql.db import copy_binary
from sparsesql.db.catalog import CollectionInfo
from sparsesql.tier.cache import TierRefused, change_log_refusal, changes_since, snapshot_folder, write_snapshot
from sparsesql.tier.dense import DenseCodes, estimated_bytes

LOAD_BATCH = 50_000  # vectors per COPY while loading
SAVE_SHARE = 0.1  # snapshot again once this share of the codes changed since the last save


@dataclass
class LoadedCodes:
    codes: DenseCodes
    seq: int
    identity: str
    source: str  # "vectors" | "snapshot"
    load_ms: float
    version: int | None = None
    changed: int = 0  # codes added or removed since the last snapshot


def _vector_rows(dim: int) -> np.dtype:
    """A binary COPY row (doc_id int8, embedding vector): pgvector sends dim, an unused word, floats."""
    return np.dtype([("n", ">i2"), ("l1", ">i4"), ("doc", ">i8"), ("l2", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("v", ">f4", (dim,))])


def _vectors(conn: psycopg.Connection, info: CollectionInfo, where: sql.Composable, params: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(doc ids, float32 vectors) of the chosen documents, by binary COPY."""
    query = sql.SQL("SELECT doc_id, embedding FROM {} AS e WHERE {}").format(info.table("dense"), where)
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query), params) as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
    rows = copy_binary.decode(data, _vector_rows(info.settings.dim))
    return rows["doc"].astype(np.int64), rows["v"].astype(np.float32)


class DenseTier:
    """The dense codes of a process's collections; `Tiers.lock` guards their use and updates."""

    def __init__(self, home: Path | None, memory_limit: int | None = None) -> None:
        self.home = home
        self.memory_limit = memory_limit
        self.loaded: dict[str, LoadedCodes] = {}

    def why_not(self, conn: psycopg.Connection, info: CollectionInfo) -> str | None:
        """Why the collection's dense search is not served from codes, or None when it can be."""
        if info.name in self.loaded:
            return None
        return change_log_refusal(conn, info) or self._over_budget(estimated_bytes(info.n_docs, info.settings.dim))

    def set_budget(self, limit: int | None) -> None:
        """A new dense_tier_memory: codes over it are dropped (their searches run in SQL)."""
        self.memory_limit = limit
        for name, loaded in list(self.loaded.items()):
            if self._over_budget(loaded.codes.memory_bytes()):
                del self.loaded[name]

    def _over_budget(self, need: int) -> str | None:
        if self.memory_limit is not None and need > self.memory_limit:
            return f"its dense codes need about {need / 2**20:.1f} MB, over dense_tier_memory ({self.memory_limit / 2**20:.1f} MB)"
        return None

    def get(self, conn: psycopg.Connection, info: CollectionInfo) -> LoadedCodes:
        """The collection's codes as of the caller's snapshot, whose catalog row is `info`;
        raises TierRefused when they cannot serve it."""
        loaded = self.loaded.get(info.name)
        if loaded is None or loaded.identity != info.created:
            loaded = self._snapshot(info) or self._load(conn, info)
            refused = self._over_budget(loaded.codes.memory_bytes())
            if refused:
                raise TierRefused(refused)
            self.loaded[info.name] = loaded
        if loaded.version is not None and info.version < loaded.version:
            raise TierRefused(f"the codes are at version {loaded.version}, newer than this search's snapshot ({info.version})")
        if loaded.version != info.version:
            self._follow(conn, info, loaded)
            loaded.version = info.version
        return loaded

    def _load(self, conn: psycopg.Connection, info: CollectionInfo) -> LoadedCodes:
        start = time.perf_counter()
        seq = conn.execute(sql.SQL("SELECT coalesce(max(seq), 0) FROM {}").format(info.table("changes"))).fetchone()[0]
        top = conn.execute(sql.SQL("SELECT coalesce(max(doc_id), 0) FROM {}").format(info.table("dense"))).fetchone()[0]
        parts = [
            _vectors(conn, info, sql.SQL("e.doc_id >= %s AND e.doc_id < %s"), (lo, lo + LOAD_BATCH))
            for lo in range(0, top + 1, LOAD_BATCH)
        ]
        ids = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        vectors = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, info.settings.dim), dtype=np.float32)
        codes = DenseCodes.build(ids, vectors, info.settings.dim)
        loaded = LoadedCodes(codes, seq, info.created, "vectors", (time.perf_counter() - start) * 1000)
        self._save(info, loaded)
        return loaded

    def _follow(self, conn: psycopg.Connection, info: CollectionInfo, loaded: LoadedCodes) -> None:
        change = changes_since(conn, info, loaded.seq)
        if change is None:
            return
        removed, added, last = change
        loaded.codes.remove(removed)
        if added:
            loaded.codes.add(*_vectors(conn, info, sql.SQL("e.doc_id = ANY(%s)"), (added,)))
        loaded.seq = last
        loaded.changed += len(removed) + len(added)
        if loaded.changed > SAVE_SHARE * max(loaded.codes.count, 1000):
            self._save(info, loaded)

    def _save(self, info: CollectionInfo, loaded: LoadedCodes) -> None:
        folder = snapshot_folder(self.home, info.name, loaded.identity)
        if folder is None:
            return
        write_snapshot(folder, "dense", {"index": loaded.codes.to_bytes()}, {"seq": loaded.seq, "identity": loaded.identity})
        loaded.changed = 0

    def _snapshot(self, info: CollectionInfo) -> LoadedCodes | None:
        folder = snapshot_folder(self.home, info.name, info.created)
        if folder is None or not (folder / "dense.npz").exists():
            return None
        start = time.perf_counter()
        with np.load(folder / "dense.npz") as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("identity") != info.created:
                return None
            codes = DenseCodes.from_bytes(data["index"], info.settings.dim)
        if codes.index.d != info.settings.dim:
            raise TierRefused(f"the snapshot's codes have {codes.index.d} dimensions, the collection {info.settings.dim}")
        return LoadedCodes(codes, int(meta["seq"]), info.created, "snapshot", (time.perf_counter() - start) * 1000)
