"""Writes documents: fields, BM25 postings, dense vectors, and the statistics they change.

Each batch is one transaction holding the collection's catalog row lock, so a batch is all in or
all out and N, sum of lengths and df stay exact however writers interleave. A document whose
content hash is unchanged is skipped before any analysis or encoding, which makes re-ingesting
the same input cheap and an interrupted ingest resumable by running it again. Bulk rows travel
by binary COPY; document ids are drawn from the table's sequence first so postings can be
copied in the same pass.

Storage stops at the collection's own tables: structures built over its documents (the kNN
graph) are kept in step by an `Upkeep` the caller passes, run inside the same transaction, so
this module never imports them (sparsesql/exec/write.py is the door that supplies it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import math
import re
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal
from contextlib import ExitStack
from typing import Callable, Iterable, Iterator

import numpy as np
import psycopg
from pgvector import Vector
from psycopg import sql
from psycopg.types.json import Jsonb

from sparsesql.batch_analysis import count_terms
from sparsesql.db import copy_binary
from sparsesql.db.catalog import NUMERIC_TYPES, CollectionInfo, SparseField, set_extra
from sparsesql.db.schema import BLOCK_POSTINGS
from sparsesql.errors import IngestError

COPY_TYPES = {
    "text": "text",
    "integer": "int4",
    "bigint": "int8",
    "real": "float4",
    "double precision": "float8",
    "numeric": "numeric",
    "boolean": "bool",
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
}
INT_RANGE = {"integer": 2**31, "bigint": 2**63}


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (position, why) of skipped documents

    def __iadd__(self, other: "IngestReport") -> "IngestReport":
        self.added += other.added
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected
        return self


Hook = Callable[[psycopg.Connection, CollectionInfo, list[int]], None]


@dataclass(frozen=True)
class Upkeep:
    """What a write owes the structures built over a collection's documents: `added(conn, info,
    doc_ids)` runs after new rows (vectors included) are in, `removed` after rows are gone, both
    inside the batch's transaction so the structure commits or rolls back with the rows."""

    added: Hook
    removed: Hook


@dataclass
class _Doc:
    id: str
    values: dict
    metadata: dict
    vector: np.ndarray | None
    sparse: dict[str, dict[str, float]]  # learned field -> the vector supplied for it
    hash: str
    where: str  # "document 3 (id 'x')", for errors found after validation (an encoder's vector)


def _where(position: int, doc: dict) -> str:
    ident = doc.get("id") if isinstance(doc, dict) else None
    return f"document {position}" + (f" (id {ident!r})" if ident is not None else "")


def _field_value(info: CollectionInfo, name: str, type_name: str, value: object, where: str) -> object:
    if value is None:
        return None
    bad = IngestError(f"{where}: field {name!r} expects {type_name}, got {type(value).__name__} {value!r:.60}")
    if type_name == "text":
        if not isinstance(value, str):
            raise bad
        return _storable(value, f"{where}: field {name!r}")
    if type_name in INT_RANGE:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        if not -INT_RANGE[type_name] <= value < INT_RANGE[type_name]:
            raise IngestError(f"{where}: field {name!r} value {value} is out of range for {type_name}")
        return value
    if type_name in NUMERIC_TYPES:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(value):
            raise IngestError(f"{where}: field {name!r} is {value}; only finite numbers are stored")
        return Decimal(str(value)) if type_name == "numeric" else float(value)
    if type_name == "boolean":
        if not isinstance(value, bool):
            raise bad
        return value
    parse = {"date": dt.date.fromisoformat, "timestamp": dt.datetime.fromisoformat, "timestamptz": dt.datetime.fromisoformat}
    if isinstance(value, str):
        try:
            value = parse[type_name](value)
        except ValueError:
            raise bad from None
    if type_name == "date" and isinstance(value, dt.datetime):
        raise bad
    if not isinstance(value, (dt.date, dt.datetime)):
        raise bad
    if type_name == "timestamptz" and isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value


def _vector(info: CollectionInfo, value: object, where: str, label: str) -> np.ndarray:
    """A dense vector as pgvector stores it (float32), refused unless cosine ranking can use it:
    an all-zero vector has no direction, so its similarity to any query is NaN, which sorts
    first in DENSE and makes HYBRID's min-max normalisation score every candidate 1.0. A good
    vector is checked as float32 alone; the float64 reading below says what is wrong with a bad one."""
    try:
        with np.errstate(over="ignore"):  # a component beyond float32 becomes inf, refused below
            single = np.asarray(value, dtype=np.float32)
        if single.ndim == 1 and single.shape[0] == info.settings.dim and np.isfinite(single).all() and single.any():
            return single
    except (OverflowError, TypeError, ValueError):
        pass
    try:
        array = np.asarray(value, dtype=np.float64)
    except OverflowError:
        raise IngestError(f"{where}: {label} holds an integer too large for a vector component") from None
    except (TypeError, ValueError):
        raise IngestError(f"{where}: {label} must be a list of numbers") from None
    if array.ndim != 1 or array.shape[0] != info.settings.dim:
        raise IngestError(
            f"{where}: {label} has {array.size} dimensions; collection {info.name!r} stores {info.settings.dim}"
        )
    if not np.isfinite(array).all():
        raise IngestError(f"{where}: {label} holds NaN or infinite components")
    with np.errstate(over="ignore"):
        single = array.astype(np.float32)
    if not np.isfinite(single).all():
        raise IngestError(f"{where}: {label} holds a component beyond single precision (pgvector stores float4, up to 3.4e38)")
    if not single.any():
        raise IngestError(f"{where}: {label} is all zeros, so it has no direction to compare")
    return single


def _sparse(value: object, where: str) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise IngestError(f"{where}: 'sparse' must be a non-empty mapping of token -> weight")
    out: dict[str, float] = {}
    for token, weight in value.items():
        if not isinstance(token, str) or not token or isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise IngestError(f"{where}: 'sparse' entry {token!r}: {weight!r} is not token -> number")
        if not math.isfinite(weight) or weight < 0:
            raise IngestError(f"{where}: 'sparse' weight of {token!r} is {weight}; weights must be finite and >= 0")
        if weight > 0:
            out[token] = float(weight)
    return out


def _supplied(info: CollectionInfo, value: object, where: str) -> dict[str, dict[str, float]]:
    """The learned vectors a document brings: `sparse` is {token: weight} for a collection's only
    learned field, or {field: {token: weight}}; a field without a model must get one."""
    learned = [f for f in info.sparse_fields if not f.bm25]
    if value is not None and not learned:
        raise IngestError(f"{where}: collection {info.name!r} computes BM25 from text; 'sparse' is not accepted")
    if value is None:
        given = {}
    elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        names = {f.name for f in learned}
        for name in value:
            if name not in names:
                raise IngestError(
                    f"{where}: 'sparse' names field {name!r}; collection {info.name!r} has learned sparse fields "
                    f"{', '.join(sorted(names))}"
                )
        given = {name: _sparse(v, f"{where}, field {name!r}") for name, v in value.items()}
    elif len(learned) == 1:
        given = {learned[0].name: _sparse(value, where)}
    else:
        raise IngestError(
            f"{where}: collection {info.name!r} has learned sparse fields {', '.join(f.name for f in learned)}; "
            "give 'sparse' as {field: {token: weight}}"
        )
    for f in learned:
        if f.model == "none" and f.name not in given:
            what = "stores precomputed sparse vectors" if len(learned) == 1 else f"has no model for sparse field {f.name!r}"
            raise IngestError(f"{where}: collection {info.name!r} {what}; supply 'sparse'")
    return given


def _storable(text: str, what: str) -> str:
    """Text PostgreSQL can store: no NUL character, valid Unicode."""
    if "\x00" in text:
        raise IngestError(f"{what} contains a NUL character, which PostgreSQL text cannot hold")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise IngestError(f"{what} is not valid Unicode (it holds a lone surrogate)") from None
    return text


def _ident(value: object, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise IngestError(f"{where}: every document needs an 'id' (a non-empty string or an integer)")
    return _storable(str(value), f"{where}: 'id'")


# JSON's escape of NUL (jsonb refuses it), not preceded by an escaped backslash.
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _metadata(value: object, where: str) -> tuple[dict, str]:
    """The metadata mapping ({} for none) and its canonical JSON, which the content hash takes."""
    metadata = value or {}
    if not isinstance(metadata, dict):
        raise IngestError(f"{where}: 'metadata' must be a mapping")
    try:
        text = json.dumps(metadata, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise IngestError(f"{where}: 'metadata' is not JSON ({exc})") from None
    if _JSON_NUL.search(text):
        raise IngestError(f"{where}: 'metadata' contains a NUL character, which PostgreSQL jsonb cannot hold")
    return metadata, text


def check_value(info: CollectionInfo, key: str, value: object, where: str, *, label: str | None = None) -> object:
    """One key of an input document ("id", a declared field, "metadata", "vector", "sparse"),
    checked and converted exactly as `validate` does, so a caller that knows where each value
    was written (the dialect's INSERT) can blame that value; `label` names the key in messages."""
    if key == "id":
        return _ident(value, where)
    if key == "metadata":
        return _metadata(value, where)[0]
    if key == "vector":
        return None if value is None else _vector(info, value, where, label or "'vector'")
    if key == "sparse":
        return _supplied(info, value, where)
    (field,) = [f for f in info.fields if f.name == key]
    return _field_value(info, field.name, field.type, value, where)


def validate(info: CollectionInfo, doc: object, position: int, *, where: str | None = None) -> _Doc:
    """Check one input document against the collection and compute its content hash; `where`
    names it in messages (default: its position and id)."""
    where = where or _where(position, doc if isinstance(doc, dict) else {})
    if not isinstance(doc, dict):
        raise IngestError(f"{where}: expected a mapping with an 'id', got {type(doc).__name__}")
    allowed = {"id", "metadata", "vector", "sparse"} | {f.name for f in info.fields}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise IngestError(
            f"{where}: unknown field {unknown[0]!r}; collection {info.name!r} has fields "
            f"{', '.join(f.name for f in info.fields) or '(none)'} plus id, metadata, vector, sparse"
        )
    ident = _ident(doc.get("id"), where)
    values = {f.name: _field_value(info, f.name, f.type, doc.get(f.name), where) for f in info.fields}
    metadata, meta_json = _metadata(doc.get("metadata"), where)
    vector = check_value(info, "vector", doc.get("vector"), where)
    if vector is None and info.settings.dense == "none":
        raise IngestError(f"{where}: collection {info.name!r} has no dense model (dense => 'none'); supply 'vector'")
    sparse = _supplied(info, doc.get("sparse"), where)
    # One learned field hashes its bare vector, as before there could be several: unchanged
    # documents of older collections stay unchanged.
    hashed = (next(iter(sparse.values())) if len(info.sparse_fields) == 1 else sparse) if sparse else None
    digest = hashlib.sha256(json.dumps([values, meta_json, hashed], sort_keys=True, default=str).encode())
    if vector is not None:  # its float32 bytes: exact, and far cheaper than 384 floats as JSON
        digest.update(vector.astype("<f4").tobytes())
    return _Doc(ident, values, metadata, vector, sparse, digest.hexdigest(), where)


def document_text(info: CollectionInfo, values: dict) -> str:
    """The text that BM25 analyses and the dense model embeds: the text fields, space-joined."""
    return " ".join(values[name] for name in info.settings.text_fields if values.get(name))


def _lock(conn: psycopg.Connection, info: CollectionInfo) -> CollectionInfo:
    """Take the collection's catalog row lock (writers serialize on it) and return the row as
    it is now: a migration may have moved the collection to the other layout (distributed or
    not) since `info` was read."""
    row = conn.execute("SELECT extra FROM sparsesql.collections WHERE name = %s FOR UPDATE", (info.name,)).fetchone()
    if row is None:
        raise IngestError(f"collection {info.name!r} was dropped while writing to it")
    return info if (row[0] or {}) == info.extra else replace(info, extra=row[0] or {})


def log_changes(conn: psycopg.Connection, info: CollectionInfo, doc_ids: list[int], *, added: bool) -> None:
    """Record added or removed documents in the collection's change log (same transaction)."""
    if info.buckets:
        conn.execute(
            sql.SQL("INSERT INTO {} (doc_id, added, shard) SELECT unnest(%s::bigint[]), %s, unnest(%s::int[])").format(info.table("changes")),
            (doc_ids, added, info.shard_of(doc_ids)),
        )
        return
    conn.execute(
        sql.SQL("INSERT INTO {} (doc_id, added) SELECT unnest(%s::bigint[]), %s").format(info.table("changes")),
        (doc_ids, added),
    )


def _remove_postings(conn: psycopg.Connection, info: CollectionInfo, field: SparseField, doc_ids: list[int]) -> None:
    """Take documents out of one sparse field's blocks and df (before their rows go).

    Each (term, document) pair, read from the document's own term array, finds its block as the
    term's last block keyed at or below the document; the block is rewritten without the
    removed documents, or deleted once empty, and df drops by the pairs counted. On a
    distributed collection a term's blocks cover increasing ranges within each shard, so the
    statement runs once per shard value, filtered to it (Citus routes it to that one shard),
    and df, in a reference table, drops by counts taken on the coordinator.
    """
    if not info.buckets:
        conn.execute(_remove_sql(info, field, sharded=False), {"ids": doc_ids})
        return
    by_shard: dict[int, list[int]] = {}
    for doc_id, shard in zip(doc_ids, info.shard_of(doc_ids)):
        by_shard.setdefault(shard, []).append(doc_id)
    statement = _remove_sql(info, field, sharded=True)
    for shard, ids in by_shard.items():
        conn.execute(statement, {"ids": ids, "shard": shard})
    terms = conn.execute(
        sql.SQL("SELECT t, count(*) FROM {} AS d CROSS JOIN LATERAL unnest(d.{}) AS t WHERE d.doc_id = ANY(%s) GROUP BY t").format(
            info.table("docs"), field.column("term_ids")),
        (doc_ids,),
    ).fetchall()
    conn.execute(
        sql.SQL("UPDATE {} AS v SET df = v.df - x.n FROM unnest(%s::int[], %s::int[]) AS x(term_id, n) WHERE v.term_id = x.term_id").format(
            info.field_table(field, "vocab")),
        ([t for t, _ in terms], [n for _, n in terms]),
    )


def _remove_sql(info: CollectionInfo, field: SparseField, *, sharded: bool) -> sql.Composed:
    """The statement of _remove_postings (binds %(ids)s, and %(shard)s when sharded)."""
    on = sql.SQL(" AND {}.shard = %(shard)s")
    d, p = (on.format(sql.Identifier(a)) if sharded else sql.SQL("") for a in ("d", "p"))
    last = sql.SQL(" SELECT count(*) FROM shrunk") if sharded else sql.SQL(
        ", counts AS (SELECT term_id, count(*) AS n FROM gone GROUP BY term_id) "
        "UPDATE {v} AS v SET df = v.df - counts.n FROM counts WHERE v.term_id = counts.term_id"
    ).format(v=info.field_table(field, "vocab"))
    return sql.SQL(
        "WITH gone AS (SELECT t.term_id, d.doc_id FROM {docs} AS d CROSS JOIN LATERAL unnest(d.{terms}) AS t(term_id) "
        "WHERE d.doc_id = ANY(%(ids)s){d}), "
        "hit AS (SELECT g.term_id, b.block, array_agg(g.doc_id) AS ids FROM gone AS g CROSS JOIN LATERAL "
        "(SELECT p.block FROM {postings} AS p WHERE p.term_id = g.term_id AND p.block <= g.doc_id{p} ORDER BY p.block DESC LIMIT 1) AS b "
        "GROUP BY g.term_id, b.block), "
        "kept AS (SELECT hit.term_id, hit.block, k.doc_ids, k.tfs FROM hit JOIN {postings} AS p "
        "ON p.term_id = hit.term_id AND p.block = hit.block{p} "
        "CROSS JOIN LATERAL (SELECT array_agg(u.doc_id ORDER BY u.o) AS doc_ids, array_agg(u.tf ORDER BY u.o) AS tfs "
        "FROM unnest(p.doc_ids, p.tfs) WITH ORDINALITY AS u(doc_id, tf, o) WHERE u.doc_id <> ALL(hit.ids)) AS k), "
        "shrunk AS (UPDATE {postings} AS p SET doc_ids = kept.doc_ids, tfs = kept.tfs FROM kept "
        "WHERE p.term_id = kept.term_id AND p.block = kept.block AND kept.doc_ids IS NOT NULL{p} RETURNING 1), "
        "emptied AS (DELETE FROM {postings} AS p USING kept "
        "WHERE p.term_id = kept.term_id AND p.block = kept.block AND kept.doc_ids IS NULL{p}){last}"
    ).format(docs=info.table("docs"), postings=info.field_table(field, "postings"), terms=field.column("term_ids"), d=d, p=p, last=last)


def remove(conn: psycopg.Connection, info: CollectionInfo, doc_ids: list[int], *, upkeep: Upkeep) -> int:
    """Delete documents by internal id inside the caller's transaction, keeping statistics exact."""
    if not doc_ids:
        return 0
    docs = info.table("docs")
    for f in info.sparse_fields:
        _remove_postings(conn, info, f, doc_ids)
    row = conn.execute(
        sql.SQL(
            "WITH gone AS (DELETE FROM {d} WHERE doc_id = ANY(%(ids)s) RETURNING doc_len) "
            "SELECT count(*), coalesce(sum(doc_len), 0) FROM gone"
        ).format(d=docs),
        {"ids": doc_ids},
    ).fetchone()
    count, length = row
    log_changes(conn, info, doc_ids, added=False)
    upkeep.removed(conn, info, doc_ids)
    conn.execute(
        "UPDATE sparsesql.collections SET n_docs = n_docs - %s, sum_len = sum_len - %s, version = version + 1 "
        "WHERE name = %s",
        (count, length, info.name),
    )
    return count


def delete_where(
    conn: psycopg.Connection, info: CollectionInfo, condition: sql.Composable, params: dict, *, upkeep: Upkeep
) -> int:
    """Delete the documents matching `condition` (SQL over the documents table as alias `d`,
    binding named `params`) in one transaction; the rows are chosen under the collection's lock,
    so a concurrent writer cannot slip one in between. Returns how many went."""
    with conn.transaction():
        info = _lock(conn, info)
        rows = conn.execute(
            sql.SQL("SELECT d.doc_id FROM {} AS d WHERE {}").format(info.table("docs"), condition), params
        ).fetchall()
        return remove(conn, info, [r[0] for r in rows], upkeep=upkeep)


def delete(conn: psycopg.Connection, info: CollectionInfo, ids: Iterable[str], *, upkeep: Upkeep) -> int:
    """Delete documents by external id in one transaction; returns how many existed."""
    wanted = [ids] if isinstance(ids, (str, int)) else [str(i) for i in ids]
    wanted = [str(i) for i in wanted]
    return delete_where(conn, info, sql.SQL("d.id = ANY(%(ids)s)"), {"ids": wanted}, upkeep=upkeep)


@dataclass
class _Weights:
    """One sparse field's terms and weights for a chunk's documents, flat: the chunk's distinct
    terms, and each posting as a position in that list, the documents one after another. Built
    where the analysis runs (a worker process, for long loads), so the main process gets a few
    arrays instead of a dict a document, and maps terms to ids once per distinct term."""

    terms: list[str]
    index: np.ndarray  # int32, each posting's term, as a position in `terms`
    weight: np.ndarray  # float32
    per_doc: np.ndarray  # int64, each document's number of postings
    lengths: np.ndarray  # int64, each document's length (BM25: its tokens after stopwords; learned: its terms)
    keys: np.ndarray | None = None  # int64, each term's number in the analyzer's numbering `space` (BM25 only)
    space: str | None = None

    @classmethod
    def of(cls, vectors: list[dict[str, float]], lengths: list[int]) -> "_Weights":
        flat = [t for v in vectors for t in v]
        vocab = dict(zip(dict.fromkeys(flat), range(len(flat))))  # first occurrence order, numbered (C loops, not Python ones)
        index = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int32, count=len(flat))
        weight = [w for v in vectors for w in v.values()]
        return cls(list(vocab), index, np.array(weight, dtype=np.float32),
                   np.array([len(v) for v in vectors], dtype=np.int64), np.array(lengths, dtype=np.int64))

    def take(self, keep: list[int]) -> "_Weights":
        """The documents at positions `keep` (ascending), with only the terms they use."""
        if len(keep) == len(self.per_doc):
            return self
        chosen = np.zeros(len(self.per_doc), dtype=bool)
        chosen[keep] = True
        index = self.index[np.repeat(chosen, self.per_doc)]
        used = np.unique(index)
        position = np.zeros(len(self.terms), dtype=np.int32)
        position[used] = np.arange(len(used), dtype=np.int32)
        weight = self.weight[np.repeat(chosen, self.per_doc)]
        return _Weights([self.terms[i] for i in used.tolist()], position[index], weight, self.per_doc[keep], self.lengths[keep],
                        None if self.keys is None else self.keys[used], self.space)

    def postings(self, term_ids: np.ndarray, doc_ids: list[int], shards: list[int] | None) -> "_BatchPostings":
        """The postings with `term_ids` (each of `terms`' id) and the documents' ids (ascending),
        sorted by (doc, term): each document's row holds its terms in id order."""
        term = term_ids[self.index]
        doc = np.repeat(np.array(doc_ids, dtype=np.int64), self.per_doc)
        position = np.repeat(np.arange(len(self.per_doc), dtype=np.int64), self.per_doc)
        order = np.argsort((position << 32) | term.astype(np.int64))  # distinct keys: (document, term)
        shard = None if shards is None else np.repeat(np.array(shards, dtype=np.int32), self.per_doc)[order]
        return _BatchPostings(term[order], doc[order], self.weight[order], self.per_doc.tolist(), shard)


def analyse_texts(texts: list[str]) -> _Weights:
    """BM25's term counts and token count of each text: top level, so a worker process can run it."""
    counted = count_terms(texts)
    return _Weights(counted.terms, counted.index, counted.tf.astype(np.float32), counted.per_text, counted.lengths,
                    counted.keys, counted.space)


Analyser = Callable[[list[str]], _Weights]


def _field_weights(info: CollectionInfo, field: SparseField, docs: list[_Doc], analyse: Analyser = analyse_texts) -> _Weights:
    """Each document's terms, weights and length in one sparse field: the analyzer's counts and
    token count for BM25 (by `analyse`: in this process, or a worker's); for a learned field the
    supplied vector, else the model's encoding (batched), and its number of terms."""
    if field.bm25:
        return analyse([document_text(info, doc.values) for doc in docs])
    vectors = [doc.sparse.get(field.name) for doc in docs]
    missing = [i for i, v in enumerate(vectors) if v is None]
    if missing:
        from sparsesql.encoders.sparse import load_sparse_encoder

        encoder = load_sparse_encoder(field.model)
        encoded = encoder.encode([document_text(info, docs[i].values) for i in missing], top_k=field.top_k)
        for i, vector in zip(missing, encoded):
            vectors[i] = vector
    return _Weights.of(vectors, [len(v) for v in vectors])


def _term_ids(conn: psycopg.Connection, vocab: sql.Identifier, terms: list[str]) -> dict[str, int]:
    """Ids of the batch's terms, adding the new ones. Known terms are looked up first: an upsert
    that conflicts still consumes an identity value, and sparse ids would waste the memory tier's
    per-term arrays (and the server's time on conflicts)."""
    cursor = conn.cursor()
    cursor.adapters.register_dumper(copy_binary.TextArray, copy_binary.TextArrayDumper)
    ids = dict(cursor.execute(sql.SQL("SELECT term, term_id FROM {} WHERE term = ANY(%s)").format(vocab), (copy_binary.TextArray(terms),)).fetchall())
    missing = [t for t in terms if t not in ids]
    if missing:
        ids.update(cursor.execute(
            sql.SQL("INSERT INTO {} (term) SELECT unnest(%s::text[]) ON CONFLICT (term) DO NOTHING RETURNING term, term_id").format(vocab),
            (copy_binary.TextArray(missing),),
        ).fetchall())
    return ids


class _TermCache:
    """The term ids one load has looked up, so each term is asked for once rather than once a
    chunk (half of a chunk's terms were known ones: 1.5 s of a 60,000-document load). BM25's
    terms come numbered by the analyzer (sparsesql.batch_analysis), so their ids are kept in an
    array by that number and a chunk's known terms cost one gather; learned fields' terms are
    kept by name. Vocabulary rows are never deleted, so an id stays right for the rest of the
    load; a load ends at its first failed batch, and the ids a rolled-back batch added go with it."""

    def __init__(self) -> None:
        self.known: dict[str, dict[str, int]] = {}
        self.numbered: dict[tuple[str, str], np.ndarray] = {}  # (vocabulary, numbering) -> id by number, -1 unknown

    def ids(self, conn: psycopg.Connection, vocab: sql.Identifier, weights: "_Weights") -> np.ndarray:
        """The id of each of `weights.terms`, as an int32 array."""
        if weights.keys is None:
            return self._by_name(conn, vocab, weights.terms)
        place = (vocab.as_string(None), weights.space)
        table = self.numbered.get(place, np.zeros(0, dtype=np.int64))
        if len(table) <= weights.keys.max(initial=-1):
            table = np.concatenate([table, np.full(max(len(table), int(weights.keys.max()) + 1 - len(table)), -1, dtype=np.int64)])
            self.numbered[place] = table
        ids = table[weights.keys]
        unknown = np.flatnonzero(ids < 0)
        if len(unknown):
            ids[unknown] = table[weights.keys[unknown]] = self._by_name(conn, vocab, list(map(weights.terms.__getitem__, unknown.tolist())))
        return ids.astype(np.int32)

    def _by_name(self, conn: psycopg.Connection, vocab: sql.Identifier, terms: list[str]) -> np.ndarray:
        known = self.known.setdefault(vocab.as_string(None), {})
        ids = np.fromiter(map(known.get, terms, itertools.repeat(-1)), dtype=np.int64, count=len(terms))
        unknown = np.flatnonzero(ids < 0)
        if len(unknown):
            missing = list(map(terms.__getitem__, unknown.tolist()))
            found = _term_ids(conn, vocab, missing)
            known.update(found)
            ids[unknown] = np.fromiter(map(found.__getitem__, missing), dtype=np.int64, count=len(missing))
        return ids.astype(np.int32)


@dataclass
class _BatchPostings:
    """A batch's postings as flat arrays, sorted by (doc, term): each document's row arrays, and
    the posting blocks and df changes they make."""

    term: np.ndarray  # int32
    doc: np.ndarray  # int64
    weight: np.ndarray  # float32
    per_doc: list[int]
    shard: np.ndarray | None = None  # int32, each posting's document's shard value (distributed)

    @classmethod
    def joined(cls, parts: list["_BatchPostings"]) -> "_BatchPostings":
        shard = None if parts[0].shard is None else np.concatenate([p.shard for p in parts])
        return cls(np.concatenate([p.term for p in parts]), np.concatenate([p.doc for p in parts]),
                   np.concatenate([p.weight for p in parts]), [n for p in parts for n in p.per_doc], shard)

    def by_doc(self) -> tuple[list[bytes], list[bytes]]:
        """Each document's term ids and weights, as binary int4[] and float4[] values for its row."""
        counts = np.asarray(self.per_doc)
        return copy_binary.runs_bytes(self.term, counts, "int4"), copy_binary.runs_bytes(self.weight, counts, "float4")

    def blocks(self) -> Iterator[bytes]:
        """The batch's blocks: a term's postings in doc order, BLOCK_POSTINGS to a block; on a
        distributed collection, per shard too (a block holds documents of one shard). Ordered by
        stable sorts of 16 bits of a key at a time, which numpy does by radix (a stable sort of
        10M int32 term ids took 1.7 s, its two 16-bit passes a tenth of that)."""
        ordered = bool(np.all(self.doc[1:] >= self.doc[:-1]))  # as chunks come: in document order
        order = np.arange(len(self.doc)) if ordered else np.argsort(self.doc, kind="stable")
        for key in (self.term, self.shard):
            if key is not None:
                for shift in (0, 16):
                    order = order[np.argsort((key[order] >> shift).astype(np.uint16), kind="stable")]
        term, doc, weight = self.term[order], self.doc[order], self.weight[order]
        shard = None if self.shard is None else self.shard[order]
        change = term[1:] != term[:-1]
        if shard is not None:
            change |= shard[1:] != shard[:-1]
        group = np.r_[0, np.flatnonzero(change) + 1]  # where each (shard,) term's postings begin
        blocks = -(-np.diff(np.r_[group, len(term)]) // BLOCK_POSTINGS)
        within = np.arange(blocks.sum()) - np.repeat(np.cumsum(blocks) - blocks, blocks)
        starts = np.repeat(group, blocks) + within * BLOCK_POSTINGS
        return copy_binary.encode_blocks(term, doc, weight, starts, shard)

    def df(self) -> tuple[np.ndarray, np.ndarray]:
        terms, counts = np.unique(self.term, return_counts=True)
        return terms.astype(np.int32), counts.astype(np.int32)


@dataclass
class _Prepared:
    """A batch ready to write: the documents that differ from what the collection holds (as
    read before, their vectors computed when not supplied), each sparse field's terms and
    weights (by slot), and how many were found unchanged."""

    changed: list[_Doc]
    weights: dict[int, _Weights]
    unchanged: int


def _changed(conn: psycopg.Connection, info: CollectionInfo, batch: list[_Doc]) -> tuple[list[_Doc], int]:
    """The batch's documents whose content differs from the stored one (new ones included), and
    how many are unchanged: a re-sent document costs no analysis or encoding."""
    known = dict(
        conn.execute(
            sql.SQL("SELECT id, content_hash FROM {} WHERE id = ANY(%s)").format(info.table("docs")), ([d.id for d in batch],)
        ).fetchall()
    )
    changed = [d for d in batch if known.get(d.id) != d.hash]
    return changed, len(batch) - len(changed)


def _prepare(info: CollectionInfo, changed: list[_Doc], unchanged: int, analyse: Analyser = analyse_texts) -> _Prepared:
    """Analysis and encoding, with no database: what the pipeline runs for batch n + 1 while
    batch n is written (torch releases the GIL while it encodes; the analysis goes to a worker
    process once a load is long enough to pay for starting one)."""
    fields = sorted(info.sparse_fields, key=lambda f: f.slot)
    weights = {f.slot: _field_weights(info, f, changed, analyse) for f in fields} if changed else {}
    missing = [i for i, d in enumerate(changed) if d.vector is None]
    if missing:
        from sparsesql.encoders.dense import load_dense_encoder

        encoded = load_dense_encoder(info.settings.dense).encode([document_text(info, changed[i].values) for i in missing])
        label = f"the vector dense model {info.settings.dense!r} computed from its text"
        for i, vec in zip(missing, encoded):  # checked as a supplied one, before the batch writes
            changed[i].vector = _vector(info, vec, changed[i].where, label)
    return _Prepared(changed, weights, unchanged)


class _Unformed:
    """Posting rows a batch has written documents for but not yet formed into blocks: a batch of
    many chunks (a bulk load's) forms each term's blocks and updates its df once, at the end,
    instead of once a chunk (at 1M documents those per-chunk updates were most of a load's time)."""

    def __init__(self) -> None:
        self.parts: dict[int, list[_BatchPostings]] = {}
        self.doc_ids: set[int] = set()

    def add(self, postings: dict[int, _BatchPostings], doc_ids: list[int]) -> None:
        """A chunk's postings, by field slot, and its documents' ids."""
        for slot, found in postings.items():
            self.parts.setdefault(slot, []).append(found)
        self.doc_ids.update(doc_ids)

    def form(self, conn: psycopg.Connection, info: CollectionInfo) -> None:
        """Write the blocks and df of everything added since the last `form`, in the caller's transaction."""
        sharded = sql.SQL("shard, " if info.buckets else "")
        for f in sorted(info.sparse_fields, key=lambda f: f.slot):
            parts = self.parts.pop(f.slot, [])
            postings = _BatchPostings.joined(parts) if parts else None
            if postings is None or not len(postings.term):
                continue
            with conn.cursor().copy(sql.SQL("COPY {} ({}term_id, block, doc_ids, tfs) FROM STDIN (FORMAT BINARY)").format(
                    info.field_table(f, "postings"), sharded)) as copy:
                for piece in postings.blocks():
                    copy.write(piece)
            terms, counts = postings.df()
            cursor = conn.cursor()
            cursor.adapters.register_dumper(copy_binary.IntArray, copy_binary.IntArrayDumper)
            cursor.execute(
                sql.SQL(
                    "UPDATE {} AS v SET df = v.df + x.n FROM unnest(%s::int[], %s::int[]) AS x(term_id, n) WHERE v.term_id = x.term_id"
                ).format(info.field_table(f, "vocab")),
                (copy_binary.IntArray(terms), copy_binary.IntArray(counts)),
            )
        self.doc_ids.clear()


def _write(conn: psycopg.Connection, info: CollectionInfo, prepared: _Prepared, upkeep: Upkeep, unformed: _Unformed,
           terms: _TermCache) -> IngestReport:
    """Write a prepared chunk inside the batch's transaction (the caller holds it and the
    collection's lock): documents, vectors, change log, graph edges and N / sum of lengths now,
    its postings into `unformed`. The stored versions are read again first: a document another
    writer (or an earlier chunk of the same load, written while this one was prepared) made
    identical is counted unchanged."""
    report = IngestReport(unchanged=prepared.unchanged)
    if not prepared.changed:
        return report
    fields = sorted(info.sparse_fields, key=lambda f: f.slot)
    docs_t, dense_t = info.table("docs"), info.table("dense")
    stored = conn.execute(
        sql.SQL("SELECT doc_id, id, content_hash FROM {} WHERE id = ANY(%s)").format(docs_t), ([d.id for d in prepared.changed],)
    ).fetchall()
    wanted = {d.id: d.hash for d in prepared.changed}
    same = {ident for _, ident, digest in stored if digest == wanted[ident]}
    keep = [i for i, d in enumerate(prepared.changed) if d.id not in same]
    changed = [prepared.changed[i] for i in keep]
    weights = {slot: w.take(keep) for slot, w in prepared.weights.items()}
    lengths = weights[0].lengths.tolist()
    report.unchanged += len(prepared.changed) - len(changed)
    if not changed:
        return report
    old = [doc_id for doc_id, ident, _ in stored if ident not in same]
    if unformed.doc_ids.intersection(old):  # removing a document takes its postings out of their blocks
        unformed.form(conn, info)
    remove(conn, info, old, upkeep=upkeep)
    report.updated, report.added = len(old), len(changed) - len(old)
    doc_ids = sorted(
        r[0]
        for r in conn.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'doc_id')) FROM generate_series(1, %s)",
            (f'sparsesql."{info.name}__docs"', len(changed)),
        ).fetchall()
    )
    shards = info.shard_of(doc_ids) if info.buckets else None
    postings = {}
    for f in fields:
        found = weights[f.slot]
        postings[f.slot] = found.postings(terms.ids(conn, info.field_table(f, "vocab"), found), doc_ids, shards)
    unformed.add(postings, doc_ids)
    field_names = [f.name for f in info.fields]
    arrays = [c for f in fields for c in (f.column("term_ids"), f.column("weights"))]
    placed = ["shard"] if shards else []
    columns = sql.SQL(", ").join(
        [*(sql.Identifier(c) for c in ["doc_id", *placed, "id", *field_names, "metadata", "doc_len", "content_hash"]), *arrays]
    )
    cursor = conn.cursor()
    copy_binary.dump_numpy_arrays(cursor.adapters)
    per_doc = [list(zip(*postings[f.slot].by_doc())) for f in fields]
    with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(docs_t, columns)) as copy:
        copy.set_types(["int8", *["int4"] * len(placed), "text", *[COPY_TYPES[f.type] for f in info.fields], "jsonb", "int4", "text",
                        *["int4[]", "float4[]"] * len(fields)])
        placement = [[s] for s in shards] if shards else [[]] * len(changed)  # the shard column's value, when there is one
        for i, (doc_id, doc, length) in enumerate(zip(doc_ids, changed, lengths)):
            vectors = [a for field_arrays in per_doc for a in field_arrays[i]]
            copy.write_row([doc_id, *placement[i], doc.id, *[doc.values[n] for n in field_names], Jsonb(doc.metadata), length, doc.hash, *vectors])
    with conn.cursor().copy(sql.SQL("COPY {} (doc_id, {}embedding) FROM STDIN (FORMAT BINARY)").format(dense_t, sql.SQL("shard, " if shards else ""))) as copy:
        copy.set_types(["int8", *["int4"] * len(placed), "vector"])
        for doc_id, shard, doc in zip(doc_ids, placement, changed):
            copy.write_row([doc_id, *shard, Vector(doc.vector)])
    log_changes(conn, info, doc_ids, added=True)
    upkeep.added(conn, info, doc_ids)
    conn.execute(
        "UPDATE sparsesql.collections SET n_docs = n_docs + %s, sum_len = sum_len + %s, version = version + 1 "
        "WHERE name = %s",
        (len(changed), sum(lengths), info.name),
    )
    return report


def _batches(docs: Iterable[object], size: int) -> Iterator[list[object]]:
    it = iter(docs)
    while batch := list(itertools.islice(it, size)):
        yield batch


DEFAULT_BATCH = 500  # documents a transaction, unless bulk
# The pipeline's unit: documents validated, analysed and encoded, then copied, at a time. A
# batch (a transaction) larger than this is written in chunks of about this size, so a bulk
# load's 100,000-document batches still overlap preparation and writing.
CHUNK = 5_000
# A bulk load's batch: up to this many documents, or as many as arrive in BULK_SECONDS (a batch
# holds the collection's lock, and an interruption loses the open batch's work).
BULK_BATCH = 100_000
BULK_SECONDS = 60.0


def add(
    conn: psycopg.Connection,
    info: CollectionInfo,
    docs: Iterable[dict],
    *,
    upkeep: Upkeep,
    batch_size: int | None = None,
    progress: bool = False,
    on_error: str = "abort",
    total: int | None = None,
    numbered: bool = False,
    bulk: bool = False,
) -> IngestReport:
    """Add or update documents in batches; each batch commits on its own, all or nothing.

    A pipeline: while chunk n is written, chunk n + 1 is analysed and encoded in a thread, which
    torch's encoding (it releases the GIL), the analysis worker process and the server's share
    of the write let run side by side. (Validation stays with the writer: Python in a second
    thread makes the writer wait for the GIL after each of its many short waits on the server,
    which cost more than the overlap gained.) A batch of many
    chunks forms its posting blocks and df once, at its end. `bulk` is for large loads: batches
    of BULK_BATCH documents (or BULK_SECONDS), and a first load's own indexes built once at the
    end. A document that fails its checks stops the load before its chunk writes
    (`on_error="abort"`; the chunks before it land), or is reported by position and reason in
    `IngestReport.rejected` and left out (`on_error="skip"`). With `numbered`, `docs` are (line
    number, document) pairs and messages name lines, not positions."""
    batch_size = batch_size if batch_size is not None else (BULK_BATCH if bulk else DEFAULT_BATCH)
    if batch_size < 1:
        raise IngestError(f"batch_size must be at least 1, got {batch_size}")
    if on_error not in ("abort", "skip"):
        raise IngestError(f"on_error must be 'abort' or 'skip', got {on_error!r}")
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    total = total if total is not None else (len(docs) if hasattr(docs, "__len__") else None)
    chunk = -(-batch_size // -(-batch_size // CHUNK))  # batch_size in equal chunks of at most CHUNK
    report = IngestReport()
    with tqdm(total=total, disable=not progress, unit="doc", desc=f"ingest {info.name}", dynamic_ncols=True) as bar, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="sparsesql-prepare") as pool, ExitStack() as stack:
        if bulk:
            _defer_indexes(conn, info)
        chunks = _prepared(conn, info, docs, pool, stack, report, bar, chunk=chunk, on_error=on_error, numbered=numbered)
        _load(conn, info, chunks, upkeep, report, bar, batch_size=batch_size, seconds=BULK_SECONDS if bulk else None)
        if bulk:
            _restore_indexes(conn, info)
    return report


def _prepared(conn: psycopg.Connection, info: CollectionInfo, docs: Iterable[object], pool, stack: ExitStack, report: IngestReport,
              bar, *, chunk: int, on_error: str, numbered: bool) -> Iterator[tuple[_Prepared, int]]:
    """The load's chunks, prepared one ahead: each (prepared chunk, how many input documents it
    stands for). Validation and the hash check run here; analysis and encoding in `pool`. When
    the source fails or a document is refused (abort), the chunk prepared before it comes out
    first, then the error: what came before it lands."""
    pending = None  # the future of the prepared chunk, and how many input documents it stands for
    analyser: Analyser = analyse_texts
    worker_tried = False
    batches = _batches(docs, chunk)
    position = 0
    while True:
        try:
            raw = next(batches, None)
        except BaseException:
            if pending is not None:
                yield _ready(pending, bar)
            raise
        if raw is None:
            break
        checked: dict[str, _Doc] = {}
        for doc in raw:
            position += 1
            number, doc = doc if numbered else (position, doc)
            try:
                where = f"line {number}" + (f" (id {doc.get('id')!r})" if isinstance(doc, dict) and "id" in doc else "") if numbered else None
                valid = validate(info, doc, number, where=where)
            except IngestError as exc:
                if on_error == "abort":
                    if pending is not None:
                        yield _ready(pending, bar)
                    raise
                report.rejected.append((number, exc.message))
                continue
            checked[valid.id] = valid
        if not worker_tried and position >= ANALYSIS_PROCESS_AFTER and any(f.bm25 for f in info.sparse_fields):
            analyser, worker_tried = _worker_analyser(stack), True
        prepared = pool.submit(_prepare, info, *_changed(conn, info, list(checked.values())), analyser)
        if pending is not None:
            yield _ready(pending, bar)
        pending = (prepared, len(raw))
    if pending is not None:
        yield _ready(pending, bar)


def _ready(pending: tuple, bar) -> tuple[_Prepared, int]:
    """Wait for a chunk's analysis and encoding; the bar names the stage."""
    future, count = pending
    bar.set_postfix_str("analyse/encode", refresh=False)
    prepared = future.result()
    bar.set_postfix_str("write", refresh=False)
    return prepared, count


def _load(conn: psycopg.Connection, info: CollectionInfo, chunks: Iterator[tuple[_Prepared, int]], upkeep: Upkeep,
          report: IngestReport, bar, *, batch_size: int, seconds: float | None) -> None:
    """Write the chunks in batches: a transaction holding the collection's lock takes chunks
    until it has `batch_size` input documents (or has been open `seconds`), forms their postings
    and commits. A batch's first chunk is prepared before its transaction opens, so a batch of
    one chunk holds the lock only while it writes (a text load's encoding takes far longer). A
    failure of the source or a refused document (the chunks before it came first) commits the
    open batch, then propagates."""
    terms = _TermCache()
    failure: BaseException | None = None

    def fetch() -> tuple[_Prepared, int] | None:
        nonlocal failure
        try:
            return next(chunks, None)
        except BaseException as exc:
            failure = exc
            return None

    item = fetch()
    while item is not None:
        written, started, full = 0, time.monotonic(), False
        with conn.transaction():
            info = _lock(conn, info)
            unformed = _Unformed()
            while item is not None:
                prepared, count = item
                report += _write(conn, info, prepared, upkeep, unformed, terms)
                written += count
                bar.update(count)
                full = written >= batch_size or (seconds is not None and time.monotonic() - started >= seconds)
                item = None if full else fetch()
            unformed.form(conn, info)
        if full:
            item = fetch()
    if failure is not None:
        raise failure


def _defer_indexes(conn: psycopg.Connection, info: CollectionInfo) -> None:
    """Before a bulk load into an empty collection, drop the indexes users made on its documents
    and vectors (an HNSW index costs each inserted vector a graph search; built once over the
    loaded rows, as pgvector advises, it costs far less), recorded in the catalog so that a load
    interrupted before `_restore_indexes` has them built by the next bulk load's end. Unique
    indexes stay: they are constraints."""
    from sparsesql.db.schema import user_indexes

    with conn.transaction():
        info = _lock(conn, info)
        deferred = list(info.extra.get(DEFERRED, []))
        empty = conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT FROM {})").format(info.table("docs"))).fetchone()[0]
        dropped = [(n, d) for n, d in user_indexes(conn, info, ("docs", "dense")) if not d.startswith("CREATE UNIQUE")] if empty else []
        for name, definition in dropped:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier("sparsesql", name)))
            deferred.append(definition)
        if dropped:
            set_extra(conn, info.name, DEFERRED, deferred)


def _restore_indexes(conn: psycopg.Connection, info: CollectionInfo) -> None:
    """Build the indexes a bulk load deferred (this one's, or an interrupted one's), in one transaction."""
    with conn.transaction():
        info = _lock(conn, info)
        for definition in info.extra.get(DEFERRED, []):
            conn.execute(definition.replace(" INDEX ", " INDEX IF NOT EXISTS ", 1))
        conn.execute("UPDATE sparsesql.collections SET extra = extra - %s WHERE name = %s", (DEFERRED, info.name))


DEFERRED = "deferred_indexes"  # the catalog's record of indexes a bulk load dropped and has yet to build


# Documents read before the BM25 analysis moves to a worker process: starting one takes about
# half a second, the in-process analysis of some 4,000 documents, so shorter loads stay in process.
ANALYSIS_PROCESS_AFTER = 10_000


class _AnalysisProcess:
    """BM25 analysis in a worker process, so the Python analyzer runs beside the writes instead
    of taking the GIL from them. A plain child interpreter fed length-prefixed pickles on its
    stdin: multiprocessing's spawn would re-run the caller's unguarded main script in the child,
    and fork would copy locks other threads hold. Should the child fail, the analysis comes
    back into this process."""

    def __init__(self) -> None:
        import os
        import subprocess
        import sys
        from pathlib import Path

        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen([sys.executable, "-c", "from sparsesql.db.ingest import serve_analysis; serve_analysis()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def __call__(self, texts: list[str]) -> list[tuple[dict[str, float], int]]:
        import pickle

        if self.proc is not None:
            try:
                data = pickle.dumps(texts, protocol=pickle.HIGHEST_PROTOCOL)
                self.proc.stdin.write(len(data).to_bytes(8, "little") + data)
                self.proc.stdin.flush()
                size = int.from_bytes(_read_exactly(self.proc.stdout, 8), "little")
                return pickle.loads(_read_exactly(self.proc.stdout, size))
            except (OSError, EOFError, pickle.PickleError):
                self.close()
        return analyse_texts(texts)

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.stdin.close()
                proc.wait(timeout=10)
            except Exception:
                proc.kill()


def _read_exactly(stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the analysis process ended")
    return data


def serve_analysis() -> None:
    """The worker's loop (run by _AnalysisProcess): texts in, their BM25 analysis out, until stdin closes."""
    import pickle
    import sys

    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = source.read(8)
        if len(head) != 8:
            return
        texts = pickle.loads(_read_exactly(source, int.from_bytes(head, "little")))
        data = pickle.dumps(analyse_texts(texts), protocol=pickle.HIGHEST_PROTOCOL)
        sink.write(len(data).to_bytes(8, "little") + data)
        sink.flush()


def _worker_analyser(stack: ExitStack) -> Analyser:
    """A worker process for the rest of the load, closed with it (in-process where none starts)."""
    try:
        worker = _AnalysisProcess()
    except OSError:
        return analyse_texts
    stack.callback(worker.close)
    return worker
