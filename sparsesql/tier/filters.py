"""Filter columns in memory: a search's WHERE evaluated over numpy columns instead of a scan in SQL.

Each collection's declared scalar fields are kept as one array per field, indexed by doc id, with
a null mask: numbers (integer, bigint, real, double precision) as int64 or float64 (a real's
float32 value is exact in float64, and PostgreSQL compares it in float8 with a float8 value);
booleans; dates and timestamps as datetime64; text fields that are not analysed for search
(a tenant, a category) as codes into a dictionary of their distinct values. A checked WHERE
whose every test is on such a column against a value (comparisons, IN, IS NULL, with AND, OR and
NOT under SQL's three-valued logic: a test on NULL is unknown, and only true rows are kept) is
evaluated here; anything else (LIKE, metadata, casts, `id`, two columns compared, text ordered by
a collation, numeric's exact decimals, NaN) raises NotInMemory with the reason, and the search
reads its doc ids from SQL instead. Either way the kept set equals the SQL path's.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from dataclasses import dataclass, field

import numpy as np
import psycopg
from psycopg import sql

from sparsesql.db.catalog import CollectionInfo
from sparsesql.lang import ast
from sparsesql.tier.follow import FollowedTier

# PostgreSQL type -> (kind, numpy dtype of the values)
LOADABLE = {
    "integer": ("number", np.int64),
    "bigint": ("number", np.int64),
    "real": ("number", np.float64),
    "double precision": ("number", np.float64),
    "boolean": ("bool", np.bool_),
    "date": ("date", "datetime64[D]"),
    "timestamp": ("date", "datetime64[us]"),
    "text": ("text", np.int32),
}
MAX_WORDS = 100_000  # a text column with more distinct values than this stays in SQL
LOAD_BATCH = 100_000  # rows a fetch while loading
_OPS = {"=": operator.eq, "!=": operator.ne, "<>": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!=", "<>": "<>"}
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?")


class NotInMemory(Exception):
    """This WHERE is not evaluated from the columns (the message says why): its ids come from SQL."""


@dataclass
class Column:
    kind: str  # number | bool | date | text
    values: np.ndarray  # by doc id; text: the value's code in `words`
    null: np.ndarray  # by doc id: True where the value is NULL (and where no document is)
    words: dict[str, int] = field(default_factory=dict)  # text: value -> code
    has_nan: bool = False  # a float column holding NaN (PostgreSQL orders NaN above every number)


@dataclass
class FilterColumns:
    """One collection's filter columns; `alive` marks the doc ids of its live documents."""

    columns: dict[str, Column]
    alive: np.ndarray
    skipped: dict[str, str]  # declared fields kept out of memory -> why

    def memory_bytes(self) -> int:
        return int(self.alive.nbytes + sum(c.values.nbytes + c.null.nbytes + 64 * len(c.words) for c in self.columns.values()))

    def keep(self, where: ast.Predicate, params: dict) -> np.ndarray:
        """The sorted doc ids of live documents for which `where` is true; raises NotInMemory."""
        return np.flatnonzero(self.kept(where, params))

    def numbers(self, name: str, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A number or date column's values for `docs` as float64 (a date as days since 1970) and
        where they are NULL: what an ORDER BY boost computes with. Raises NotInMemory for any
        other column (a timestamp's fraction of a day is computed in SQL's way there)."""
        if name not in self.columns:
            raise NotInMemory(self.skipped.get(name, f"{name!r} is not a filter column"))
        col = self.columns[name]
        if col.has_nan or col.kind not in ("number", "date") or col.values.dtype == np.dtype("datetime64[us]"):
            raise NotInMemory(f"{name!r} is read in SQL for a boost")
        values = col.values[docs]
        if col.kind == "date":
            values = values.astype(np.int64)
        return values.astype(np.float64), col.null[docs]

    def kept(self, where: ast.Predicate | None, params: dict) -> np.ndarray:
        """A flag per doc id (as long as `alive`): live and, with a `where`, true for it."""
        if where is None:
            return self.alive
        true, _ = self._truth(where, params)
        return true & self.alive

    # ------------------------------------------------------------------ three-valued logic

    def _truth(self, node: ast.Predicate, params: dict) -> tuple[np.ndarray, np.ndarray]:
        """(where true, where false); unknown is neither."""
        if isinstance(node, ast.And):
            parts = [self._truth(i, params) for i in node.items]
            return np.logical_and.reduce([t for t, _ in parts]), np.logical_or.reduce([f for _, f in parts])
        if isinstance(node, ast.Or):
            parts = [self._truth(i, params) for i in node.items]
            return np.logical_or.reduce([t for t, _ in parts]), np.logical_and.reduce([f for _, f in parts])
        if isinstance(node, ast.Not):
            true, false = self._truth(node.item, params)
            return false, true
        if isinstance(node, ast.IsNull):
            col = self._column(node.expr)
            return (~col.null, col.null) if node.negated else (col.null, ~col.null)
        if isinstance(node, ast.Compare):
            return self._compare(node, params)
        if isinstance(node, ast.InList):
            col = self._column(node.expr)
            hits = [self._test(col, "=", self._value(i, params)) for i in node.items]
            true = np.logical_or.reduce(hits) if hits else np.zeros_like(col.null)
            false = ~true & ~col.null
            return (false, true) if node.negated else (true, false)
        raise NotInMemory("LIKE is evaluated in SQL")

    def _compare(self, node: ast.Compare, params: dict) -> tuple[np.ndarray, np.ndarray]:
        op, column, value = node.op, node.left, node.right
        if isinstance(column, (ast.Literal, ast.Param)):
            op, column, value = _FLIP[op], node.right, node.left
        col = self._column(column)
        true = self._test(col, op, self._value(value, params))
        return true, ~true & ~col.null

    def _column(self, op: ast.Operand) -> Column:
        if isinstance(op, ast.JsonPath):
            raise NotInMemory("metadata paths are evaluated in SQL")
        if isinstance(op, ast.Cast):
            raise NotInMemory("casts are evaluated in SQL")
        if not isinstance(op, ast.Column):
            raise NotInMemory("a test between two values is evaluated in SQL")
        name = op.name.lower()
        if name not in self.columns:
            raise NotInMemory(self.skipped.get(name, f"{name!r} is not a filter column"))
        return self.columns[name]

    @staticmethod
    def _value(op: ast.Operand, params: dict) -> object:
        if isinstance(op, ast.Literal):
            return op.value
        if isinstance(op, ast.Param):
            return params[op.name]
        raise NotInMemory("a test between two columns, casts or metadata paths is evaluated in SQL")

    def _test(self, col: Column, op: str, value: object) -> np.ndarray:
        """Where `column op value` is true (never where the column is NULL)."""
        if value is None:
            raise NotInMemory("a NULL parameter is compared in SQL")
        if col.kind == "text":
            if op not in ("=", "!=", "<>") or not isinstance(value, str):
                raise NotInMemory("text is ordered by its collation in SQL")
            code = col.words.get(value)
            equal = np.zeros_like(col.null) if code is None else col.values == code
            return (equal if op == "=" else ~equal) & ~col.null
        return _OPS[op](col.values, _converted(col, value)) & ~col.null


def _converted(col: Column, value: object) -> object:
    """`value` as the column's numpy type compares it, as PostgreSQL would; NotInMemory otherwise."""
    if col.kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise NotInMemory(f"{value!r} is compared with a number in SQL")
        if col.has_nan or value != value:
            raise NotInMemory("NaN is compared in SQL")
        if isinstance(value, int) and col.values.dtype == np.int64 and not -(2**63) <= value < 2**63:
            raise NotInMemory("an integer past int64 is compared in SQL")
        return value
    if col.kind == "bool":
        if not isinstance(value, bool):
            raise NotInMemory(f"{value!r} is compared with a boolean in SQL")
        return value
    unit = col.values.dtype
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            raise NotInMemory("a time zone is applied in SQL")
        return np.datetime64(value, "us")
    if isinstance(value, dt.date):
        return np.datetime64(value, "D")
    if isinstance(value, str):
        shape = _ISO_DATE if unit == np.dtype("datetime64[D]") else _ISO_TIMESTAMP
        if shape.fullmatch(value.strip()):
            try:
                return np.datetime64(value.strip().replace(" ", "T"))
            except ValueError:
                pass
        raise NotInMemory(f"{value!r} is read as a date in SQL")
    raise NotInMemory(f"{value!r} is compared with a date in SQL")


def _fields(info: CollectionInfo) -> tuple[list[str], dict[str, str]]:
    """The fields kept in memory, and the others with why not."""
    kept, skipped = [], {}
    for f in info.fields:
        if f.type not in LOADABLE:
            skipped[f.name] = f"{f.name!r} ({f.type}) is compared in SQL"
        elif f.type == "text" and f.name in info.settings.text_fields:
            skipped[f.name] = f"{f.name!r} is analysed for search; tests on it run in SQL"
        else:
            kept.append(f.name)
    return kept, skipped


def _rows(conn: psycopg.Connection, info: CollectionInfo, columns: dict[str, Column], where: sql.Composable, params: tuple) -> list[tuple]:
    """(doc_id, a value per column); a date column's value comes with whether it is +-infinity
    (which datetime64 cannot hold: such a column stays in SQL)."""
    exprs = [sql.SQL("d.doc_id")]
    for name, col in columns.items():
        c = sql.SQL("d.{}").format(sql.Identifier(name))
        if col.kind == "date":
            exprs.append(sql.SQL("(CASE WHEN isfinite({c}) THEN {c} END), ({c} IS NOT NULL AND NOT isfinite({c}))").format(c=c))
        else:
            exprs.append(c)
    cols = sql.SQL(", ").join(exprs)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT {} FROM {} AS d WHERE {}").format(cols, info.table("docs"), where), params)
        return cur.fetchall()


def _grow(data: FilterColumns, size: int) -> None:
    """Arrays long enough for doc ids below `size` (doubling, so appends stay amortised O(1))."""
    if size <= len(data.alive):
        return
    size = max(size, 2 * len(data.alive))
    extra = size - len(data.alive)
    data.alive = np.concatenate([data.alive, np.zeros(extra, dtype=bool)])
    for col in data.columns.values():
        col.values = np.concatenate([col.values, np.zeros(extra, dtype=col.values.dtype)])
        col.null = np.concatenate([col.null, np.ones(extra, dtype=bool)])


def _put(data: FilterColumns, rows: list[tuple], skipped: dict[str, str]) -> None:
    """Write rows (doc_id, value per column) into the columns; a text column past MAX_WORDS leaves."""
    if not rows:
        return
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    _grow(data, int(ids.max()) + 1)
    data.alive[ids] = True
    i = 1
    for name, col in list(data.columns.items()):
        raw = [r[i] for r in rows]
        i += 2 if col.kind == "date" else 1
        null = np.fromiter((v is None for v in raw), dtype=bool, count=len(raw))
        if col.kind == "date" and any(r[i - 1] for r in rows):
            del data.columns[name]
            skipped[name] = f"{name!r} holds infinity; tests on it run in SQL"
            continue
        if col.kind == "text":
            for v in raw:
                if v is not None and v not in col.words:
                    col.words[v] = len(col.words)
            if len(col.words) > MAX_WORDS:
                del data.columns[name]
                skipped[name] = f"{name!r} has over {MAX_WORDS} distinct values; tests on it run in SQL"
                continue
            values = np.fromiter((-1 if v is None else col.words[v] for v in raw), dtype=np.int32, count=len(raw))
        elif col.kind == "date":
            values = np.array([np.datetime64("NaT") if v is None else v for v in raw], dtype=col.values.dtype)
        else:
            values = np.array([0 if v is None else v for v in raw], dtype=col.values.dtype)
            if col.values.dtype == np.float64 and np.isnan(values).any():
                col.has_nan = True
        col.values[ids] = values
        col.null[ids] = null


class FilterTier(FollowedTier[FilterColumns]):
    """The filter columns of a process's collections (`Followed.data`)."""

    file = "filters"
    origin = "rows"
    codepoint: bool | None = None  # the database sorts text by code point (its C collations)

    def codepoint_order(self, conn: psycopg.Connection) -> bool:
        """Whether the database's default collation orders text as Python does (code point
        order, the C collations of libc and of the builtin provider): asked once."""
        if self.codepoint is None:
            row = conn.execute("SELECT to_jsonb(d) FROM pg_database AS d WHERE d.datname = current_database()").fetchone()[0]
            provider = row.get("datlocprovider", "c")
            name = row.get("datlocale") if provider == "b" else row.get("datcollate")
            self.codepoint = provider in ("b", "c") and (name in ("C", "POSIX", "PG_UNICODE_FAST") or str(name).startswith("C."))
        return self.codepoint

    def build(self, conn: psycopg.Connection, info: CollectionInfo) -> FilterColumns:
        names, skipped = _fields(info)
        columns = {n: Column(LOADABLE[info.field_type(n)][0], np.zeros(0, dtype=LOADABLE[info.field_type(n)][1]), np.zeros(0, dtype=bool))
                   for n in names}
        data = FilterColumns(columns, np.zeros(0, dtype=bool), skipped)
        top = conn.execute(sql.SQL("SELECT coalesce(max(doc_id), 0) FROM {}").format(info.table("docs"))).fetchone()[0]
        _grow(data, top + 1)
        for lo in range(0, top + 1, LOAD_BATCH):
            _put(data, _rows(conn, info, data.columns, sql.SQL("d.doc_id >= %s AND d.doc_id < %s"), (lo, lo + LOAD_BATCH)), skipped)
        return data

    def apply(self, conn: psycopg.Connection, info: CollectionInfo, data: FilterColumns, removed: np.ndarray, added: list[int]) -> None:
        removed = removed[removed < len(data.alive)]
        data.alive[removed] = False
        for col in data.columns.values():
            col.null[removed] = True
        if added:
            _put(data, _rows(conn, info, data.columns, sql.SQL("d.doc_id = ANY(%s)"), (added,)), data.skipped)

    def size(self, data: FilterColumns) -> int:
        return int(data.alive.sum())

    def to_arrays(self, data: FilterColumns) -> dict[str, np.ndarray]:
        arrays = {"alive": data.alive}
        for name, col in data.columns.items():
            arrays[f"v.{name}"] = col.values
            arrays[f"n.{name}"] = col.null
            if col.kind == "text":
                arrays[f"w.{name}"] = np.array(sorted(col.words, key=col.words.get), dtype=str)
        return arrays

    def from_arrays(self, arrays: dict[str, np.ndarray], info: CollectionInfo) -> FilterColumns:
        names, skipped = _fields(info)
        columns = {}
        for name in names:
            if f"v.{name}" not in arrays:
                continue
            kind = LOADABLE[info.field_type(name)][0]
            words = {str(w): i for i, w in enumerate(arrays.get(f"w.{name}", []))}
            values = arrays[f"v.{name}"]
            has_nan = bool(values.dtype == np.float64 and np.isnan(values).any())
            columns[name] = Column(kind, values, arrays[f"n.{name}"], words, has_nan)
        for name in names:
            if name not in columns:
                skipped[name] = f"{name!r} was left out of memory when loaded; tests on it run in SQL"
        return FilterColumns(columns, arrays["alive"], skipped)
