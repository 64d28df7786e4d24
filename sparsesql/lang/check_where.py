"""Checking a WHERE: every operand's kind (a field's type, a metadata path, a cast, a value), and
comparisons only between kinds PostgreSQL compares."""

from __future__ import annotations

import datetime as dt
import math

from sparsesql.db.catalog import CollectionInfo, NUMERIC_TYPES
from sparsesql.errors import ParameterError
from sparsesql.lang import ast
from sparsesql.lang.check_core import Checker, unknown_field


def type_kind(pg_type: str) -> str:
    """How a PostgreSQL type compares: number, bool, date, text or jsonb."""
    if pg_type in NUMERIC_TYPES:
        return "number"
    return {"boolean": "bool", "date": "date", "timestamp": "date", "timestamptz": "date"}.get(pg_type, pg_type)


def operand_kind(op: ast.Operand, info: CollectionInfo, params: dict) -> str:
    """The comparison kind of an operand: text, number, bool, date, jsontext, jsonb or null."""
    if isinstance(op, ast.Column):
        return type_kind(info.field_type(op.name.lower()) or "text")
    if isinstance(op, ast.JsonPath):
        return "jsontext" if op.as_text else "jsonb"
    if isinstance(op, ast.Cast):
        return type_kind(CAST_TYPES[op.type_name.lower()])
    value = params.get(op.name) if isinstance(op, ast.Param) else op.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (dt.date, dt.datetime)):
        return "date"
    return "text"


CAST_TYPES = {
    "text": "text",
    "int": "integer",
    "integer": "integer",
    "bigint": "bigint",
    "float": "double precision",
    "double": "double precision",
    "double precision": "double precision",
    "real": "real",
    "numeric": "numeric",
    "bool": "boolean",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
}


_COMPATIBLE = {
    ("text", "text"), ("number", "number"), ("bool", "bool"), ("date", "date"), ("date", "text"),
    ("jsontext", "text"), ("jsontext", "number"), ("jsontext", "bool"), ("jsontext", "jsontext"),
    ("jsonb", "text"), ("jsonb", "number"), ("jsonb", "bool"), ("jsonb", "jsonb"),
}


def _compatible(a: str, b: str) -> bool:
    return (a, b) in _COMPATIBLE or (b, a) in _COMPATIBLE


def operand(c: Checker, op: ast.Operand, info: CollectionInfo) -> None:
    """Check one operand and note its kind on the checker (`c.kinds`), where the SQL compiler
    reads it rather than working it out again."""
    _check_operand(c, op, info)
    c.kinds[op] = operand_kind(op, info, c.params)


def _check_operand(c: Checker, op: ast.Operand, info: CollectionInfo) -> None:
    if isinstance(op, ast.Column):
        if info.field_type(op.name.lower()) is None:
            raise c.error(unknown_field(op.name, info), op.pos)
    elif isinstance(op, ast.JsonPath):
        operand(c, op.column, info)
        if info.field_type(op.column.name.lower()) != "jsonb":
            raise c.error(f"-> and ->> apply to metadata, not to {op.column.name!r}", op.pos)
        for key in op.keys:
            c.valid_text(key, op.pos, "metadata key")
    elif isinstance(op, ast.Cast):
        if op.type_name.lower() not in CAST_TYPES:
            raise c.error(f"cannot cast to {op.type_name!r}; known: {', '.join(sorted(CAST_TYPES))}", op.pos)
        operand(c, op.expr, info)
    elif isinstance(op, ast.Param):
        value = c.param(op)
        if not (value is None or isinstance(value, (str, int, float, bool, dt.date, dt.datetime))):
            raise c.error(f"parameter {op.written} must be a scalar here, got {type(value).__name__}", op.pos, ParameterError)
        if isinstance(value, float) and not math.isfinite(value):
            raise c.error(f"parameter {op.written} is {value}; comparisons need a finite number", op.pos, ParameterError)
        if isinstance(value, str):
            c.valid_text(value, op.pos, f"parameter {op.written}")
    elif isinstance(op, ast.Literal) and isinstance(op.value, str):
        c.valid_text(op.value, op.pos, "string literal")


def check_predicate(c: Checker, node: ast.Predicate, info: CollectionInfo) -> None:
    if isinstance(node, (ast.And, ast.Or)):
        for item in node.items:
            check_predicate(c, item, info)
    elif isinstance(node, ast.Not):
        check_predicate(c, node.item, info)
    elif isinstance(node, ast.IsNull):
        operand(c, node.expr, info)
    elif isinstance(node, ast.Compare):
        operand(c, node.left, info)
        operand(c, node.right, info)
        left, right = c.kinds[node.left], c.kinds[node.right]
        if "null" in (left, right):
            raise c.error(f"comparing with NULL is never true; write IS {'NOT ' if node.op in ('!=', '<>') else ''}NULL", node.pos)
        if not _compatible(left, right):
            raise c.error(f"cannot compare {left} with {right}", node.pos)
    elif isinstance(node, ast.InList):
        operand(c, node.expr, info)
        left = c.kinds[node.expr]
        kinds = {operand_kind(item, info, c.params) for item in node.items}
        if left in ("jsontext", "jsonb") and len(kinds) > 1:
            raise c.error(f"IN list mixes {' and '.join(sorted(kinds))}; a JSON value compares with one kind", node.pos)
        for item in node.items:
            operand(c, item, info)
            right = c.kinds[item]
            if right == "null" or not _compatible(left, right):
                raise c.error(f"IN list item of kind {right} does not match {left}", item.pos)
    elif isinstance(node, ast.Like):
        operand(c, node.expr, info)
        operand(c, node.pattern, info)
        for side in (node.expr, node.pattern):
            if c.kinds[side] not in ("text", "jsontext"):
                raise c.error("LIKE and ILIKE compare text", side.pos)
