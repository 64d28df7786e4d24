"""Dialect statements on the wire: what they take and return, described before they run.

Drivers describe a statement before binding it (asyncpg, node-postgres, JDBC all do), so a
dialect statement's parameter types and result columns are worked out from its syntax tree and
the collection's declared fields, without running it. Running goes through `Database.query`,
the same path as in-process use; this module only lays its rows out as the columns it
described, and turns sparsesql's errors into ErrorResponse fields with a SQLSTATE and the
caret's position.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg

from sparsesql import errors
from sparsesql.database import Database
from sparsesql.db.catalog import CollectionInfo, get_collection
from sparsesql.lang import ast
from sparsesql.lang.check_where import CAST_TYPES
from sparsesql.lang.check_facets import aggregate_column
from sparsesql.lang.parse import parse_statement
from sparsesql.server import types as t
from sparsesql.server.metrics import statement_kind
from sparsesql.server.sqlstates import sqlstate
from sparsesql.server.wire import Column

if TYPE_CHECKING:
    from sparsesql.server.metrics import Metrics


@dataclass
class Described:
    """A statement's shape: parameter OIDs ($1 first), result columns (None: no rows), and the
    command tag's verb."""

    param_oids: list[int]
    columns: list[Column] | None
    verb: str
    statement: ast.Statement | None = None
    vector_params: frozenset[str] = frozenset()  # DENSE(...)'s parameters: text may carry a vector
    created: str | None = None  # the described collection's identity (a re-created namesake differs)

    def bind(self, name: str, value: object) -> object:
        """A bound value as the dialect takes it: a DENSE query parameter sent as text that
        spells a vector ('[0.1, 0.2]' or '{0.1,0.2}', as drivers write arrays) becomes one;
        text shaped like one that holds something else ('[1..2]') is a bad parameter value."""
        if name in self.vector_params and isinstance(value, str) and _VECTOR.match(value):
            try:
                return [float(x) for x in value.strip()[1:-1].split(",") if x.strip()]
            except ValueError:
                raise t.BadValue(f"{value[:40]!r} is not a vector of numbers") from None
        return value


_VECTOR = re.compile(r"^\s*[\[{]\s*[-+0-9.eE, ]*[\]}]\s*$")


@dataclass
class Outcome:
    columns: list[Column] | None
    rows: list[list[object]]
    tag: str


SHOW_COLLECTIONS = [("name", t.TEXT), ("documents", t.INT8), ("fields", t.TEXT), ("sparse", t.TEXT), ("dense", t.TEXT), ("dim", t.INT4)]
SHOW_GRAPH = [("property", t.TEXT), ("value", t.TEXT)]
BUILD_GRAPH = [("collection", t.TEXT), ("k", t.INT4), ("edges", t.INT8)]
EXPLAIN = [("QUERY PLAN", t.TEXT)]


def _columns(pairs: list[tuple[str, int]]) -> list[Column]:
    return [Column(name, oid, t.TYPE_SIZES.get(oid, -1)) for name, oid in pairs]


def _field_oid(info: CollectionInfo | None, name: str) -> int:
    if info is None:
        return t.TEXT
    if name == "metadata":
        return t.JSONB
    if name == "embedding":
        return t.FLOAT4_ARRAY
    if name == "sparse":
        return t.JSONB
    return t.FIELD_OIDS.get(info.field_type(name) or "text", t.TEXT)


def _aggregate_oid(item: ast.Aggregate, info: CollectionInfo) -> int:
    """As PostgreSQL types them: count bigint, min/max the field's, avg double precision (the
    value of an integer's numeric avg reads as one), sum bigint of integers, else the field's."""
    if item.function == "count":
        return t.INT8
    field = _field_oid(info, item.field.lower())
    if item.function == "avg":
        return t.FLOAT8
    if item.function == "sum":
        return {t.INT4: t.INT8, t.INT8: t.NUMERIC, t.FLOAT4: t.FLOAT4}.get(field, field)
    return field


def _select_columns(node: ast.Select, info: CollectionInfo) -> list[tuple[str, int]]:
    """The result's columns as run_plan makes them: the fields as written, the HIGHLIGHT columns,
    then score and cursor; with GROUP BY, the facet's columns in select-list order."""
    if node.group_by is not None:
        out = []
        for item in node.items:
            if isinstance(item, ast.Aggregate):
                out.append((aggregate_column(item), _aggregate_oid(item, info)))
            elif isinstance(item, ast.Bucket):
                oid = t.INT4 if item.function == "width_bucket" else (t.TIMESTAMP if _field_oid(info, item.field.lower()) == t.TIMESTAMP else t.TIMESTAMPTZ)
                out.append((item.field.lower(), oid))
            else:
                out.append((item.name.lower(), _field_oid(info, item.name.lower())))
        return out
    if not node.items:
        return [(n, _field_oid(info, n)) for n in ["id", *(f.name for f in info.fields), "metadata"]] + ([("score", t.FLOAT8)] if node.search is not None else [])
    names: list[str] = []
    marks: list[str] = []
    score = cursor = False
    for item in node.items:
        if isinstance(item, ast.Highlight):
            marks.append(f"highlight_{item.field.lower()}")
            continue
        name = item.name.lower()
        if name == "score":
            score = True
        elif name == "cursor" and info.field_type(name) is None:
            cursor = True
        elif name not in names:
            names.append(name)
    return ([(n, _field_oid(info, n)) for n in names] + [(m, t.TEXT) for m in marks]
            + ([("score", t.FLOAT8)] if score else []) + ([("cursor", t.TEXT)] if cursor else []))


