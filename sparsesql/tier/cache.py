"""Keeping each collection's in-memory index current: load once, follow the change log, persist.

`Tiers.get(conn, info)` returns the collection's index brought up to the caller's snapshot: it
reads the change log past the last sequence number it applied (deleted documents are flagged,
added ones fetched with their postings) inside the plan's REPEATABLE READ transaction, so the
index and the statements that fetch the rows see the same committed state. A document deleted or
replaced in a committed transaction is therefore never scored from its old postings.

A new process starts from the snapshot saved under `SPARSESQL_HOME/tiers/` (numpy arrays, loaded
in seconds) and replays the changes since; without one it reads the postings with a binary COPY.
A collection whose index would not fit the memory budget, or that has no change log (created
before the log existed), is not loaded: its queries run in SQL, and EXPLAIN says why.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import psycopg
from psycopg import sql

from sparsesql.db import copy_binary
from sparsesql.db.catalog import CollectionInfo, SparseField
from sparsesql.tier.changes import TierAhead, TierRefused, change_log_refusal, changes_since
from sparsesql.tier.dense_cache import DenseTier
from sparsesql.tier.fields import FieldTier
from sparsesql.tier.filters import FilterTier
from sparsesql.tier.index import SparseIndex
from sparsesql.tier.snapshots import read_snapshot, snapshot_folder, write_snapshot
from sparsesql.tier.vocab import Vocabulary

BYTES_PER_POSTING = 6  # int32 doc id + uint16 term frequency
COMPACT_SHARE = 0.1  # merge the delta into the base once it holds this share of the postings


@dataclass
class Loaded:
    index: SparseIndex
    seq: int  # last change-log entry applied
    identity: str  # the collection's creation time: a dropped and re-created namesake differs
    source: str  # "postings" | "snapshot"
    load_ms: float
    version: int | None = None  # the catalog's write counter when the change log was last read
    vocab: Vocabulary | None = None  # term -> (id, df): a search whose terms are all known needs no statistics statement

    def memory_bytes(self) -> int:
        return self.index.memory_bytes() + (self.vocab.memory_bytes() if self.vocab is not None else 0)

    def known(self, terms: Iterable[str], version: int) -> list[tuple[str, int, int]] | None:
        """(term, term_id, df) of the terms present, if every term is known at `version`."""
        return None if self.vocab is None else self.vocab.known(terms, version)

    def remember(self, terms: Iterable[str], found: dict[str, tuple[int, int]], version: int) -> None:
        if self.vocab is not None:
            self.vocab.remember(terms, found, version)


def _postings(conn: psycopg.Connection, info: CollectionInfo, field: SparseField, where: sql.Composable, params: tuple) -> tuple[np.ndarray, ...]:
    """The chosen documents' postings in one field sorted by (term, doc), and their lengths, from
    the documents' own term arrays: one sequential pass, no sort on the server. A learned field
    in a further slot has no length of its own (dot products never read one): its number of terms."""
    terms_col, weights_col = field.column("term_ids"), field.column("weights")
    rows = copy_binary.copy_rows(
        conn,
        sql.SQL("SELECT p.term_id, d.doc_id, p.tf FROM {} AS d CROSS JOIN LATERAL unnest(d.{}, d.{}) AS p(term_id, tf) WHERE {}").format(
            info.table("docs"), terms_col, weights_col, where
        ),
        params,
        copy_binary.POSTING,
    )
    length = sql.SQL("doc_len") if field.slot == 0 else sql.SQL("cardinality({})").format(terms_col)
    lengths = copy_binary.copy_rows(
        conn, sql.SQL("SELECT doc_id, {} FROM {} AS d WHERE {}").format(length, info.table("docs"), where), params, copy_binary.LENGTH
    )
    terms, docs = rows["term"].astype(np.int64), rows["doc"].astype(np.int64)
    order = np.lexsort((docs, terms))
    return (
        terms[order], docs[order], rows["w"].astype(np.float64)[order],
        lengths["doc"].astype(np.int64), lengths["len"].astype(np.int32),
    )


class Tiers:
    """The in-memory indexes of a process's collections: postings per sparse field, (`dense`)
    the collections' dense codes, and (`filters`) their filter columns.

    Several sessions may share one (the server's): `lock` is held around each search's use of
    an index (bringing it to the search's version, then scoring), since following the change
    log mutates the arrays a concurrent search would read.
    """

    def __init__(self, home: Path | None = None, memory_limit: int | None = None, *, dense: bool = True,
                 dense_memory_limit: int | None = None) -> None:
        self.home = home
        self.memory_limit = memory_limit
        self.loaded: dict[tuple[str, int], Loaded] = {}  # (collection, sparse field's slot)
        self.dense = DenseTier(home, dense_memory_limit) if dense else None  # the dense codes, or None: DENSE in SQL
        self.filters = FilterTier(home)  # the declared scalar fields as columns, for a search's WHERE
        self.fields = FieldTier(home)  # each text field's own counts, for BM25F
        self.lock = threading.RLock()

    def why_not(self, conn: psycopg.Connection, info: CollectionInfo, field: SparseField) -> str | None:
        """Why this field of the collection is not served from memory, or None when it is (or can be)."""
        if (info.name, field.slot) in self.loaded:
            return None
        refused = change_log_refusal(conn, info)
        if refused:
            return refused
        if self.memory_limit is None or field.slot > 0:
            return None
        # The sum of document lengths is at least the number of postings (a term counts once per
        # document however often it occurs); `get` checks the real size once loaded.
        return self._over_budget(info.sum_len * BYTES_PER_POSTING)

    def _over_budget(self, need: int) -> str | None:
        if self.memory_limit is not None and need > self.memory_limit:
            return f"its postings need about {need / 2**20:.1f} MB, over sparse_tier_memory ({self.memory_limit / 2**20:.1f} MB)"
        return None

    def current(self, info: CollectionInfo, field: SparseField, terms: Iterable[str]) -> tuple[Loaded, list[tuple[str, int, int]]] | None:
        """The index and the terms' (term, id, df), when the index is at the version the search's
        catalog row shows and every term is known there; None sends the search to `get`."""
        loaded = self.loaded.get((info.name, field.slot))
        if loaded is None or loaded.identity != info.created or loaded.version != info.version:
            return None
        known = loaded.known(terms, info.version)
        return None if known is None else (loaded, known)

    def get(self, conn: psycopg.Connection, info: CollectionInfo, field: SparseField, identity: str, version: int) -> Loaded:
        """The collection's index, current as of the caller's snapshot, in which the catalog row
        said `identity` (creation time) and `version` (write counter). Call why_not first;
        raises TierRefused when the loaded index is over the budget after all."""
        loaded = self.loaded.get((info.name, field.slot))
        if loaded is None or loaded.identity != identity:
            loaded = self._snapshot(info, field, identity) or self._load(conn, info, field, identity, version)
            if loaded.vocab is None or loaded.vocab.whole_at != version:  # the snapshot's is older: read it again
                loaded.vocab = _vocabulary(conn, info, field, version)
            refused = self._over_budget(loaded.memory_bytes())
            if refused:
                raise TierRefused(refused)
            self.loaded[(info.name, field.slot)] = loaded
        if loaded.version is not None and version < loaded.version:
            # Another session's newer snapshot moved the index past this one's: serving it would
            # score documents this snapshot cannot see, with statistics it does not have.
            raise TierAhead(f"the index is at version {loaded.version}, newer than this search's snapshot ({version})")
        if loaded.version != version:
            self._follow(conn, info, field, loaded)
            loaded.version = version
        return loaded

    def _load(self, conn: psycopg.Connection, info: CollectionInfo, field: SparseField, identity: str, version: int) -> Loaded:
        """Every posting by binary COPY, and the vocabulary, in the caller's snapshot (the change
        log's last seq with it), whose catalog version is `version`."""
        start = time.perf_counter()
        seq = conn.execute(sql.SQL("SELECT coalesce(max(seq), 0) FROM {}").format(info.table("changes"))).fetchone()[0]
        terms, docs, weights, len_ids, lens = _postings(conn, info, field, sql.SQL("TRUE"), ())
        index = SparseIndex.build(terms, docs, weights, (len_ids, lens), integer=field.bm25 and _integral(weights))
        loaded = Loaded(index, seq, identity, "postings", (time.perf_counter() - start) * 1000, vocab=_vocabulary(conn, info, field, version))
        self._save(info, field, loaded)
        return loaded

    def _follow(self, conn: psycopg.Connection, info: CollectionInfo, field: SparseField, loaded: Loaded) -> None:
        change = changes_since(conn, info, loaded.seq)
        if change is None:
            return
        removed, added, last = change
        loaded.index.remove(removed)
        if added:
            terms, docs, weights, len_ids, lens = _postings(conn, info, field, sql.SQL("d.doc_id = ANY(%s)"), (added,))
            if loaded.index.weights.dtype == np.uint16 and not _integral(weights):
                loaded.index = loaded.index.compact()
                loaded.index.weights = loaded.index.weights.astype(np.float32)
            loaded.index.add(terms, docs, weights, len_ids, lens)
        loaded.seq = last
        if loaded.index.delta_postings > COMPACT_SHARE * max(len(loaded.index.docs), 1000):
            loaded.index = loaded.index.compact()
            self._save(info, field, loaded)

    # ------------------------------------------------------------------ snapshots

    def _path(self, info: CollectionInfo, field: SparseField, identity: str) -> Path | None:
        return snapshot_folder(self.home, info.name if field.slot == 0 else f"{info.name}.{field.slot}", identity)

    def _save(self, info: CollectionInfo, field: SparseField, loaded: Loaded) -> None:
        folder = self._path(info, field, loaded.identity)
        if folder is None or loaded.index.delta:
            return
        ix = loaded.index
        arrays = dict(terms=ix.terms, offsets=ix.offsets, docs=ix.docs, weights=ix.weights, doc_len=ix.doc_len, alive=ix.alive)
        meta = {"seq": loaded.seq, "identity": loaded.identity}
        if loaded.vocab is not None:
            arrays |= loaded.vocab.arrays()
            meta["vocab_version"] = loaded.vocab.whole_at
        write_snapshot(folder, "index", arrays, meta)

    def _snapshot(self, info: CollectionInfo, field: SparseField, identity: str) -> Loaded | None:
        folder = self._path(info, field, identity)
        if folder is None or not (folder / "index.npz").exists():
            return None
        start = time.perf_counter()
        meta, data = read_snapshot(folder / "index.npz")
        if meta.get("identity") != identity or "terms" not in data:  # another collection's, or an older layout
            return None
        index = SparseIndex(**{k: data[k] for k in ("terms", "offsets", "docs", "weights", "doc_len", "alive")})
        vocab = Vocabulary(data["vocab_terms"], data["vocab_ids"], data["vocab_df"], meta.get("vocab_version")) if "vocab_terms" in data else None
        return Loaded(index, int(meta["seq"]), identity, "snapshot", (time.perf_counter() - start) * 1000, vocab=vocab)


def _vocabulary(conn: psycopg.Connection, info: CollectionInfo, field: SparseField, version: int) -> Vocabulary:
    rows = conn.execute(sql.SQL("SELECT term, term_id, df FROM {}").format(info.field_table(field, "vocab"))).fetchall()
    return Vocabulary.from_rows(rows, version)


def _integral(weights: np.ndarray) -> bool:
    return bool(len(weights) == 0 or (np.all(weights == np.round(weights)) and weights.min() >= 0 and weights.max() <= 65535))
