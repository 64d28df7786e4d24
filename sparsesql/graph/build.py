"""Building and maintaining the kNN graph in blocks of vectors streamed from Postgres.

Exact up to `approx.EXACT_MAX` documents: every pair is scored (block x block matrix products),
so memory is bounded by the block size and a build costs O(N^2 d) arithmetic (under a second for
cisi's 1,460 documents; the cost grows with the square of the collection). Larger collections
take their candidates from the dense codes and score them exactly (graph/approx.py). Similarities are ranked as float32, the precision they are stored in, with ties
going to the lower doc_id, so a graph maintained by `connect`/`forget` equals a fresh build.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import numpy as np
import psycopg
from psycopg import sql

from sparsesql.db import copy_binary
from sparsesql.db.catalog import CollectionInfo, set_extra
from sparsesql.errors import CheckError
from sparsesql.graph import approx, store
from sparsesql.lang.check_ddl import DEFAULT_GRAPH_K, MAX_GRAPH_K
from sparsesql.tier.dense_cache import every_vector

BLOCK = 2048


def _unit(rows: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    v = np.array([r[1] for r in rows], dtype=np.float64) if rows else np.zeros((0, 0))
    if len(v):
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        v = v / np.where(norms > 0, norms, 1.0)
    return ids, v


def _blocks(conn: psycopg.Connection, info: CollectionInfo, block: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(doc_ids, unit vectors) of the whole collection, `block` at a time, by keyset pagination.
    Vectors are read as real[], in binary, so that any connection can read them fast, including
    a migration's, which has no pgvector loaders."""
    last = -1
    statement = sql.SQL("SELECT doc_id, embedding::real[] FROM {} WHERE doc_id > %s ORDER BY doc_id LIMIT %s").format(
        info.table("dense")
    )
    while True:
        rows = conn.execute(statement, (last, block), binary=True).fetchall()
        if not rows:
            return
        yield _unit(rows)
        last = rows[-1][0]


