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

import itertools
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Iterable, Iterator

import psycopg
from pgvector import Vector
from psycopg import sql
from psycopg.types.json import Jsonb

from sparsesql.db import copy_binary
from sparsesql.db.catalog import CollectionInfo, set_extra
from sparsesql.db.ingest_postings import Analyser, AnalysisProcess, BatchPostings, TermCache, Weights, analyse_texts, field_weights
from sparsesql.db.ingest_remove import lock_collection, log_changes, move_statistics, remove
from sparsesql.db.ingest_report import IngestReport, Upkeep
from sparsesql.db.ingest_validate import Doc, checked_vector, document_text, validate
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


@dataclass
class _Prepared:
    """A batch ready to write: the documents that differ from what the collection holds (as
    read before, their vectors computed when not supplied), each sparse field's terms and
    weights (by slot), and how many were found unchanged."""

    changed: list[Doc]
    weights: dict[int, Weights]
    unchanged: int


def _changed(conn: psycopg.Connection, info: CollectionInfo, batch: list[Doc]) -> tuple[list[Doc], int]:
    """The batch's documents whose content differs from the stored one (new ones included), and
    how many are unchanged: a re-sent document costs no analysis or encoding."""
    known = dict(
        conn.execute(
            sql.SQL("SELECT id, content_hash FROM {} WHERE id = ANY(%s)").format(info.table("docs")), ([d.id for d in batch],)
        ).fetchall()
    )
    changed = [d for d in batch if known.get(d.id) != d.hash]
    return changed, len(batch) - len(changed)


def _prepare(info: CollectionInfo, changed: list[Doc], unchanged: int, analyse: Analyser = analyse_texts) -> _Prepared:
    """Analysis and encoding, with no database: what the pipeline runs for batch n + 1 while
    batch n is written (torch releases the GIL while it encodes; the analysis goes to a worker
    process once a load is long enough to pay for starting one)."""
    fields = sorted(info.sparse_fields, key=lambda f: f.slot)
    weights = {f.slot: field_weights(info, f, changed, analyse) for f in fields} if changed else {}
    missing = [i for i, d in enumerate(changed) if d.vector is None]
    if missing:
        from sparsesql.encoders.dense import load_dense_encoder

        encoded = load_dense_encoder(info.settings.dense).encode([document_text(info, changed[i].values) for i in missing])
        label = f"the vector dense model {info.settings.dense!r} computed from its text"
        for i, vec in zip(missing, encoded):  # checked as a supplied one, before the batch writes
            changed[i].vector = checked_vector(info, vec, changed[i].where, label)
    return _Prepared(changed, weights, unchanged)


