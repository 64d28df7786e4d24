"""Each text field's own term counts in memory, for BM25F (`SPARSE(:q, fields => (...))`).

The sparse tier's postings hold a term's count over the whole document; BM25F needs it field by
field. Rather than a second inverted index, this keeps each document's terms (ascending, as its
`term_ids`) with their per-field counts, and each document's field lengths: a search walks the
sparse tier's postings of its terms, as BM25 does, and finds each posting's counts by a binary
search in its document's row. Rows are appended for documents added (ids only grow) and a
deleted document's row is simply never reached (the sparse tier's `alive` skips it).

    start[d], count[d]    document d's row in `terms` / `tfs`
    terms[i], tfs[i, f]   a term id, and its count in text field f
    lens[d, f]            text field f's length in document d (BM25's token count)

Loaded by binary COPY of the documents' own arrays (`field_tfs`, `field_lens`), kept at each
search's version by the change log, and saved as a snapshot like the other tiers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import psycopg
from psycopg import sql

from sparsesql.db import copy_binary
from sparsesql.db.catalog import CollectionInfo
from sparsesql.tier.follow import FollowedTier

LOAD_BATCH = 50_000  # documents a load reads at a time


@numba.njit(nogil=True, cache=True)
def accumulate_fields(ids, term, scale, k1, b, weights, avg, start, count, terms, tfs, lens, alive, allowed, filtered, acc, seen, touched, n):  # pragma: no cover - compiled
    """Add one term's BM25F contributions, over the postings `ids`, to `acc` (by doc id): the
    SQL's arithmetic (retrieval/sparse.bm25f_tf), field by field in order, then saturated. A
    document whose weighted fields lack the term adds nothing (it is no match there)."""
    for j in range(ids.shape[0]):
        d = ids[j]
        if not alive[d] or (filtered and not allowed[d]) or d >= start.shape[0] or count[d] == 0:
            continue
        lo, hi = start[d], start[d] + count[d]
        while lo < hi:
            mid = (lo + hi) // 2
            if terms[mid] < term:
                lo = mid + 1
            else:
                hi = mid
        if lo >= start[d] + count[d] or terms[lo] != term:
            continue
        tf, first = 0.0, True
        for f in range(weights.shape[0]):
            if weights[f] > 0:
                t = np.float64(tfs[lo, f])
                part = 0.0 if t == 0 else weights[f] * t / (1 - b + b * lens[d, f] / avg[f])
                tf = part if first else tf + part
                first = False
        if tf <= 0:
            continue
        if not seen[d]:
            seen[d] = True
            touched[n] = d
            n += 1
        acc[d] += scale * tf / (k1 + tf)
    return n


@dataclass
class FieldCounts:
    start: np.ndarray  # int64 per doc id
    count: np.ndarray  # int32 per doc id
    terms: np.ndarray  # int32
    tfs: np.ndarray  # float32, (postings, fields)
    lens: np.ndarray  # int32, (doc ids, fields)

    def memory_bytes(self) -> int:
        return sum(a.nbytes for a in (self.start, self.count, self.terms, self.tfs, self.lens))


@dataclass
class FieldScoring:
    """What BM25F adds to a search of the sparse tier: the counts, each field's weight and average length."""

    counts: FieldCounts
    weights: np.ndarray  # float64 per text field
    avg: np.ndarray  # float64 per text field