def _vectors(conn: psycopg.Connection, info: CollectionInfo, doc_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    rows = conn.execute(
        sql.SQL("SELECT doc_id, embedding::real[] FROM {} WHERE doc_id = ANY(%s) ORDER BY doc_id").format(info.table("dense")),
        (doc_ids,),
        binary=True,
    ).fetchall()
    return _unit(rows)


def _top_k(sims: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best (similarity desc, id asc); sims float32, -inf marks an excluded pair."""
    order = np.lexsort((np.broadcast_to(ids, sims.shape), -sims), axis=1)[:, :k]
    return np.take_along_axis(sims, order, axis=1), np.take_along_axis(np.broadcast_to(ids, sims.shape), order, axis=1)


def neighbours(
    conn: psycopg.Connection, info: CollectionInfo, src_ids: np.ndarray, src: np.ndarray, k: int, block: int = BLOCK
) -> list[list[tuple[int, float]]]:
    """The k nearest documents of each source vector over the whole collection (itself excluded)."""
    best_s = np.full((len(src_ids), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(src_ids), 0), dtype=np.int64)
    for ids, v in _blocks(conn, info, block):
        sims = (src @ v.T).astype(np.float32)
        sims[src_ids[:, None] == ids[None, :]] = -np.inf
        all_s = np.concatenate([best_s, sims], axis=1)
        all_i = np.concatenate([best_i, np.broadcast_to(ids, sims.shape)], axis=1)
        best_s, best_i = _top_k(all_s, all_i, k)
    return [
        [(int(d), float(s)) for d, s in zip(row_i, row_s) if np.isfinite(s)] for row_i, row_s in zip(best_i, best_s)
    ]


def _write(conn: psycopg.Connection, info: CollectionInfo, src_ids, lists: list[list[tuple[int, float]]]) -> None:
    with conn.cursor().copy(sql.SQL("COPY {} (src, dst, similarity) FROM STDIN (FORMAT BINARY)").format(info.table("graph"))) as copy:
        copy.set_types(["int8", "int8", "float4"])
        for src, edges in zip(src_ids, lists):
            for dst, s in edges:
                copy.write_row([int(src), dst, s])


def _record(conn: psycopg.Connection, info: CollectionInfo, k: int, method: str) -> None:
    """The build's parameters in the catalog (upkeep changes edges, never these)."""
    set_extra(conn, info.name, "graph", {"k": k, "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "method": method})


EDGE = np.dtype([("n", ">i2"), ("l1", ">i4"), ("src", ">i8"), ("l2", ">i4"), ("dst", ">i8"), ("l3", ">i4"), ("s", ">f4")])


def _write_arrays(conn: psycopg.Connection, info: CollectionInfo, src: np.ndarray, dst: np.ndarray, sims: np.ndarray) -> None:
    """(b, k) neighbour lists as one binary COPY (numpy-built: millions of edges)."""
    keep = np.isfinite(sims)
    rows = copy_binary.encode(EDGE, src=np.broadcast_to(src[:, None], dst.shape)[keep], dst=dst[keep], s=sims[keep])
    with conn.cursor().copy(sql.SQL("COPY {} (src, dst, similarity) FROM STDIN (FORMAT BINARY)").format(info.table("graph"))) as copy:
        copy.write(rows)


def check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_GRAPH_K:
        raise CheckError(f"graph k => {k!r} must be a whole number from 1 to {MAX_GRAPH_K}")
    return k


def build(conn: psycopg.Connection, info: CollectionInfo, k: int = DEFAULT_GRAPH_K, *, block: int = BLOCK, progress: bool = False) -> int:
    """(Re)build the graph in one transaction: readers see the old graph until it commits, then
    the new one, never half of either. Returns the number of edges."""
    from tqdm import tqdm

    k = check_k(k)
    with conn.transaction():
        conn.execute("SELECT 1 FROM sparsesql.collections WHERE name = %s FOR UPDATE", (info.name,))
        store.create_table(conn, info)
        # DELETE, not TRUNCATE: readers keep the old graph (MVCC) instead of waiting on a lock.
        conn.execute(sql.SQL("DELETE FROM {}").format(info.table("graph")))
        total = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(info.table("dense"))).fetchone()[0]
        with tqdm(total=total, disable=not progress, desc=f"graph {info.name}", unit="doc") as bar:
            if total > approx.EXACT_MAX:
                ids, vectors = every_vector(conn, info)
                for src, dst, sims in approx.neighbour_lists(ids, vectors, k, bar.update):
                    _write_arrays(conn, info, src, dst, sims)
                method = approx.describe()
            else:
                for ids, v in _blocks(conn, info, block):
                    _write(conn, info, ids, neighbours(conn, info, ids, v, k, block))
                    bar.update(len(ids))
                method = "exact"
        _record(conn, info, k, method)
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(info.table("graph"))).fetchone()[0]


def drop(conn: psycopg.Connection, info: CollectionInfo) -> None:
    """Remove the graph and its catalog entry (DIVERSIFY then refuses hops until a rebuild)."""
    with conn.transaction():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(info.table("graph")))
        conn.execute("UPDATE sparsesql.collections SET extra = extra - 'graph' WHERE name = %s", (info.name,))


def _graph_k(conn: psycopg.Connection, info: CollectionInfo) -> int | None:
    """The k the graph was built with, or None when the collection has no graph (the table and
    the catalog entry are created and dropped in the same transaction, so one query tells)."""
    row = conn.execute("SELECT (extra->'graph'->>'k')::int FROM sparsesql.collections WHERE name = %s", (info.name,)).fetchone()
    return row[0] if row else None


def connect(conn: psycopg.Connection, info: CollectionInfo, doc_ids: list[int], *, block: int = BLOCK) -> None:
    """Give newly added documents their edges, and take them into their neighbours' lists where
    they now rank in the top k. Runs inside the caller's (ingest) transaction; no-op without a graph."""
    k = _graph_k(conn, info)
    if k is None or not doc_ids:
        return
    new_ids, new = _vectors(conn, info, doc_ids)
    _write(conn, info, new_ids, neighbours(conn, info, new_ids, new, k, block))
    graph = info.table("graph")
    for ids, v in _blocks(conn, info, block):
        keep = ~np.isin(ids, new_ids)
        ids, v = ids[keep], v[keep]
        if not len(ids):
            continue
        sims = (v @ new.T).astype(np.float32)
        rows = conn.execute(
            sql.SQL("SELECT src, dst, similarity::float8 FROM {} WHERE src = ANY(%s)").format(graph), (ids.tolist(),)
        ).fetchall()
        # ::float8 gives the stored float32 exactly (a real read as text would come back as its
        # shortest decimal, a different float64, and break ties against fresh similarities).
        current: dict[int, list[tuple[int, float]]] = {int(i): [] for i in ids}
        for src, dst, s in rows:
            current[src].append((dst, s))
        changed, lists = [], []
        for row, src in enumerate(ids.tolist()):
            merged = current[src] + list(zip(new_ids.tolist(), sims[row].tolist()))
            merged.sort(key=lambda e: (-e[1], e[0]))
            top = merged[:k]
            if {d for d, _ in top} != {d for d, _ in current[src]}:
                changed.append(src)
                lists.append(top)
        if changed:
            conn.execute(sql.SQL("DELETE FROM {} WHERE src = ANY(%s)").format(graph), (changed,))
            _write(conn, info, changed, lists)


def forget(conn: psycopg.Connection, info: CollectionInfo, doc_ids: list[int], *, block: int = BLOCK) -> None:
    """Drop removed documents' edges; documents that pointed at them find their next nearest.
    Call after the documents' vectors are deleted, inside the same transaction."""
    k = _graph_k(conn, info)
    if k is None or not doc_ids:
        return
    graph = info.table("graph")
    conn.execute(sql.SQL("DELETE FROM {} WHERE src = ANY(%s)").format(graph), (doc_ids,))
    affected = [
        r[0]
        for r in conn.execute(
            sql.SQL("DELETE FROM {} WHERE dst = ANY(%s) RETURNING src").format(graph), (doc_ids,)
        ).fetchall()
    ]
    affected = sorted(set(affected))
    for start in range(0, len(affected), block):
        part = affected[start : start + block]
        conn.execute(sql.SQL("DELETE FROM {} WHERE src = ANY(%s)").format(graph), (part,))
        ids, v = _vectors(conn, info, part)
        _write(conn, info, ids, neighbours(conn, info, ids, v, k, block))
