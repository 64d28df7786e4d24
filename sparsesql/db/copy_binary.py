"""PostgreSQL's binary COPY format, built and parsed with numpy.

psycopg's `write_row` costs microseconds a row and more per array element in Python; a batch's
posting blocks (tens of thousands of rows holding hundreds of thousands of postings) go faster as
one numpy buffer, and reading every posting of a collection for the memory tier parses the same
way. `encode`/`decode` handle rows whose every field has a fixed width; `encode_blocks` writes
the posting table's rows, whose two arrays vary in length.
"""

from __future__ import annotations

import numpy as np
from psycopg.adapt import AdaptersMap, Dumper
from psycopg.pq import Format

_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = (-1).to_bytes(2, "big", signed=True)

# (term_id int4, doc_id int8, tf float4): one posting.
POSTING = np.dtype([("n", ">i2"), ("l1", ">i4"), ("term", ">i4"), ("l2", ">i4"), ("doc", ">i8"), ("l3", ">i4"), ("w", ">f4")])
# (doc_id int8)
DOC_ID = np.dtype([("n", ">i2"), ("l1", ">i4"), ("doc", ">i8")])
# (doc_id int8, doc_len int4)
LENGTH = np.dtype([("n", ">i2"), ("l1", ">i4"), ("doc", ">i8"), ("l2", ">i4"), ("len", ">i4")])


def encode(dtype: np.dtype, **columns: np.ndarray) -> bytes:
    """A complete COPY ... (FORMAT BINARY) stream of rows with the given columns."""
    count = len(next(iter(columns.values())))
    rows = np.empty(count, dtype=dtype)
    fields = [name for name in dtype.names if not (name == "n" or name.startswith("l"))]
    rows["n"] = len(fields)
    for i, name in enumerate(fields, start=1):
        rows[f"l{i}"] = dtype[name].itemsize
        rows[name] = columns[name]
    return _HEADER + rows.tobytes() + _TRAILER


