"""Checking score boosts: `SELECT ... SEARCH ... ORDER BY score * (1 + 0.1 * ln(1 + citations))`.

A search's ORDER BY is one expression of its `score` and the collection's declared number and
date fields, as Elasticsearch's function_score and Vespa's rank expressions reorder a first
phase: arithmetic (+ - * / ^), ln, log (base 10, as PostgreSQL's), exp, sqrt, abs, power, least,
greatest, coalesce, and the decay functions exp_decay, gauss_decay and linear_decay(field,
origin, scale [, offset [, decay]]) of Elasticsearch (a date field's scale and offset in days,
its origin a date or now()). The rows come highest first (DESC may be written; ASC is refused:
a search ranks its best first). The expression is checked here, its parameters bound to their
values; sparsesql/retrieval/boost.py computes it over the ranking's top candidates.
Kept apart from check.py, which calls `check_boost` with its checker `c`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sparsesql.db.catalog import FIELD_TYPES, NUMERIC_TYPES, CollectionInfo
from sparsesql.lang import ast

DATE_TYPES = ("date", "timestamp", "timestamptz")
# name -> (fewest, most) arguments
FUNCTIONS = {"ln": (1, 1), "log": (1, 1), "exp": (1, 1), "sqrt": (1, 1), "abs": (1, 1), "power": (2, 2),
             "least": (1, 100), "greatest": (1, 100), "coalesce": (1, 100), "now": (0, 0),
             "exp_decay": (3, 5), "gauss_decay": (3, 5), "linear_decay": (3, 5)}
DECAYS = ("exp_decay", "gauss_decay", "linear_decay")
BOOST_DEPTH = 200  # the ranking's top a boost reorders, at least (HYBRID's candidates, or the page's end, when more)


@dataclass(frozen=True)
class CheckedBoost:
    expr: ast.Expr  # its parameters bound: literals in their place
    fields: tuple[str, ...]  # the declared fields it reads
    text: str  # as EXPLAIN shows it
    depth: int


def check_boost(c: Any, node: ast.Select, info: CollectionInfo, unknown_field: Callable[[str, CollectionInfo], str],
                depth: int) -> CheckedBoost | None:
    """The boost a search's ORDER BY asks for, or None without one; `depth` is the ranking's
    depth the search computes anyway (the page's end, HYBRID's candidates)."""
    if not node.order_by:
        return None
    first = node.order_by[0]
    if len(node.order_by) > 1:
        raise c.error("a search orders by one expression of its score: combine the terms into it", node.order_by[1].pos)
    if first.explicit and not first.descending:
        raise c.error("a search ranks its best rows first: ORDER BY <expression> orders by it highest first; leave out ASC", first.pos)
    if node.diversify is not None:
        raise c.error("ORDER BY does not go with DIVERSIFY: the selection sets the order", first.pos)
    expr = first.column
    if isinstance(expr, str):
        expr = ast.Column(expr, first.pos)
    elif isinstance(expr, int):
        raise c.error(f"ORDER BY {expr}: a search's rows order by an expression of score and fields, not a position", first.pos)
    types = {f.name: FIELD_TYPES.get(f.type, f.type) for f in info.fields}
    fields: list[str] = []
    bound, kind = _check(c, expr, types, fields, info, unknown_field)
    if kind != "number":
        raise c.error(f"ORDER BY needs a number; this expression is a {kind}", first.pos)
    return CheckedBoost(bound, tuple(dict.fromkeys(fields)), render(bound), max(depth, BOOST_DEPTH))


def _check(c: Any, node: ast.Expr, types: dict[str, str], fields: list[str], info: CollectionInfo,
           unknown_field: Callable[[str, CollectionInfo], str]) -> tuple[ast.Expr, str]:
    """The node with its parameters bound, and its kind: number, date or text."""
    if isinstance(node, ast.Param):
        return _check(c, ast.Literal(c.param(node), node.pos), types, fields, info, unknown_field)
    if isinstance(node, ast.Literal):
        value = node.value
        if isinstance(value, bool) or value is None:
            raise c.error(f"ORDER BY computes with numbers; {value!r} is not one", node.pos)
        if isinstance(value, (int, float)):
            return node, "number"
        if isinstance(value, (dt.date, dt.datetime)):
            return node, "date"
        if isinstance(value, str):
            return node, "text"
        raise c.error(f"ORDER BY computes with numbers; got {type(value).__name__}", node.pos)
    if isinstance(node, ast.Column):
        name = node.name.lower()
        if name == "score":
            return ast.Column("score", node.pos), "number"
        if name not in types:
            raise c.error(unknown_field(node.name, info) + "; ORDER BY reads score and declared number or date fields", node.pos)
        fields.append(name)
        if types[name] in NUMERIC_TYPES:
            return ast.Column(name, node.pos), "number"
        if types[name] in DATE_TYPES:
            return ast.Column(name, node.pos), "date"
        raise c.error(f"ORDER BY reads numbers and dates; {name!r} is {types[name]}", node.pos)
    if isinstance(node, ast.Negate):
        item, kind = _check(c, node.item, types, fields, info, unknown_field)
        _number(c, kind, node.item, "-")
        return ast.Negate(item, node.pos), "number"
    if isinstance(node, ast.Arith):
        left, lk = _check(c, node.left, types, fields, info, unknown_field)
        right, rk = _check(c, node.right, types, fields, info, unknown_field)
        _number(c, lk, node.left, node.op)
        _number(c, rk, node.right, node.op)
        return ast.Arith(node.op, left, right, node.pos), "number"
    return _function(c, node, types, fields, info, unknown_field)


def _number(c: Any, kind: str, node: ast.Expr, where: str) -> None:
    if kind == "date":
        raise c.error(f"{where} takes numbers; a date enters a boost through exp_decay, gauss_decay or linear_decay(field, origin, scale)", node.pos)
    if kind != "number":
        raise c.error(f"{where} takes numbers, not text", node.pos)


def _function(c: Any, node: ast.Function, types: dict[str, str], fields: list[str], info: CollectionInfo,
              unknown_field: Callable[[str, CollectionInfo], str]) -> tuple[ast.Expr, str]:
    if node.name not in FUNCTIONS:
        raise c.error(f"unknown function {node.name}(...) in ORDER BY; known: {', '.join(FUNCTIONS)}", node.pos)
    low, high = FUNCTIONS[node.name]
    if not low <= len(node.args) <= high:
        count = str(low) if low == high else f"{low} to {high}"
        raise c.error(f"{node.name}(...) takes {count} arguments, got {len(node.args)}", node.pos)
    if node.name == "now":
        return node, "date"
    checked = [_check(c, a, types, fields, info, unknown_field) for a in node.args]
    args = tuple(a for a, _ in checked)
    if node.name not in DECAYS:
        for (_, kind), original in zip(checked, node.args):
            _number(c, kind, original, f"{node.name}(...)")
        return ast.Function(node.name, args, node.pos), "number"
    (value, kind), (origin, origin_kind) = checked[0], checked[1]
    if kind == "date":
        origin = _date_origin(c, origin, origin_kind, node.args[1])
    else:
        _number(c, kind, node.args[0], f"{node.name}(...)")
        _number(c, origin_kind, node.args[1], f"{node.name}'s origin")
    for (arg, kind), original, what in zip(checked[2:], node.args[2:], ("scale", "offset", "decay")):
        _number(c, kind, original, f"{node.name}'s {what}")
        if isinstance(arg, ast.Literal):
            v = arg.value
            if (what == "scale" and not v > 0) or (what == "offset" and v < 0) or (what == "decay" and not 0 < v < 1):
                rule = {"scale": "above 0", "offset": "0 or more", "decay": "between 0 and 1 (exclusive)"}[what]
                raise c.error(f"{node.name}'s {what} must be {rule}, got {v!r}", original.pos)
    return ast.Function(node.name, (value, origin, *args[2:]), node.pos), "number"


def _date_origin(c: Any, origin: ast.Expr, kind: str, written: ast.Expr) -> ast.Expr:
    """A date field's origin: now(), a date or timestamp, or text in ISO form."""
    if kind == "date":
        return origin
    if kind == "text":
        text = origin.value.strip()
        try:
            value = dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text)
        except ValueError:
            raise c.error(f"a date field's origin is a date ('2024-01-31'), a timestamp or now(), got {origin.value!r}", written.pos) from None
        return replace(origin, value=value)
    raise c.error("a date field's origin is a date ('2024-01-31'), a timestamp or now(), not a number", written.pos)


def render(node: ast.Expr) -> str:
    """The expression as text, fully parenthesised where it nests."""
    if isinstance(node, ast.Literal):
        return repr(node.value.isoformat()) if isinstance(node.value, (dt.date, dt.datetime)) else repr(node.value)
    if isinstance(node, ast.Column):
        return node.name
    if isinstance(node, ast.Negate):
        return f"-{_nested(node.item)}"
    if isinstance(node, ast.Arith):
        return f"{_nested(node.left)} {node.op} {_nested(node.right)}"
    return f"{node.name}({', '.join(render(a) for a in node.args)})"


def _nested(node: ast.Expr) -> str:
    return f"({render(node)})" if isinstance(node, (ast.Arith, ast.Negate)) else render(node)
