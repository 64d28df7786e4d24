"""Checking facets: `SELECT key, count(*), ... FROM c SEARCH ... GROUP BY key [ORDER BY ...] [LIMIT k]`.

A facet counts (and aggregates) the search's hits per value of one declared field, or per bucket
of it (`width_bucket` for numbers, `date_trunc` for dates), as a results page's sidebar shows
"year: 2021 (14), 2022 (9)". Which documents are the hits is the planner's business
(sparsesql/plan/facets.py); here the statement is checked against the collection: one grouping
key, aggregates PostgreSQL can compute over the field's type, columns named once, ORDER BY over
the result's own columns. Kept apart from check.py, which calls `check_facets` with its checker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparsesql.db.catalog import FIELD_TYPES, NUMERIC_TYPES, CollectionInfo
from sparsesql.lang import ast

DATE_TYPES = ("date", "timestamp", "timestamptz")
DATE_UNITS = ("year", "quarter", "month", "week", "day", "hour", "minute")
MAX_BUCKETS = 10_000
# The hits a facet counts when they are not every match (DENSE, HYBRID, PRF): the search's
# candidates, at least this many.
FACET_DEPTH = 200


@dataclass(frozen=True)
class FacetKey:
    field: str
    function: str | None = None  # None, "width_bucket" or "date_trunc"
    args: tuple[Any, ...] = ()  # width_bucket's low, high, buckets; date_trunc's unit
    column: str = ""


@dataclass(frozen=True)
class CheckedFacets:
    key: FacetKey
    aggregates: tuple[tuple[str, str | None, str], ...]  # (function, field or None for count(*), column)
    columns: tuple[str, ...]  # the result's columns, in select-list order
    order: tuple[tuple[int, bool], ...]  # (column position from 0, descending)


def aggregate_column(node: ast.Aggregate) -> str:
    """An aggregate's column: count for count(*), else <function>_<field>."""
    return "count" if node.field is None else f"{node.function}_{node.field.lower()}"


