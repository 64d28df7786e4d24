"""PostgreSQL's binary COPY format, built and parsed with numpy.

psycopg's `write_row` costs microseconds a row and more per array element in Python; a batch's
posting blocks (tens of thousands of rows holding hundreds of thousands of postings) go faster as
one numpy buffer, and reading every posting of a collection for the memory tier parses the same
way. `encode`/`decode` handle rows whose every field has a fixed width; `encode_blocks` writes
the posting table's rows, whose two arrays vary in length.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import psycopg
from psycopg import sql
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


def copy_rows(conn: psycopg.Connection, query: sql.Composable, params: tuple | dict | None, dtype: np.dtype) -> np.ndarray:
    """The rows of `query`, by a binary COPY, as a numpy record array (every row has the same fixed layout)."""
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query), params) as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
    return decode(data, dtype)


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
_ARRAY_HEAD = np.dtype([("l4", ">i4"), ("ndim_w", ">i4"), ("nulls_w", ">i4"), ("oid_w", ">i4"), ("size_w", ">i4"), ("lb_w", ">i4")])
_DOC_ITEM = np.dtype([("l", ">i4"), ("v", ">i8")])
_WEIGHT_ITEM = np.dtype([("l", ">i4"), ("v", ">f4")])


def encode_blocks(term: np.ndarray, doc: np.ndarray, weight: np.ndarray, starts: np.ndarray,
                  shard: np.ndarray | None = None) -> Iterator[bytes]:
    """A COPY stream of posting blocks `([shard int4,] term_id int4, block int8, doc_ids int8[], tfs float4[])`,
    in pieces: written to the COPY as they come, the server stores one while the next is encoded.

    Postings come sorted by ([shard,] term, doc); block i holds postings starts[i] .. starts[i + 1] - 1
    (one term, and one shard, each) and is keyed by its first doc id. Blocks of one size share a
    fixed layout, so each size's rows are one numpy record array filled a column at a time (the
    rows go out grouped by size: COPY takes them in any order). Placing every posting's bytes at
    its own offset instead cost index arrays ten times the data (2.3 s for 6M postings).
    """
    sizes = np.diff(np.append(starts, len(term))).astype(np.int64)
    head = _BLOCK_HEAD if shard is None else _SHARDED_BLOCK_HEAD
    yield _HEADER
    for size in np.unique(sizes).tolist():
        which = np.flatnonzero(sizes == size)
        first = starts[which]
        at = first[:, None] + np.arange(size)
        layout = np.dtype([*((name, head[name]) for name in head.names), ("docs", _DOC_ITEM, (size,)),
                           *((name, _ARRAY_HEAD[name]) for name in _ARRAY_HEAD.names), ("weights", _WEIGHT_ITEM, (size,))])
        rows = np.zeros(len(which), dtype=layout)
        rows["n"], rows["l1"], rows["l2"] = 4, 4, 8
        if shard is not None:
            rows["n"], rows["l0"], rows["shard"] = 5, 4, shard[first]
        rows["term"], rows["block"] = term[first], doc[first]
        rows["l3"], rows["l4"] = 20 + size * _DOC_ITEM.itemsize, 20 + size * _WEIGHT_ITEM.itemsize
        rows["ndim"], rows["oid"], rows["size"], rows["lb"] = 1, _INT8_OID, size, 1
        rows["ndim_w"], rows["oid_w"], rows["size_w"], rows["lb_w"] = 1, _FLOAT4_OID, size, 1
        rows["docs"]["l"], rows["docs"]["v"] = 8, doc[at]
        rows["weights"]["l"], rows["weights"]["v"] = 4, weight[at]
        yield rows.tobytes()  # bytes: psycopg copies a memoryview piece by piece, at twice the cost
    yield _TRAILER


# Arrays in PostgreSQL's binary format, built by numpy: psycopg's own list dumper costs about a
# microsecond an element in Python, which made a batch's per-document term arrays its slowest part.
_ARRAY_TYPES = {"int4": (1007, 23, ">i4"), "float4": (1021, 700, ">f4")}


def array_bytes(values: np.ndarray, element: str) -> bytes:
    """One-dimensional `values` as a binary int4[] or float4[] value (no NULLs)."""
    _, oid, code = _ARRAY_TYPES[element]
    items = np.empty(len(values), dtype=[("l", ">i4"), ("v", code)])
    items["l"], items["v"] = 4, values
    return np.array([1, 0, oid, len(values), 1], dtype=">i4").tobytes() + items.tobytes()


def runs_bytes(values: np.ndarray, counts: np.ndarray, element: str) -> list[bytes]:
    """Consecutive runs of `values` (`counts[i]` long), each as a binary int4[] or float4[]
    value: one numpy pass for a whole batch's documents, where array_bytes a document cost
    about 7 us an array (1.5 s of a 100,000-document load)."""
    _, oid, code = _ARRAY_TYPES[element]
    items = np.empty(len(values), dtype=[("l", ">i4"), ("v", code)])
    items["l"], items["v"] = 4, values
    data = items.tobytes()
    heads = np.zeros((len(counts), 5), dtype=">i4")
    heads[:, 0], heads[:, 2], heads[:, 3], heads[:, 4] = 1, oid, counts, 1
    head = heads.tobytes()
    ends = (np.cumsum(counts) * items.dtype.itemsize).tolist()
    starts = [0, *ends[:-1]]
    return [head[20 * i:20 * i + 20] + data[a:b] for i, (a, b) in enumerate(zip(starts, ends))]


def _array_dumper(element: str) -> type[Dumper]:
    array_oid = _ARRAY_TYPES[element][0]

    class NumpyArrayDumper(Dumper):
        format = Format.BINARY
        oid = array_oid

        def dump(self, obj: np.ndarray | bytes) -> bytes:
            return obj if isinstance(obj, bytes) else array_bytes(obj, element)

    return NumpyArrayDumper


def dump_numpy_arrays(adapters: AdaptersMap) -> None:
    """Make `adapters` (a cursor's, say) write int4[] and float4[] COPY columns, once declared by
    `set_types`, from numpy arrays or values runs_bytes encoded."""
    for element in _ARRAY_TYPES:
        adapters.register_dumper(None, _array_dumper(element))


class IntArray:
    """A numpy integer array bound as a binary int4[] parameter, encoded in one pass."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values


class IntArrayDumper(Dumper):
    format = Format.BINARY
    oid = _ARRAY_TYPES["int4"][0]

    def dump(self, obj: IntArray) -> bytes:
        return array_bytes(obj.values, "int4")


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
