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

import hashlib
import json
import os
import re
import struct
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import psycopg
from psycopg import sql

from sparsesql.db import copy_binary
from sparsesql.db.catalog import CollectionInfo, SparseField
from sparsesql.errors import CheckError
from sparsesql.tier.index import SparseIndex
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


def _copy_rows(conn: psycopg.Connection, query: sql.Composable, params: tuple, dtype: np.dtype) -> np.ndarray:
    """Rows of a binary COPY as a numpy record array (every row has the same fixed layout)."""
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query), params) as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
    return copy_binary.decode(data, dtype)


def _postings(conn: psycopg.Connection, info: CollectionInfo, field: SparseField, where: sql.Composable, params: tuple) -> tuple[np.ndarray, ...]:
    """The chosen documents' postings in one field sorted by (term, doc), and their lengths, from
    the documents' own term arrays: one sequential pass, no sort on the server. A learned field
    in a further slot has no length of its own (dot products never read one): its number of terms."""
    terms_col, weights_col = field.column("term_ids"), field.column("weights")
    rows = _copy_rows(
        conn,
        sql.SQL("SELECT p.term_id, d.doc_id, p.tf FROM {} AS d CROSS JOIN LATERAL unnest(d.{}, d.{}) AS p(term_id, tf) WHERE {}").format(
            info.table("docs"), terms_col, weights_col, where
        ),
        params,
        copy_binary.POSTING,
    )
    length = sql.SQL("doc_len") if field.slot == 0 else sql.SQL("cardinality({})").format(terms_col)
    lengths = _copy_rows(
        conn, sql.SQL("SELECT doc_id, {} FROM {} AS d WHERE {}").format(length, info.table("docs"), where), params, copy_binary.LENGTH
    )
    terms, docs = rows["term"].astype(np.int64), rows["doc"].astype(np.int64)
    order = np.lexsort((docs, terms))
    return (
        terms[order], docs[order], rows["w"].astype(np.float64)[order],
        lengths["doc"].astype(np.int64), lengths["len"].astype(np.int32),
    )


def change_log_refusal(conn: psycopg.Connection, info: CollectionInfo) -> str | None:
    """Why the tier cannot follow the collection's change log (it has none, or this role may not
    read it), or None. Asked before reading it: a refused read would abort the search's snapshot."""
    table = f'sparsesql."{info.name}__changes"'
    present, readable = conn.execute(
        "SELECT c.oid IS NOT NULL, c.oid IS NOT NULL AND has_table_privilege(c.oid, 'SELECT') FROM (SELECT to_regclass(%s) AS oid) AS c",
        (table,),
    ).fetchone()
    if not present:
        return "the collection has no change log (created before it existed); re-create it to use the memory tier"
    if not readable:
        return f"this role may not read the change log {table} (db.grant(role, 'reader') grants it)"
    return None


def changes_since(conn: psycopg.Connection, info: CollectionInfo, seq: int) -> tuple[np.ndarray, list[int], int] | None:
    """The change log past `seq`, in the caller's snapshot: (removed doc ids, added doc ids still
    present, the last seq), or None when nothing changed."""
    rows = conn.execute(
        sql.SQL("SELECT seq, doc_id, added FROM {} WHERE seq > %s ORDER BY seq").format(info.table("changes")), (seq,)
    ).fetchall()
    if not rows:
        return None
    removed = np.array([d for _, d, added in rows if not added], dtype=np.int64)
    added = sorted({d for _, d, a in rows if a} - set(removed.tolist()))
    return removed, added, rows[-1][0]


def snapshot_folder(home: Path | None, name: str, identity: str) -> Path | None:
    """Where a collection's snapshot lives: its name and creation time, so a re-created namesake
    never loads the old one's."""
    if home is None:
        return None
    key = hashlib.sha256(f"{name}|{identity}".encode()).hexdigest()[:16]
    return home / "tiers" / f"{name}-{key}"


