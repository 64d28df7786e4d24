"""From texts to posting blocks: BM25 analysis (in a worker process for long loads), term ids
from the vocabulary (cached), and a batch's postings in the binary COPY form the tables take."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import psycopg
from psycopg import sql

from sparsesql.batch_analysis import STOPWORD, count_terms
from sparsesql.db import copy_binary
from sparsesql.db.catalog import CollectionInfo, SparseField
from sparsesql.db.ingest_validate import Doc, analysed_text, document_text
from sparsesql.db.schema import BLOCK_POSTINGS


@dataclass
class Weights:
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
    stream: np.ndarray | None = None  # int32, BM25 only: each document's tokens in order (batch_analysis.Counted.stream)
    stream_lengths: np.ndarray | None = None  # int64, each document's share of `stream`
    field_tf: np.ndarray | None = None  # int32 (postings, fields), BM25 only: each posting's count in each text field
    field_lengths: np.ndarray | None = None  # int64 (documents, fields), BM25 only: each text field's length

    @classmethod
    def of(cls, vectors: list[dict[str, float]], lengths: list[int]) -> "Weights":
        flat = [t for v in vectors for t in v]
        vocab = dict(zip(dict.fromkeys(flat), range(len(flat))))  # first occurrence order, numbered (C loops, not Python ones)
        index = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int32, count=len(flat))
        weight = [w for v in vectors for w in v.values()]
        return cls(list(vocab), index, np.array(weight, dtype=np.float32),
                   np.array([len(v) for v in vectors], dtype=np.int64), np.array(lengths, dtype=np.int64))

    def take(self, keep: list[int]) -> "Weights":
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
        stream = lengths = None
        if self.stream is not None:
            kept = self.stream[np.repeat(chosen, self.stream_lengths)]
            moved = np.concatenate([position, np.zeros(1, dtype=position.dtype)])  # + 1: a stream of stopwords in a batch without terms
            stream, lengths = np.where(kept >= 0, moved[np.maximum(kept, 0)], kept).astype(np.int32), self.stream_lengths[keep]
        field_tf = None if self.field_tf is None else self.field_tf[np.repeat(chosen, self.per_doc)]
        field_lengths = None if self.field_lengths is None else self.field_lengths[keep]
        return Weights([self.terms[i] for i in used.tolist()], position[index], weight, self.per_doc[keep], self.lengths[keep],
                        None if self.keys is None else self.keys[used], self.space, stream, lengths, field_tf, field_lengths)

    def row_order(self, term_ids: np.ndarray) -> np.ndarray:
        """The postings' order in the documents' rows: by (document, term id), the order of each
        row's `term_ids` (with `term_ids`, each of `terms`' id)."""
        position = np.repeat(np.arange(len(self.per_doc), dtype=np.int64), self.per_doc)
        return np.argsort((position << 32) | term_ids[self.index].astype(np.int64))  # distinct keys: (document, term)

    def field_values(self, order: np.ndarray, fields: int) -> tuple[list[bytes], list[bytes]]:
        """Each document's `field_tfs` (its terms in `row_order`, each with its count in each of
        the `fields` text fields) and `field_lens`, as binary float4[] and int4[] values for its row."""
        tf = np.zeros((len(order), fields), dtype=np.float32)
        tf[:, :self.field_tf.shape[1]] = self.field_tf[order]
        lengths = np.zeros((len(self.per_doc), fields), dtype=np.int32)
        lengths[:, :self.field_lengths.shape[1]] = self.field_lengths
        return (copy_binary.runs_bytes(tf.reshape(-1), self.per_doc * fields, "float4"),
                copy_binary.runs_bytes(lengths.reshape(-1), np.full(len(self.per_doc), fields), "int4"))

    def positions(self, term_ids: np.ndarray) -> list[bytes]:
        """Each document's positions (its stream with `term_ids`, each of `terms`' id; 0 for a
        stopword, -1 between fields), as binary int4[] values for its row."""
        ids = np.concatenate([term_ids.astype(np.int32), np.array([0, -1], dtype=np.int32)])  # then a stopword's 0, a break's -1
        at = np.where(self.stream >= 0, self.stream, np.where(self.stream == STOPWORD, len(term_ids), len(term_ids) + 1))
        return copy_binary.runs_bytes(ids[at], self.stream_lengths, "int4")

    def postings(self, term_ids: np.ndarray, doc_ids: list[int], shards: list[int] | None, order: np.ndarray) -> "BatchPostings":
        """The postings with `term_ids` (each of `terms`' id) and the documents' ids (ascending),
        in `row_order`: each document's row holds its terms in id order."""
        term = term_ids[self.index]
        doc = np.repeat(np.array(doc_ids, dtype=np.int64), self.per_doc)
        shard = None if shards is None else np.repeat(np.array(shards, dtype=np.int32), self.per_doc)[order]
        return BatchPostings(term[order], doc[order], self.weight[order], self.per_doc.tolist(), shard)


def analyse_texts(texts: list[str]) -> Weights:
    """BM25's term counts and token count of each text: top level, so a worker process can run it."""
    counted = count_terms(texts)
    return Weights(counted.terms, counted.index, counted.tf.astype(np.float32), counted.per_text, counted.lengths,
                    counted.keys, counted.space, counted.stream, counted.stream_lengths, counted.field_tf, counted.field_lengths)


Analyser = Callable[[list[str]], Weights]


def field_weights(info: CollectionInfo, field: SparseField, docs: list[Doc], analyse: Analyser = analyse_texts) -> Weights:
    """Each document's terms, weights and length in one sparse field: the analyzer's counts and
    token count for BM25 (by `analyse`: in this process, or a worker's); for a learned field the
    supplied vector, else the model's encoding (batched), and its number of terms."""
    if field.bm25:
        return analyse([analysed_text(info, doc.values) for doc in docs])
    vectors = [doc.sparse.get(field.name) for doc in docs]
    missing = [i for i, v in enumerate(vectors) if v is None]
    if missing:
        from sparsesql.encoders.sparse import load_sparse_encoder

        encoder = load_sparse_encoder(field.model)
        encoded = encoder.encode([document_text(info, docs[i].values) for i in missing], top_k=field.top_k)
        for i, vector in zip(missing, encoded):
            vectors[i] = vector
    return Weights.of(vectors, [len(v) for v in vectors])


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


class TermCache:
    """The term ids one load has looked up, so each term is asked for once rather than once a
    chunk (half of a chunk's terms were known ones: 1.5 s of a 60,000-document load). BM25's
    terms come numbered by the analyzer (sparsesql.batch_analysis), so their ids are kept in an
    array by that number and a chunk's known terms cost one gather; learned fields' terms are
    kept by name. Vocabulary rows are never deleted, so an id stays right for the rest of the
    load; a load ends at its first failed batch, and the ids a rolled-back batch added go with it."""

    def __init__(self) -> None:
        self.known: dict[str, dict[str, int]] = {}
        self.numbered: dict[tuple[str, str], np.ndarray] = {}  # (vocabulary, numbering) -> id by number, -1 unknown

    def ids(self, conn: psycopg.Connection, vocab: sql.Identifier, weights: "Weights") -> np.ndarray:
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
class BatchPostings:
    """A batch's postings as flat arrays, sorted by (doc, term): each document's row arrays, and
    the posting blocks and df changes they make."""

    term: np.ndarray  # int32
    doc: np.ndarray  # int64
    weight: np.ndarray  # float32
    per_doc: list[int]
    shard: np.ndarray | None = None  # int32, each posting's document's shard value (distributed)

    @classmethod
    def joined(cls, parts: list["BatchPostings"]) -> "BatchPostings":
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


class AnalysisProcess:
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
        self.proc = subprocess.Popen([sys.executable, "-c", "from sparsesql.db.ingest_postings import serve_analysis; serve_analysis()"],
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
    """The worker's loop (run by AnalysisProcess): texts in, their BM25 analysis out, until stdin closes."""
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