class _Unformed:
    """Posting rows a batch has written documents for but not yet formed into blocks: a batch of
    many chunks (a bulk load's) forms each term's blocks and updates its df once, at the end,
    instead of once a chunk (at 1M documents those per-chunk updates were most of a load's time)."""

    def __init__(self) -> None:
        self.parts: dict[int, list[BatchPostings]] = {}
        self.doc_ids: set[int] = set()

    def add(self, postings: dict[int, BatchPostings], doc_ids: list[int]) -> None:
        """A chunk's postings, by field slot, and its documents' ids."""
        for slot, found in postings.items():
            self.parts.setdefault(slot, []).append(found)
        self.doc_ids.update(doc_ids)

    def form(self, conn: psycopg.Connection, info: CollectionInfo) -> None:
        """Write the blocks and df of everything added since the last `form`, in the caller's transaction."""
        sharded = sql.SQL("shard, " if info.buckets else "")
        for f in sorted(info.sparse_fields, key=lambda f: f.slot):
            parts = self.parts.pop(f.slot, [])
            postings = BatchPostings.joined(parts) if parts else None
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
           terms: TermCache) -> IngestReport:
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
    postings, extra, extra_names, extra_types = {}, [], [], []  # extra: the BM25 field's positions and per-text-field counts
    for f in fields:
        found = weights[f.slot]
        ids = terms.ids(conn, info.field_table(f, "vocab"), found)
        order = found.row_order(ids)
        postings[f.slot] = found.postings(ids, doc_ids, shards, order)
        if f.bm25 and info.settings.positions:
            extra, extra_names, extra_types = [found.positions(ids)], ["positions"], ["int4[]"]
        if f.bm25 and info.settings.field_stats:
            extra += found.field_values(order, len(info.settings.text_fields))
            extra_names += ["field_tfs", "field_lens"]
            extra_types += ["float4[]", "int4[]"]
            field_sums = found.field_lengths.sum(axis=0).tolist()
    unformed.add(postings, doc_ids)
    field_names = [f.name for f in info.fields]
    arrays = [c for f in fields for c in (f.column("term_ids"), f.column("weights"))] + [sql.Identifier(n) for n in extra_names]
    placed = ["shard"] if shards else []
    columns = sql.SQL(", ").join(
        [*(sql.Identifier(c) for c in ["doc_id", *placed, "id", *field_names, "metadata", "doc_len", "content_hash"]), *arrays]
    )
    cursor = conn.cursor()
    copy_binary.dump_numpy_arrays(cursor.adapters)
    per_doc = [list(zip(*postings[f.slot].by_doc())) for f in fields]
    with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(docs_t, columns)) as copy:
        copy.set_types(["int8", *["int4"] * len(placed), "text", *[COPY_TYPES[f.type] for f in info.fields], "jsonb", "int4", "text",
                        *["int4[]", "float4[]"] * len(fields), *extra_types])
        placement = [[s] for s in shards] if shards else [[]] * len(changed)  # the shard column's value, when there is one
        for i, (doc_id, doc, length) in enumerate(zip(doc_ids, changed, lengths)):
            vectors = [a for field_arrays in per_doc for a in field_arrays[i]] + [values[i] for values in extra]
            copy.write_row([doc_id, *placement[i], doc.id, *[doc.values[n] for n in field_names], Jsonb(doc.metadata), length, doc.hash, *vectors])
    with conn.cursor().copy(sql.SQL("COPY {} (doc_id, {}embedding) FROM STDIN (FORMAT BINARY)").format(dense_t, sql.SQL("shard, " if shards else ""))) as copy:
        copy.set_types(["int8", *["int4"] * len(placed), "vector"])
        for doc_id, shard, doc in zip(doc_ids, placement, changed):
            copy.write_row([doc_id, *shard, Vector(doc.vector)])
    log_changes(conn, info, doc_ids, added=True)
    upkeep.added(conn, info, doc_ids)
    move_statistics(conn, info, len(changed), sum(lengths), field_sums if info.settings.field_stats else [])
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
        checked: dict[str, Doc] = {}
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
    terms = TermCache()
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
            info = lock_collection(conn, info)
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
        info = lock_collection(conn, info)
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
        info = lock_collection(conn, info)
        for definition in info.extra.get(DEFERRED, []):
            conn.execute(definition.replace(" INDEX ", " INDEX IF NOT EXISTS ", 1))
        conn.execute("UPDATE sparsesql.collections SET extra = extra - %s WHERE name = %s", (DEFERRED, info.name))


DEFERRED = "deferred_indexes"  # the catalog's record of indexes a bulk load dropped and has yet to build


# Documents read before the BM25 analysis moves to a worker process: starting one takes about
# half a second, the in-process analysis of some 4,000 documents, so shorter loads stay in process.
ANALYSIS_PROCESS_AFTER = 10_000


def _worker_analyser(stack: ExitStack) -> Analyser:
    """A worker process for the rest of the load, closed with it (in-process where none starts)."""
    try:
        worker = AnalysisProcess()
    except OSError:
        return analyse_texts
    stack.callback(worker.close)
    return worker