def decode(data: bytes, dtype: np.dtype) -> np.ndarray:
    """The rows of a COPY ... TO STDOUT (FORMAT BINARY) stream (no NULLs) as a record array."""
    if len(data) < 19:
        return np.zeros(0, dtype=dtype)
    start = 19 + int.from_bytes(data[15:19], "big")
    return np.frombuffer(data, dtype=dtype, offset=start, count=(len(data) - start - 2) // dtype.itemsize)


_INT8_OID, _FLOAT4_OID = 20, 700
# Per block row: field count, term_id, block, then each array's length word and its header
# (ndim 1, no NULLs, element type, size, lower bound 1).
_BLOCK_KEY = [("l1", ">i4"), ("term", ">i4"), ("l2", ">i4"), ("block", ">i8"),
              ("l3", ">i4"), ("ndim", ">i4"), ("nulls", ">i4"), ("oid", ">i4"), ("size", ">i4"), ("lb", ">i4")]
_BLOCK_HEAD = np.dtype([("n", ">i2"), *_BLOCK_KEY])
_SHARDED_BLOCK_HEAD = np.dtype([("n", ">i2"), ("l0", ">i4"), ("shard", ">i4"), *_BLOCK_KEY])
_ARRAY_HEAD = np.dtype([("l4", ">i4"), ("ndim", ">i4"), ("nulls", ">i4"), ("oid", ">i4"), ("size", ">i4"), ("lb", ">i4")])
_DOC_ITEM = np.dtype([("l", ">i4"), ("v", ">i8")])
_WEIGHT_ITEM = np.dtype([("l", ">i4"), ("v", ">f4")])


def encode_blocks(term: np.ndarray, doc: np.ndarray, weight: np.ndarray, starts: np.ndarray, shard: np.ndarray | None = None) -> bytes:
    """A COPY stream of posting blocks `([shard int4,] term_id int4, block int8, doc_ids int8[], tfs float4[])`.

    Postings come sorted by ([shard,] term, doc); block i holds postings starts[i] .. starts[i + 1] - 1
    (one term, and one shard, each) and is keyed by its first doc id. Every byte is placed by
    numpy: the row headers, then each posting's doc id and weight items at their row's offsets.
    """
    count = len(starts)
    sizes = np.diff(np.append(starts, len(term))).astype(np.int64)
    layout = _BLOCK_HEAD if shard is None else _SHARDED_BLOCK_HEAD
    head_n, array_n = layout.itemsize, _ARRAY_HEAD.itemsize
    row_bytes = head_n + array_n + sizes * (_DOC_ITEM.itemsize + _WEIGHT_ITEM.itemsize)
    row_start = np.zeros(count, dtype=np.int64)
    np.cumsum(row_bytes[:-1], out=row_start[1:])
    out = np.zeros(int(row_bytes.sum()), dtype=np.uint8)

    head = np.zeros(count, dtype=layout)
    head["n"], head["l1"], head["l2"] = 4, 4, 8
    if shard is not None:
        head["n"], head["l0"], head["shard"] = 5, 4, shard[starts]
    head["term"], head["block"] = term[starts], doc[starts]
    head["l3"] = 20 + sizes * _DOC_ITEM.itemsize
    head["ndim"], head["oid"], head["size"], head["lb"] = 1, _INT8_OID, sizes, 1
    mid = np.zeros(count, dtype=_ARRAY_HEAD)
    mid["l4"] = 20 + sizes * _WEIGHT_ITEM.itemsize
    mid["ndim"], mid["oid"], mid["size"], mid["lb"] = 1, _FLOAT4_OID, sizes, 1

    rank = np.arange(len(term), dtype=np.int64) - np.repeat(starts.astype(np.int64), sizes)  # position in its block
    base = np.repeat(row_start, sizes)
    docs_at = base + head_n + rank * _DOC_ITEM.itemsize
    weights_at = base + head_n + np.repeat(sizes, sizes) * _DOC_ITEM.itemsize + array_n + rank * _WEIGHT_ITEM.itemsize
    mid_at = row_start + head_n + sizes * _DOC_ITEM.itemsize
    items = np.zeros(len(term), dtype=_DOC_ITEM)
    items["l"], items["v"] = 8, doc
    _scatter(out, row_start, head)
    _scatter(out, mid_at, mid)
    _scatter(out, docs_at, items)
    items = np.zeros(len(term), dtype=_WEIGHT_ITEM)
    items["l"], items["v"] = 4, weight
    _scatter(out, weights_at, items)
    return _HEADER + out.tobytes() + _TRAILER


def _scatter(out: np.ndarray, at: np.ndarray, records: np.ndarray) -> None:
    """Copy each record's bytes to out[at[i]:at[i] + itemsize]."""
    width = records.dtype.itemsize
    out[(at[:, None] + np.arange(width)).ravel()] = records.view(np.uint8).reshape(-1, width).ravel()


# Arrays in PostgreSQL's binary format, built by numpy: psycopg's own list dumper costs about a
# microsecond an element in Python, which made a batch's per-document term arrays its slowest part.
_ARRAY_TYPES = {"int4": (1007, 23, ">i4"), "float4": (1021, 700, ">f4")}


def array_bytes(values: np.ndarray, element: str) -> bytes:
    """One-dimensional `values` as a binary int4[] or float4[] value (no NULLs)."""
    _, oid, code = _ARRAY_TYPES[element]
    items = np.empty(len(values), dtype=[("l", ">i4"), ("v", code)])
    items["l"], items["v"] = 4, values
    return np.array([1, 0, oid, len(values), 1], dtype=">i4").tobytes() + items.tobytes()


def _array_dumper(element: str) -> type[Dumper]:
    array_oid = _ARRAY_TYPES[element][0]

    class NumpyArrayDumper(Dumper):
        format = Format.BINARY
        oid = array_oid

        def dump(self, obj: np.ndarray) -> bytes:
            return array_bytes(obj, element)

    return NumpyArrayDumper


def dump_numpy_arrays(adapters: AdaptersMap) -> None:
    """Make `adapters` (a cursor's, say) write int4[] and float4[] COPY columns, once declared by
    `set_types`, from numpy arrays."""
    for element in _ARRAY_TYPES:
        adapters.register_dumper(None, _array_dumper(element))


class TextArray(list):
    """A list of str bound as a binary text[] parameter, encoded in one pass."""


class TextArrayDumper(Dumper):
    format = Format.BINARY
    oid = 1009

    def dump(self, obj: TextArray) -> bytes:
        encoded = [t.encode("utf-8") for t in obj]
        lengths = [len(e).to_bytes(4, "big") for e in encoded]
        body = b"".join([x for pair in zip(lengths, encoded) for x in pair])
        return np.array([1, 0, 25, len(encoded), 1], dtype=">i4").tobytes() + body