def _rows(conn: psycopg.Connection, info: CollectionInfo, where: sql.Composable, params: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The chosen documents' (term, doc, tf per field) sorted by (doc, term) here (not by the
    server), and (doc, len per field)."""
    width = len(info.settings.text_fields)
    tf = sql.SQL(", ").join(sql.SQL("d.field_tfs[(t.k - 1) * {} + {}]").format(sql.Literal(width), sql.Literal(f + 1)) for f in range(width))
    lens = sql.SQL(", ").join(sql.SQL("d.field_lens[{}]").format(sql.Literal(f + 1)) for f in range(width))
    posting = np.dtype([("n", ">i2"), ("l1", ">i4"), ("term", ">i4"), ("l2", ">i4"), ("doc", ">i8"),
                        *((name, ">f4" if name.startswith("t") else ">i4") for f in range(width) for name in (f"lt{f}", f"t{f}"))])
    length = np.dtype([("n", ">i2"), ("l1", ">i4"), ("doc", ">i8"), *((name, ">i4") for f in range(width) for name in (f"ll{f}", f"n{f}"))])
    postings = copy_binary.copy_rows(conn, sql.SQL(
        "SELECT t.term_id, d.doc_id, {} FROM {} AS d CROSS JOIN LATERAL unnest(d.term_ids) WITH ORDINALITY AS t(term_id, k) WHERE {}"
    ).format(tf, info.table("docs"), where), params, posting)
    lengths = copy_binary.copy_rows(conn, sql.SQL("SELECT d.doc_id, {} FROM {} AS d WHERE {}").format(lens, info.table("docs"), where),
                                    params, length)
    return postings[np.lexsort((postings["term"], postings["doc"]))], lengths


def _append(data: FieldCounts, postings: np.ndarray, lengths: np.ndarray, width: int) -> None:
    """Rows for documents not held yet (their ids past every held row's, or their rows gone)."""
    if not len(lengths):
        return
    docs = lengths["doc"].astype(np.int64)
    top = int(docs.max()) + 1
    if top > len(data.start):
        grow = max(top, int(len(data.start) * 1.25)) - len(data.start)
        data.start = np.concatenate([data.start, np.zeros(grow, dtype=np.int64)])
        data.count = np.concatenate([data.count, np.zeros(grow, dtype=np.int32)])
        data.lens = np.concatenate([data.lens, np.zeros((grow, width), dtype=np.int32)])
    data.lens[docs] = np.stack([lengths[f"n{f}"] for f in range(width)], axis=1)
    held = postings["doc"].astype(np.int64)
    first = np.searchsorted(held, docs)
    data.start[docs] = len(data.terms) + first
    data.count[docs] = np.searchsorted(held, docs, side="right") - first
    data.terms = np.concatenate([data.terms, postings["term"].astype(np.int32)])
    data.tfs = np.concatenate([data.tfs, np.stack([postings[f"t{f}"] for f in range(width)], axis=1).astype(np.float32)])


class FieldTier(FollowedTier[FieldCounts]):
    """The per-field counts of a process's collections with two or more text fields."""

    file = "fields"
    origin = "field counts"

    def build(self, conn: psycopg.Connection, info: CollectionInfo) -> FieldCounts:
        width = len(info.settings.text_fields)
        data = FieldCounts(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros((0, width), np.float32),
                           np.zeros((0, width), np.int32))
        top = conn.execute(sql.SQL("SELECT coalesce(max(doc_id), 0) FROM {}").format(info.table("docs"))).fetchone()[0]
        for lo in range(0, top + 1, LOAD_BATCH):
            _append(data, *_rows(conn, info, sql.SQL("d.doc_id >= %s AND d.doc_id < %s"), (lo, lo + LOAD_BATCH)), width)
        return data

    def apply(self, conn: psycopg.Connection, info: CollectionInfo, data: FieldCounts, removed: np.ndarray, added: list[int]) -> None:
        removed = removed[removed < len(data.count)]
        data.count[removed] = 0
        if added:
            _append(data, *_rows(conn, info, sql.SQL("d.doc_id = ANY(%s)"), (added,)), len(info.settings.text_fields))

    def size(self, data: FieldCounts) -> int:
        return int((data.count > 0).sum())

    def to_arrays(self, data: FieldCounts) -> dict[str, np.ndarray]:
        return {"start": data.start, "count": data.count, "terms": data.terms, "tfs": data.tfs, "lens": data.lens}

    def from_arrays(self, arrays: dict[str, np.ndarray], info: CollectionInfo) -> FieldCounts | None:
        if arrays.get("lens") is None or arrays["lens"].shape[1:] != (len(info.settings.text_fields),):
            return None
        return FieldCounts(arrays["start"], arrays["count"], arrays["terms"], arrays["tfs"], arrays["lens"])