def write_snapshot(folder: Path, file: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """One file, written beside its final name and renamed whole: its arrays and its seq always
    agree, and a crash mid-write leaves the previous snapshot (or none)."""
    folder.mkdir(parents=True, exist_ok=True)
    _remove_orphans(folder, file)
    tmp = folder / f"{file}.{os.getpid()}.{threading.get_ident()}.tmp.npz"  # writers in other processes share the folder
    np.savez(tmp, **arrays, meta=np.array(json.dumps(meta)))
    tmp.replace(folder / f"{file}.npz")


def _remove_orphans(folder: Path, file: str) -> None:
    """Temporary files of writers that died before their rename (kill -9): a process that no
    longer exists will not finish them."""
    for tmp in folder.glob(f"{file}.*.tmp.npz"):
        pid = tmp.name.split(".")[1]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            tmp.unlink(missing_ok=True)


def read_snapshot(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """A snapshot's metadata and arrays, the arrays memory-mapped copy-on-write from the file.

    np.savez stores each array uncompressed, as a .npy member of a zip, so its bytes lie in the
    file as they lie in memory: mapping them lets every process on the machine share one copy
    through the page cache, and a new process answers before it has read the whole index (pages
    come in as queries touch them). A page the process writes (a deletion's alive flag) becomes
    its own; the file is never written. A later snapshot replaces the file by rename, so a
    mapped one stays intact until its readers drop it.
    """
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        for member in archive.infolist():
            name = member.filename.removesuffix(".npy")
            if member.compress_type != zipfile.ZIP_STORED:
                with archive.open(member) as data:
                    arrays[name] = np.lib.format.read_array(data)
                continue
            f.seek(member.header_offset)
            local = f.read(30)
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            f.seek(member.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(f)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
            count = int(np.prod(shape))
            if dtype.hasobject or count == 0 or shape == ():
                f.seek(member.header_offset + 30 + name_len + extra_len)
                arrays[name] = np.lib.format.read_array(f)
            else:
                arrays[name] = np.memmap(path, dtype=dtype, mode="c", offset=f.tell(), shape=shape, order="F" if fortran else "C")
    meta = json.loads(str(arrays.pop("meta")))
    return meta, arrays


class TierRefused(Exception):
    """The collection turned out too large for the budget once loaded; the search runs in SQL."""


class Tiers:
    """The in-memory indexes of a process's collections: postings per sparse field, (`dense`)
    the collections' dense codes, and (`filters`) their filter columns.

    Several sessions may share one (the server's): `lock` is held around each search's use of
    an index (bringing it to the search's version, then scoring), since following the change
    log mutates the arrays a concurrent search would read.
    """

    def __init__(self, home: Path | None = None, memory_limit: int | None = None, *, dense: bool = True,
                 dense_memory_limit: int | None = None) -> None:
        from sparsesql.tier.dense_cache import DenseTier
        from sparsesql.tier.filters import FilterTier

        self.home = home
        self.memory_limit = memory_limit
        self.loaded: dict[tuple[str, int], Loaded] = {}  # (collection, sparse field's slot)
        self.dense = DenseTier(home, dense_memory_limit) if dense else None  # the dense codes, or None: DENSE in SQL
        self.filters = FilterTier(home)  # the declared scalar fields as columns, for a search's WHERE
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
            raise TierRefused(f"the index is at version {loaded.version}, newer than this search's snapshot ({version})")
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
        arrays = dict(terms=ix.terms, offsets=ix.offsets, docs=ix.docs, weights=ix.weights, max_weight=ix.max_weight,
                      min_len=ix.min_len, doc_len=ix.doc_len, alive=ix.alive)
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
        index = SparseIndex(**{k: data[k] for k in ("terms", "offsets", "docs", "weights", "max_weight", "min_len", "doc_len", "alive")})
        vocab = Vocabulary(data["vocab_terms"], data["vocab_ids"], data["vocab_df"], meta.get("vocab_version")) if "vocab_terms" in data else None
        return Loaded(index, int(meta["seq"]), identity, "snapshot", (time.perf_counter() - start) * 1000, vocab=vocab)


def _vocabulary(conn: psycopg.Connection, info: CollectionInfo, field: SparseField, version: int) -> Vocabulary:
    rows = conn.execute(sql.SQL("SELECT term, term_id, df FROM {}").format(info.field_table(field, "vocab"))).fetchall()
    return Vocabulary.from_rows(rows, version)


def _integral(weights: np.ndarray) -> bool:
    return bool(len(weights) == 0 or (np.all(weights == np.round(weights)) and weights.min() >= 0 and weights.max() <= 65535))


def parse_bytes(size: int | str | None) -> int | None:
    """"2GB", "512 MB", "1.5GiB" or a number of bytes; None (or "none") for no limit; "auto": a quarter of
    this machine's physical memory (the default budget: a collection that fits it is served from
    memory, a larger one stays in SQL)."""
    if size is None or isinstance(size, int):
        return size
    if size.strip().lower() == "auto":
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    if size.strip().lower() == "none":
        return None
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*", size)
    if match is None:
        raise CheckError(f"sparse_tier_memory {size!r} is not a size such as '2GB' or '512MB'")
    return int(float(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " "))
