"""A SQLAlchemy WHERE clause over a mapped collection -> the dialect's WHERE text.

The dialect's checker and compiler then handle it exactly as if it had been written by hand, so
the ORM and the dialect cannot disagree on what a filter means. Values travel as `:w<n>`
parameters, never as text. Constructs the dialect has no form for (subqueries, functions, other
tables, arithmetic) are refused with the construct named.
"""

from __future__ import annotations

from sqlalchemy import Column
from sqlalchemy.dialects.postgresql.json import ASTEXT, JSONPathType
from sqlalchemy.sql import elements, operators
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.schema import Table

from sparsesql.errors import CheckError

_COMPARE = {
    operators.eq: "=",
    operators.ne: "!=",
    operators.lt: "<",
    operators.le: "<=",
    operators.gt: ">",
    operators.ge: ">=",
}
_LIKE = {
    operators.like_op: "LIKE",
    operators.ilike_op: "ILIKE",
    operators.not_like_op: "NOT LIKE",
    operators.not_ilike_op: "NOT ILIKE",
}
_CASTS = {"INTEGER": "int", "BIGINT": "bigint", "TEXT": "text", "VARCHAR": "text", "FLOAT": "float",
          "DOUBLE_PRECISION": "float", "DOUBLE PRECISION": "float", "REAL": "real", "NUMERIC": "numeric",
          "BOOLEAN": "bool", "DATE": "date", "TIMESTAMP": "timestamp", "DATETIME": "timestamp"}


class WhereText:
    """Renders one clause; `params` collects the bound values."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.params: dict[str, object] = {}

    def bind(self, value: object) -> str:
        name = f"w{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def predicate(self, node: ClauseElement) -> str:
        if isinstance(node, elements.Grouping):
            return self.predicate(node.element)
        if isinstance(node, elements.BooleanClauseList):
            joiner = {operators.and_: " AND ", operators.or_: " OR "}.get(node.operator)
            if joiner is None:
                raise CheckError(f"cannot express {node} in a search's WHERE")
            return "(" + joiner.join(self.predicate(c) for c in node.clauses) + ")"
        if isinstance(node, elements.UnaryExpression) and node.operator is operators.inv:
            return f"(NOT {self.predicate(node.element)})"
        if isinstance(node, (elements.True_, elements.False_)):
            return "TRUE = TRUE" if isinstance(node, elements.True_) else "TRUE = FALSE"
        if isinstance(node, Column) or isinstance(node, elements.ColumnClause):
            return f"({self.operand(node)} = TRUE)"
        if isinstance(node, elements.BinaryExpression):
            return self.binary(node)
        raise CheckError(f"cannot express {type(node).__name__} ({node}) in a search's WHERE")

    def binary(self, node: elements.BinaryExpression) -> str:
        op = node.operator
        if op in _COMPARE:
            return f"({self.operand(node.left)} {_COMPARE[op]} {self.operand(node.right)})"
        if op in _LIKE:
            if node.modifiers.get("escape"):
                raise CheckError("LIKE ... ESCAPE is not supported in a search's WHERE")
            return f"({self.operand(node.left)} {_LIKE[op]} {self.operand(node.right)})"
        if op in (operators.is_, operators.is_not):
            if not isinstance(node.right, elements.Null):
                raise CheckError("IS / IS NOT compare with NULL only in a search's WHERE")
            return f"({self.operand(node.left)} IS {'NOT ' if op is operators.is_not else ''}NULL)"
        if op in (operators.in_op, operators.not_in_op):
            values = node.right.value if isinstance(node.right, elements.BindParameter) else None
            if not isinstance(values, (list, tuple)) or not values:
                raise CheckError("IN needs a non-empty list of values in a search's WHERE")
            items = ", ".join(self.bind(v) for v in values)
            return f"({self.operand(node.left)} {'NOT ' if op is operators.not_in_op else ''}IN ({items}))"
        raise CheckError(f"operator {getattr(op, '__name__', op)} is not supported in a search's WHERE ({node})")

    def operand(self, node: ClauseElement) -> str:
        if isinstance(node, elements.Grouping):
            return self.operand(node.element)
        if isinstance(node, elements.BindParameter):
            if isinstance(node.type, JSONPathType):
                raise CheckError("JSON path arrays (#>) are not supported; chain keys: meta['a']['b'].astext")
            return self.bind(node.effective_value)
        if isinstance(node, elements.Null):
            return "NULL"
        if isinstance(node, elements.Cast):
            target = _CASTS.get(type(node.type).__name__.upper()) or _CASTS.get(str(node.type).upper())
            if target is None:
                raise CheckError(f"cast to {node.type} is not supported in a search's WHERE")
            return f"({self.operand(node.clause)})::{target}"
        if isinstance(node, elements.BinaryExpression) and (node.operator is ASTEXT or _is_getitem(node)):
            return self.json_path(node)
        if isinstance(node, Column) or isinstance(node, elements.ColumnClause):
            if getattr(node, "table", None) is not self.table:
                raise CheckError(f"column {node} is not a field of this collection")
            return '"' + node.name.replace('"', '""') + '"'
        raise CheckError(f"cannot express {type(node).__name__} ({node}) in a search's WHERE")

    def json_path(self, node: elements.BinaryExpression) -> str:
        keys: list[tuple[str, object]] = []
        arrow = "->>" if node.operator is ASTEXT else "->"
        while isinstance(node, elements.BinaryExpression) and (node.operator is ASTEXT or _is_getitem(node)):
            key = node.right.effective_value if isinstance(node.right, elements.BindParameter) else None
            if not isinstance(key, str):
                raise CheckError("metadata keys must be strings in a search's WHERE")
            keys.append((arrow, key))
            arrow = "->"
            node = node.left
        column = self.operand(node)
        path = "".join(f" {a} '" + k.replace("'", "''") + "'" for a, k in reversed(keys))
        return column + path


def _is_getitem(node: elements.BinaryExpression) -> bool:
    return node.operator is operators.json_getitem_op


def where_text(table: Table, clause: ClauseElement | None) -> tuple[str, dict[str, object]]:
    """(dialect text, parameters) of a WHERE clause; ("", {}) when there is none."""
    if clause is None:
        return "", {}
    render = WhereText(table)
    return render.predicate(clause), render.params