def check_facets(c: Any, node: ast.Select, info: CollectionInfo, unknown_field: Callable[[str, CollectionInfo], str]) -> CheckedFacets | None:
    """The facet a SELECT asks for, or None when it has no GROUP BY (nor aggregate); `c` is
    check.py's checker (its `error`)."""
    grouped = [i for i in node.items if isinstance(i, (ast.Aggregate, ast.Bucket))]
    if node.group_by is None:
        if grouped:
            raise c.error(f"{grouped[0].function}(...) needs GROUP BY: it counts or buckets the hits per value of a field", grouped[0].pos)
        if node.order_by and node.search is None:
            raise c.error("ORDER BY orders a search's rows by an expression of its score (or the groups of a GROUP BY); "
                          "rows without a search come by insertion", node.order_by[0].pos)
        return None
    for clause, present, where in (("DISTINCT ON", node.distinct_on, node.distinct_on), ("AFTER", node.after, node.after),
                                   ("DIVERSIFY", node.diversify, node.diversify)):
        if present is not None:
            raise c.error(f"{clause} does not go with GROUP BY: a facet counts the search's hits, it has no rows to page or choose", where.pos)
    fields = {f.name: FIELD_TYPES.get(f.type, f.type) for f in info.fields}

    def field_type(name: str, pos: ast.Pos) -> str:
        if name.lower() not in fields:
            raise c.error(unknown_field(name, info) + "; GROUP BY and its aggregates take declared fields", pos)
        return fields[name.lower()]

    keys, aggregates, columns = [], [], []
    for item in node.items:
        if isinstance(item, ast.Aggregate):
            if item.field is not None:
                kind = field_type(item.field, item.pos)
                if item.function in ("avg", "sum") and kind not in NUMERIC_TYPES:
                    raise c.error(f"{item.function}({item.field}) needs a number; {item.field.lower()!r} is {kind}", item.pos)
                if item.function in ("min", "max") and kind == "boolean":
                    raise c.error(f"{item.function}({item.field}) needs values that order; {item.field.lower()!r} is {kind}", item.pos)
            aggregates.append((item.function, item.field.lower() if item.field else None, aggregate_column(item)))
            columns.append(aggregates[-1][2])
        elif isinstance(item, ast.Bucket):
            keys.append((_bucket(c, item, field_type(item.field, item.pos)), item.pos))
            columns.append(keys[-1][0].column)
        elif isinstance(item, ast.SelectItem):
            name = item.name.lower()
            if name not in fields:
                raise c.error(f"with GROUP BY the select list holds the grouped field and aggregates, not {item.name!r}"
                              if name in ("id", "score", "cursor", "metadata") else unknown_field(item.name, info), item.pos)
            keys.append((FacetKey(name, column=name), item.pos))
            columns.append(name)
        else:
            raise c.error("HIGHLIGHT does not go with GROUP BY: a facet has no documents to show", item.pos)
    if len(keys) != 1:
        raise c.error("GROUP BY groups by one field: put it (or its bucket) once in the select list, with the aggregates",
                      keys[1][1] if keys else node.group_by.pos)
    key, key_pos = keys[0]
    group = node.group_by
    if isinstance(group, ast.Literal):
        if not (isinstance(group.value, int) and not isinstance(group.value, bool) and 1 <= group.value <= len(node.items)):
            raise c.error(f"GROUP BY {group.value!r}: a position in the select list is a whole number from 1 to {len(node.items)}", group.pos)
        if columns[group.value - 1] != key.column or not isinstance(node.items[group.value - 1], (ast.SelectItem, ast.Bucket)):
            raise c.error(f"GROUP BY {group.value} names an aggregate; group by the field (or bucket) of the select list", group.pos)
    elif group.name.lower() != key.field or key.function is not None:
        hint = f"GROUP BY {columns.index(key.column) + 1} (its position)" if key.function else f"GROUP BY {key.field}"
        raise c.error(f"GROUP BY {group.name} is not the select list's grouped field; write {hint}", group.pos)
    if len(set(columns)) != len(columns):
        twice = next(col for col in columns if columns.count(col) > 1)
        raise c.error(f"the column {twice!r} is asked for twice", key_pos)
    order = []
    for item in node.order_by:
        if not isinstance(item.column, (str, int)):
            raise c.error(f"ORDER BY of a GROUP BY names the result's columns ({', '.join(columns)}) or their positions", item.pos)
        if isinstance(item.column, int):
            if not 1 <= item.column <= len(columns):
                raise c.error(f"ORDER BY {item.column}: the result has columns 1 to {len(columns)}", item.pos)
            order.append((item.column - 1, item.descending))
        elif item.column in columns:
            order.append((columns.index(item.column), item.descending))
        else:
            raise c.error(f"ORDER BY {item.column}: the result's columns are {', '.join(columns)}", item.pos)
    if not order:  # the biggest groups first, as Elasticsearch's terms aggregation
        counted = next((i for i, (f, field, _) in enumerate(aggregates) if f == "count" and field is None), None)
        order = [(columns.index("count"), True)] if counted is not None else []
    return CheckedFacets(key, tuple(aggregates), tuple(columns), tuple(order))


def _bucket(c: Any, node: ast.Bucket, kind: str) -> FacetKey:
    field = node.field.lower()
    if node.function == "width_bucket":
        low, high, count = (a.value for a in node.args)
        if kind not in NUMERIC_TYPES:
            raise c.error(f"width_bucket({node.field}, ...) needs a number; {field!r} is {kind}", node.pos)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not low < high:
            raise c.error(f"width_bucket's bounds are two numbers, the low one first; got {low!r} and {high!r}", node.args[0].pos)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_BUCKETS:
            raise c.error(f"width_bucket's buckets is a whole number from 1 to {MAX_BUCKETS}, got {count!r}", node.args[2].pos)
        return FacetKey(field, "width_bucket", (low, high, count), field)
    (unit,) = (a.value for a in node.args)
    if kind not in DATE_TYPES:
        raise c.error(f"date_trunc(..., {node.field}) needs a date or timestamp; {field!r} is {kind}", node.pos)
    if not isinstance(unit, str) or unit.lower() not in DATE_UNITS:
        raise c.error(f"date_trunc's unit is one of {', '.join(DATE_UNITS)}, got {unit!r}", node.args[0].pos)
    return FacetKey(field, "date_trunc", (unit.lower(),), field)