def _operand_oid(op: object, info: CollectionInfo | None) -> int | None:
    if isinstance(op, ast.Column):
        return _field_oid(info, op.name.lower())
    if isinstance(op, ast.JsonPath):
        return t.TEXT if op.as_text else t.JSONB
    if isinstance(op, ast.Cast):
        return t.FIELD_OIDS.get(CAST_TYPES.get(op.type_name.lower(), "text"), t.TEXT)
    return None


def _param_hints(node: object, info: CollectionInfo | None, hint: int, out: dict[str, int]) -> None:
    """Walk the tree; each parameter gets the type its context asks for (first use wins)."""
    if isinstance(node, ast.Param):
        out.setdefault(node.name, hint)
        return
    if isinstance(node, (tuple, list)):
        for item in node:
            _param_hints(item, info, hint, out)
        return
    if not dataclasses.is_dataclass(node):
        return
    if isinstance(node, (ast.Compare, ast.Like)):
        left, right = (node.left, node.right) if isinstance(node, ast.Compare) else (node.expr, node.pattern)
        _param_hints(left, info, _operand_oid(right, info) or t.TEXT, out)
        _param_hints(right, info, _operand_oid(left, info) or t.TEXT, out)
        return
    if isinstance(node, ast.InList):
        side = _operand_oid(node.expr, info) or t.TEXT
        _param_hints(node.items, info, side, out)
        _param_hints(node.expr, info, _operand_oid(node.items[0], info) or t.TEXT if node.items else t.TEXT, out)
        return
    if isinstance(node, ast.Select):
        _param_hints(node.limit, info, t.INT8, out)
    if isinstance(node, ast.Arg):
        _param_hints(node.value, info, t.NUMERIC, out)
        return
    if isinstance(node, ast.Insert):
        for row in node.rows:
            for column, value in zip(node.columns, row.values):
                _param_hints(value, info, _field_oid(info, column.name.lower()), out)
        return
    for f in dataclasses.fields(node):
        _param_hints(getattr(node, f.name), info, t.TEXT, out)


def _dense_params(node: object) -> list[str]:
    if isinstance(node, ast.Dense):
        return [node.query.name] if isinstance(node.query, ast.Param) else []
    if isinstance(node, (tuple, list)):
        return [n for item in node for n in _dense_params(item)]
    if dataclasses.is_dataclass(node):
        return [n for f in dataclasses.fields(node) for n in _dense_params(getattr(node, f.name))]
    return []


def _collection_of(statement: ast.Statement) -> str | None:
    target = getattr(statement, "select", statement)
    for attr in ("collection", "name"):
        value = getattr(target, attr, None)
        if isinstance(value, ast.Name):
            return value.name
    return None


_described: dict[tuple[str, tuple[int, ...]], Described] = {}
_described_lock = threading.Lock()
DESCRIBED_KEPT = 4096


def describe(db: Database, text: str, client_oids: list[int]) -> Described:
    """Parameter types and result columns of a dialect statement, before any value is bound.

    Apps send the same texts again and again (an unnamed statement is parsed anew for every
    query), so descriptions of searches are kept, process-wide: a search then costs no catalog
    read here, and `run` re-lays a kept description out when the collection it was made for
    has been re-created since."""
    key = (text, tuple(client_oids))
    kept = _described.get(key)
    if kept is not None:
        return kept
    described = _describe(db, text, client_oids)
    if described.created is not None:
        with _described_lock:
            if len(_described) >= DESCRIBED_KEPT:
                _described.clear()
            _described[key] = described
    return described


