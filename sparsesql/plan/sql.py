"""WHERE -> SQL. Identifiers are checked against the catalog and quoted; every value, metadata
keys included, travels as a bound parameter, so nothing a user writes is pasted into SQL text.

Columns are qualified by the documents table's alias `d`, so the same filter drops into the
sparse, dense and plain statements alike.
"""

from __future__ import annotations


from psycopg import sql
from psycopg.types.json import Jsonb

from sparsesql.db.catalog import CollectionInfo
from sparsesql.lang import ast
from sparsesql.lang.check_where import CAST_TYPES

# ->> text compared with a number or boolean: values that are not one become NULL (and so match
# nothing) instead of failing the whole query on the first document whose value is a word.
_JSON_CASTS = {
    "number": "(CASE WHEN {e} ~ '^\\s*[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?\\s*$' THEN ({e})::numeric END)",
    "bool": "(CASE WHEN lower({e}) IN ('true', 'false') THEN ({e})::boolean END)",
}


class _Compiler:
    def __init__(self, info: CollectionInfo, params: dict, kinds: dict[ast.Operand, str]) -> None:
        self.info = info
        self.params = params
        self.kinds = kinds
        self.bound: dict[str, object] = {}

    def bind(self, value: object) -> sql.Placeholder:
        name = f"w{len(self.bound)}"
        self.bound[name] = value
        return sql.Placeholder(name)

    def operand(self, op: ast.Operand, other_kind: str | None = None) -> sql.Composable:
        if isinstance(op, ast.Column):
            return sql.SQL("d.{}").format(sql.Identifier(op.name.lower()))
        if isinstance(op, ast.JsonPath):
            expr: sql.Composable = self.operand(op.column)
            for i, key in enumerate(op.keys):
                arrow = "->>" if op.as_text and i == len(op.keys) - 1 else "->"
                expr = sql.SQL("({} {} {})").format(expr, sql.SQL(arrow), self.bind(key))
            if op.as_text and other_kind in _JSON_CASTS:
                expr = sql.SQL(_JSON_CASTS[other_kind]).format(e=expr)
            return expr
        if isinstance(op, ast.Cast):
            return sql.SQL("({})::{}").format(self.operand(op.expr), sql.SQL(CAST_TYPES[op.type_name.lower()]))
        value = self.params[op.name] if isinstance(op, ast.Param) else op.value
        if other_kind == "jsonb":
            return sql.SQL("{}::jsonb").format(self.bind(Jsonb(value)))
        return self.bind(value)

    def pair(self, left: ast.Operand, right: ast.Operand) -> tuple[sql.Composable, sql.Composable]:
        return self.operand(left, self.kinds[right]), self.operand(right, self.kinds[left])

    def predicate(self, node: ast.Predicate) -> sql.Composable:
        if isinstance(node, ast.And):
            return sql.SQL("({})").format(sql.SQL(" AND ").join(self.predicate(i) for i in node.items))
        if isinstance(node, ast.Or):
            return sql.SQL("({})").format(sql.SQL(" OR ").join(self.predicate(i) for i in node.items))
        if isinstance(node, ast.Not):
            return sql.SQL("(NOT {})").format(self.predicate(node.item))
        if isinstance(node, ast.IsNull):
            return sql.SQL("({} IS {}NULL)").format(self.operand(node.expr), sql.SQL("NOT " if node.negated else ""))
        if isinstance(node, ast.Compare):
            left, right = self.pair(node.left, node.right)
            op = "<>" if node.op == "!=" else node.op
            return sql.SQL("({} {} {})").format(left, sql.SQL(op), right)
        if isinstance(node, ast.InList):
            expr = self.operand(node.expr, self.kinds[node.items[0]] if node.items else None)
            items = sql.SQL(", ").join(self.operand(i, self.kinds[node.expr]) for i in node.items)
            return sql.SQL("({} {}IN ({}))").format(expr, sql.SQL("NOT " if node.negated else ""), items)
        left, right = self.pair(node.expr, node.pattern)
        verb = ("NOT " if node.negated else "") + ("ILIKE" if node.case_insensitive else "LIKE")
        return sql.SQL("({} {} {})").format(left, sql.SQL(verb), right)


def where_sql(info: CollectionInfo, where: ast.Predicate | None, params: dict, kinds: dict[ast.Operand, str]) -> tuple[sql.Composable, dict]:
    """The filter as SQL over alias `d` with its bound values (named w0, w1, ...); `kinds` is each
    operand's kind as the checker found it (check_where.py)."""
    if where is None:
        return sql.SQL("TRUE"), {}
    compiler = _Compiler(info, params, kinds)
    return compiler.predicate(where), compiler.bound


def columns_sql(columns: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("d.{}").format(sql.Identifier(c)) for c in columns) if columns else sql.SQL("")


def rows_by_ids_sql(info: CollectionInfo, columns: tuple[str, ...]) -> sql.Composed:
    """Fetch the selected columns of the final documents in one round trip (binds %(ids)s)."""
    cols = columns_sql(("doc_id", *columns))
    return sql.SQL("SELECT {} FROM {} AS d WHERE d.doc_id = ANY(%(ids)s)").format(cols, info.table("docs"))


def ranked_rows_sql(info: CollectionInfo, candidates: sql.Composable, columns: tuple[str, ...]) -> sql.Composed:
    """Single-signal search: candidates and their columns in one statement."""
    cols = columns_sql(("doc_id", *columns))
    return sql.SQL(
        "WITH ranked AS ({}) SELECT {}, ranked.score FROM ranked JOIN {} AS d ON d.doc_id = ranked.doc_id "
        "ORDER BY ranked.score DESC, d.doc_id"
    ).format(candidates, cols, info.table("docs"))


def filter_ids_sql(info: CollectionInfo, where: sql.Composable) -> sql.Composed:
    """The doc ids a search's filter keeps, for the memory tier (read once, in the search's snapshot)."""
    return sql.SQL("SELECT d.doc_id FROM {} AS d WHERE {}").format(info.table("docs"), where)


def filtered_rows_sql(info: CollectionInfo, where: sql.Composable, columns: tuple[str, ...]) -> sql.Composed:
    """SELECT without SEARCH: matching documents in insertion order (binds %(limit)s)."""
    cols = columns_sql(("doc_id", *columns))
    return sql.SQL("SELECT {} FROM {} AS d WHERE {} ORDER BY d.doc_id LIMIT %(limit)s").format(
        cols, info.table("docs"), where
    )


