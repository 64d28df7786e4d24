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
import json
import math
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from contextlib import ExitStack
from itertools import chain, islice
from typing import Callable, Iterable, Iterator

import numpy as np
import psycopg
from pgvector import Vector
from psycopg import sql
from psycopg.types.json import Jsonb

from sparsesql.analysis import term_counts
from sparsesql.db import copy_binary
from sparsesql.db.catalog import NUMERIC_TYPES, CollectionInfo, SparseField
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
    first in DENSE and makes HYBRID's min-max normalisation score every candidate 1.0."""
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


def analyse_texts(texts: list[str]) -> list[tuple[dict[str, float], int]]:
    """BM25's (term -> count, token count) of each text: top level, so a worker process can run it."""
    out = []
    for text in texts:
        counts, length = term_counts(text)
        out.append(({t: float(c) for t, c in counts.items()}, length))
    return out


Analyser = Callable[[list[str]], list[tuple[dict[str, float], int]]]


def _field_weights(info: CollectionInfo, field: SparseField, docs: list[_Doc], analyse: Analyser = analyse_texts) -> list[tuple[dict[str, float], int]]:
    """Each document's (term -> weight, length) in one sparse field: the analyzer's counts and
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
    return [(v, len(v)) for v in vectors]


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


@dataclass
class _BatchPostings:
    """A batch's postings as flat arrays, sorted by (doc, term): each document's row arrays, and
    the posting blocks and df changes they make."""

    term: np.ndarray  # int32
    doc: np.ndarray  # int64
    weight: np.ndarray  # float32
    per_doc: list[int]
    shard: np.ndarray | None = None  # int32, each posting's document's shard value (distributed)

    def by_doc(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        bounds = np.cumsum(self.per_doc)[:-1]
        return np.split(self.term, bounds), np.split(self.weight, bounds)

    def blocks(self) -> bytes:
        """The batch's blocks: a term's postings in doc order, BLOCK_POSTINGS to a block; on a
        distributed collection, per shard too (a block holds documents of one shard)."""
        keys = (self.doc, self.term) if self.shard is None else (self.doc, self.term, self.shard)
        order = np.lexsort(keys)
        term, doc, weight = self.term[order], self.doc[order], self.weight[order]
        shard = None if self.shard is None else self.shard[order]
        index = np.arange(len(term))
        new = np.r_[True, term[1:] != term[:-1]]
        if shard is not None:
            new |= np.r_[True, shard[1:] != shard[:-1]]
        first = np.maximum.accumulate(np.where(new, index, 0))
        starts = np.flatnonzero((index - first) % BLOCK_POSTINGS == 0)
        return copy_binary.encode_blocks(term, doc, weight, starts, shard)

    def df(self) -> tuple[list[int], list[int]]:
        terms, counts = np.unique(self.term, return_counts=True)
        return terms.tolist(), counts.tolist()


def _postings(weights: list[tuple[dict[str, float], int]], term_ids: dict[str, int], doc_ids: list[int], shards: list[int] | None) -> _BatchPostings:
    per_doc = [len(w) for w, _ in weights]
    terms = chain.from_iterable(w for w, _ in weights)
    term = np.array(list(map(term_ids.__getitem__, terms)), dtype=np.int32)
    weight = np.array(list(chain.from_iterable(w.values() for w, _ in weights)), dtype=np.float32)
    doc = np.repeat(np.array(doc_ids, dtype=np.int64), per_doc)
    order = np.lexsort((term, doc))
    shard = None if shards is None else np.repeat(np.array(shards, dtype=np.int32), per_doc)[order]
    return _BatchPostings(term[order], doc[order], weight[order], per_doc, shard)


@dataclass
class _Prepared:
    """A batch ready to write: the documents that differ from what the collection holds (as
    read before, their vectors computed when not supplied), each sparse field's (weights,
    length) per document, and how many were found unchanged."""

    changed: list[_Doc]
    weights: dict[int, list[tuple[dict[str, float], int]]]
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


def _write(conn: psycopg.Connection, info: CollectionInfo, prepared: _Prepared, upkeep: Upkeep) -> IngestReport:
    """Write a prepared batch in one transaction, all or nothing. Under the collection's lock
    the stored versions are read again: a document another writer (or an earlier batch of the
    same load, written while this one was prepared) made identical is counted unchanged."""
    report = IngestReport(unchanged=prepared.unchanged)
    if not prepared.changed:
        return report
    fields = sorted(info.sparse_fields, key=lambda f: f.slot)
    docs_t, dense_t = info.table("docs"), info.table("dense")
    with conn.transaction():
        info = _lock(conn, info)
        stored = conn.execute(
            sql.SQL("SELECT doc_id, id, content_hash FROM {} WHERE id = ANY(%s)").format(docs_t), ([d.id for d in prepared.changed],)
        ).fetchall()
        wanted = {d.id: d.hash for d in prepared.changed}
        same = {ident for _, ident, digest in stored if digest == wanted[ident]}
        keep = [i for i, d in enumerate(prepared.changed) if d.id not in same]
        changed = [prepared.changed[i] for i in keep]
        weights = {slot: [w[i] for i in keep] for slot, w in prepared.weights.items()}
        lengths = [length for _, length in weights[0]]
        report.unchanged += len(prepared.changed) - len(changed)
        if not changed:
            return report
        old = [doc_id for doc_id, ident, _ in stored if ident not in same]
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
            terms = sorted({t for w, _ in weights[f.slot] for t in w})
            postings[f.slot] = _postings(weights[f.slot], _term_ids(conn, info.field_table(f, "vocab"), terms), doc_ids, shards)
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
        for f in fields:
            if len(postings[f.slot].term):
                with conn.cursor().copy(
                    sql.SQL("COPY {} ({}term_id, block, doc_ids, tfs) FROM STDIN (FORMAT BINARY)").format(
                        info.field_table(f, "postings"), sql.SQL("shard, " if shards else ""))
                ) as copy:
                    copy.write(postings[f.slot].blocks())
        with conn.cursor().copy(sql.SQL("COPY {} (doc_id, {}embedding) FROM STDIN (FORMAT BINARY)").format(dense_t, sql.SQL("shard, " if shards else ""))) as copy:
            copy.set_types(["int8", *["int4"] * len(placed), "vector"])
            for doc_id, shard, doc in zip(doc_ids, placement, changed):
                copy.write_row([doc_id, *shard, Vector(doc.vector)])
        log_changes(conn, info, doc_ids, added=True)
        upkeep.added(conn, info, doc_ids)
        for f in fields:
            term_list, df = postings[f.slot].df()
            conn.execute(
                sql.SQL(
                    "UPDATE {} AS v SET df = v.df + x.n FROM unnest(%s::int[], %s::int[]) AS x(term_id, n) "
                    "WHERE v.term_id = x.term_id"
                ).format(info.field_table(f, "vocab")),
                (term_list, df),
            )
        conn.execute(
            "UPDATE sparsesql.collections SET n_docs = n_docs + %s, sum_len = sum_len + %s, version = version + 1 "
            "WHERE name = %s",
            (len(changed), sum(lengths), info.name),
        )
    return report


def _batches(docs: Iterable[object], size: int) -> Iterator[list[object]]:
    it = iter(docs)
    while batch := list(islice(it, size)):
        yield batch


def add(
    conn: psycopg.Connection,
    info: CollectionInfo,
    docs: Iterable[dict],
    *,
    upkeep: Upkeep,
    batch_size: int = 500,
    progress: bool = False,
    on_error: str = "abort",
    total: int | None = None,
    numbered: bool = False,
) -> IngestReport:
    """Add or update documents in batches; each batch commits on its own, all or nothing.

    A pipeline: while batch n is written (one transaction), batch n + 1 is analysed and encoded
    in a thread, which torch's encoding (it releases the GIL) and the server's share of the
    write let run side by side. A document that fails its checks stops the load before its
    batch writes (`on_error="abort"`, earlier batches stay), or is reported by position and
    reason in `IngestReport.rejected` and left out (`on_error="skip"`). With `numbered`, `docs`
    are (line number, document) pairs and messages name lines, not positions."""
    if batch_size < 1:
        raise IngestError(f"batch_size must be at least 1, got {batch_size}")
    if on_error not in ("abort", "skip"):
        raise IngestError(f"on_error must be 'abort' or 'skip', got {on_error!r}")
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    total = total if total is not None else (len(docs) if hasattr(docs, "__len__") else None)
    report = IngestReport()
    position = 0
    with tqdm(total=total, disable=not progress, unit="doc", desc=f"ingest {info.name}", dynamic_ncols=True) as bar, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="sparsesql-prepare") as pool, ExitStack() as stack:
        pending = None  # (future of the prepared batch, how many input documents it stands for)
        analyser: Analyser = analyse_texts
        worker_tried = False
        batches = _batches(docs, batch_size)
        while True:
            try:
                raw = next(batches, None)
            except BaseException:  # the source failed (or was interrupted): what it gave before lands
                if pending is not None:
                    _finish(conn, info, pending, upkeep, report, bar)
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
                        if pending is not None:  # the batches before this one still land
                            _finish(conn, info, pending, upkeep, report, bar)
                        raise
                    report.rejected.append((number, exc.message))
                    continue
                checked[valid.id] = valid
            if not worker_tried and position >= ANALYSIS_PROCESS_AFTER and any(f.bm25 for f in info.sparse_fields):
                analyser, worker_tried = _worker_analyser(stack), True
            prepared = pool.submit(_prepare, info, *_changed(conn, info, list(checked.values())), analyser)
            if pending is not None:
                _finish(conn, info, pending, upkeep, report, bar)
            pending = (prepared, len(raw))
        if pending is not None:
            _finish(conn, info, pending, upkeep, report, bar)
    return report


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


def _finish(conn: psycopg.Connection, info: CollectionInfo, pending: tuple, upkeep: Upkeep, report: IngestReport, bar) -> None:
    """Wait for a batch's analysis and encoding, then write it; the bar names the stage."""
    future, count = pending
    bar.set_postfix_str("analyse/encode", refresh=False)
    prepared = future.result()
    bar.set_postfix_str("write", refresh=False)
    report += _write(conn, info, prepared, upkeep)
    bar.update(count)