def _describe(db: Database, text: str, client_oids: list[int]) -> Described:
    statement = parse_statement(text)
    name = _collection_of(statement)
    info = get_collection(db.conn, name.lower()) if name else None
    hints: dict[str, int] = {}
    _param_hints(statement, info, t.TEXT, hints)
    vectors = frozenset(_dense_params(statement))
    created = info.created if info else None
    positional = [int(k) for k in hints if k.isdigit()]
    count = max([len(client_oids), *positional], default=0)
    oids = [client_oids[i] if i < len(client_oids) and client_oids[i] else hints.get(str(i + 1), t.TEXT) for i in range(count)]
    if isinstance(statement, ast.Select):
        columns = _columns(_select_columns(statement, info)) if info else None
        return Described(oids, columns, "SELECT", statement, vectors, info.created if info else None)
    if isinstance(statement, ast.Explain):
        return Described(oids, _columns(EXPLAIN), "EXPLAIN", statement, vectors, created)
    if isinstance(statement, ast.ShowCollections):
        return Described(oids, _columns(SHOW_COLLECTIONS), "SHOW", statement, vectors, created)
    if isinstance(statement, ast.ShowGraph):
        return Described(oids, _columns(SHOW_GRAPH), "SHOW", statement, vectors, created)
    if isinstance(statement, ast.BuildGraph):
        return Described(oids, _columns(BUILD_GRAPH), "BUILD GRAPH", statement, vectors, created)
    if isinstance(statement, ast.CreateCollection):
        return Described(oids, None, "CREATE COLLECTION", statement, vectors, created)
    if isinstance(statement, ast.DropCollection):
        return Described(oids, None, "DROP COLLECTION", statement, vectors, created)
    if isinstance(statement, ast.Insert):
        return Described(oids, None, "INSERT", statement, vectors, created)
    if isinstance(statement, ast.Delete):
        return Described(oids, None, "DELETE", statement, vectors, created)
    return Described(oids, None, "SET", statement, vectors, created)


def run(db: Database, text: str, params: dict[str, object], described: Described, metrics: "Metrics | None" = None) -> Outcome:
    """Run the statement through the Python API's own path; rows laid out as described."""
    start = time.perf_counter()
    try:
        rows = db.query(text, **params)
    except Exception as exc:
        if metrics is not None:
            metrics.failed("wire", exc)
        raise
    if metrics is not None:
        metrics.observe("wire", statement_kind(described.statement), time.perf_counter() - start, db.last_stages)
    verb = described.verb
    info = db.last_collection
    if verb == "SELECT" and isinstance(described.statement, ast.Select) and info is not None and info.created != described.created:
        # the collection was re-created since the description was kept: lay out by the new one
        described = dataclasses.replace(described, columns=_columns(_select_columns(described.statement, info)), created=info.created)
        with _described_lock:
            for key in [k for k in _described if k[0] == text]:
                del _described[key]
    if verb in ("CREATE COLLECTION", "DROP COLLECTION"):
        with _described_lock:
            _described.clear()  # kept layouts may name what this statement made or removed
    if verb == "INSERT":
        report = rows[0] if rows else {}
        return Outcome(None, [], f"INSERT 0 {int(report.get('added', 0)) + int(report.get('updated', 0))}")
    if verb == "DELETE":
        return Outcome(None, [], f"DELETE {int(rows[0]['deleted']) if rows else 0}")
    if described.columns is None:
        return Outcome(None, [], verb)
    names = ["plan" if c.name == "QUERY PLAN" else c.name for c in described.columns]
    out = [[r.get(n) for n in names] for r in rows]
    tag = f"SELECT {len(out)}" if verb in ("SELECT", "BUILD GRAPH") else verb
    return Outcome(described.columns, out, tag)


# ----------------------------------------------------------------------------- errors


def error_fields(exc: BaseException, offset: int = 0) -> dict[str, str]:
    """ErrorResponse fields (letters as the protocol has them) for an exception raised by a
    statement that starts at `offset` of the message the client sent."""
    if isinstance(exc, psycopg.Error) and exc.diag is not None:
        return backend_fields(exc.diag)
    cause = exc.__cause__
    if isinstance(exc, errors.DatabaseError) and isinstance(cause, psycopg.Error) and cause.diag is not None:
        fields = backend_fields(cause.diag)
        fields["M"] = exc.message
        return fields
    message = exc.message if isinstance(exc, errors.Error) else str(exc)
    fields = {"C": sqlstate(exc), "M": message}
    if isinstance(exc, errors.Error) and exc.line is not None and exc.query is not None:
        fields["P"] = str(offset + _offset(exc.query, exc.line, exc.column or 1) + 1)
    return fields


def _offset(query: str, line: int, column: int) -> int:
    lines = query.split("\n")
    return sum(len(l) + 1 for l in lines[: line - 1]) + column - 1


def backend_fields(diag: psycopg.errors.Diagnostic) -> dict[str, str]:
    """PostgreSQL's own error or notice fields, relayed as they were."""
    names = {
        "S": "severity_nonlocalized", "V": "severity_nonlocalized", "C": "sqlstate", "M": "message_primary",
        "D": "message_detail", "H": "message_hint", "P": "statement_position", "p": "internal_position",
        "q": "internal_query", "W": "context", "s": "schema_name", "t": "table_name", "c": "column_name",
        "d": "datatype_name", "n": "constraint_name", "F": "source_file", "L": "source_line", "R": "source_function",
    }
    out = {}
    for letter, attr in names.items():
        value = getattr(diag, attr, None)
        if value:
            out[letter] = value
    if "S" in out:
        out["S"] = diag.severity or out["S"]
    return out
