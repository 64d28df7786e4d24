"""Parse tree -> `ast` dataclasses: one method per rule or alias of grammar/sparsesql.lark.

Terminals become values here too (strings unescaped, numbers typed, numbers and names held to
PostgreSQL's bigint, double precision and 63-byte limits), so every rule method
receives finished AST values and only has to assemble its node with the position lark recorded.
Flag rules (`if_exists`, `[NOT]`, `[ANALYZE]`) need no method: present means not None.
"""

from __future__ import annotations

import math
from typing import Any

from lark import Token, Transformer, v_args
from lark.tree import Meta

from sparsesql.errors import QuerySyntaxError
from sparsesql.lang import ast

BIGINT = 2**63  # PostgreSQL's int8 holds -BIGINT to BIGINT - 1
MAX_NAME_BYTES = 63  # PostgreSQL's identifier limit (NAMEDATALEN - 1)


def _pos(where: Meta | Token) -> ast.Pos:
    return ast.Pos(where.line, where.column)


def _shown(text: str, width: int = 24) -> str:
    """A number's text short enough for a message: its start and how many characters it has."""
    return text if len(text) <= width else f"{text[:20]}… ({len(text)} characters)"


@v_args(meta=True)
class ToAst(Transformer):
    """Build the statement of one parse; `query` is the text, for errors that quote it."""

    def __init__(self, query: str) -> None:
        super().__init__()
        self._query = query

    # ------------------------------------------------------------------------- terminals

    def STRING(self, token: Token) -> ast.Literal:
        return ast.Literal(token.value[1:-1].replace("''", "'"), _pos(token))

    def SIGNED_NUMBER(self, token: Token) -> ast.Literal:
        """A whole number is a bigint, any other a double precision, as PostgreSQL's int8 and
        float8 read them; one beyond that range is refused where it was written rather than held
        as a longer integer, or rounded to infinity or to zero, that no later stage expects."""
        text = token.value
        digits = text.lstrip("+-")
        if digits.isdigit():
            # sized by its digits first: int() refuses text of more than 4,300 digits
            if len(digits.lstrip("0")) > len(str(BIGINT)) or not -BIGINT <= int(text) < BIGINT:
                raise self._error(
                    f"integer {_shown(text)} does not fit in 64 bits (bigint holds {-BIGINT} to {BIGINT - 1})", token
                )
            value: int | float = int(text)
        else:
            value = float(text)
            mantissa = digits.lower().partition("e")[0]
            if math.isinf(value) or (value == 0 and mantissa.strip("0.")):
                raise self._error(f"number {_shown(text)} is out of range for double precision", token)
        return ast.Literal(value, _pos(token))

    def _error(self, message: str, token: Token | Meta) -> QuerySyntaxError:
        return QuerySyntaxError(message, line=token.line, column=token.column, query=self._query)

    def TRUE(self, token: Token) -> ast.Literal:
        return ast.Literal(True, _pos(token))

    def FALSE(self, token: Token) -> ast.Literal:
        return ast.Literal(False, _pos(token))

    def NULL(self, token: Token) -> ast.Literal:
        return ast.Literal(None, _pos(token))

    def PARAM(self, token: Token) -> ast.Param:
        return ast.Param(token.value[1:], _pos(token))

    def NAME(self, token: Token) -> Token:
        return self._name(token)

    def QUOTED_NAME(self, token: Token) -> Token:
        return self._name(token.update(value=token.value[1:-1].replace('""', '"')))

    def _name(self, token: Token) -> Token:
        """Refuse a name over PostgreSQL's 63 bytes where it is written: PostgreSQL would cut it
        short, and two long names cut to one could meet; sparsesql never truncates a name
        (collections and fields stop at 48 characters, docs/decisions.md)."""
        size = len(token.value.encode("utf-8", "surrogatepass"))
        if size > MAX_NAME_BYTES:
            shown = token.value if len(token.value) <= 20 else f"{token.value[:20]}…"
            raise self._error(f'name "{shown}" is {size} bytes long; names hold at most {MAX_NAME_BYTES} bytes', token)
        return token

    # ------------------------------------------------------------------------- statements

    def select(self, meta: Meta, children: list[Any]) -> ast.Select:
        distinct, items, collection, search, prf, rerank, diversify, where, group_by, order_by, *pages = children
        page: dict[str, ast.Literal | ast.Param] = {}
        for clause, value, keyword in pages:
            if clause in page:
                raise self._error(f"{clause.upper()} is given twice", keyword)
            if {clause, *page} >= {"offset", "after"}:
                raise self._error("OFFSET and AFTER both say where the page starts; give one", keyword)
            page[clause] = value
        # the search's own text: from the collection's name to GROUP BY or the first page clause (a
        # search's ORDER BY, a boost, is part of its ranking; a facet's comes after its GROUP BY)
        ends = [group_by[1]] if group_by is not None else []
        ends += [p[2].start_pos for p in pages]
        span = (collection.start_pos, min(ends) if ends else meta.end_pos)
        return ast.Select(
            items, ast.Name(collection.value, _pos(collection)), search, where, page.get("limit"), _pos(meta), prf, diversify,
            page.get("offset"), page.get("after"), span, distinct, group_by[0] if group_by else None, order_by[0] if order_by else (),
            rerank,
        )

    def rerank(self, meta: Meta, children: list[Any]) -> ast.Rerank:
        return ast.Rerank(tuple(a for a in children if a is not None), _pos(meta))

    def group_by(self, meta: Meta, children: list[Any]) -> tuple[ast.Name | ast.Literal, int]:
        (key,) = children
        return (key if isinstance(key, ast.Literal) else ast.Name(key.value, _pos(key))), meta.start_pos

    def order_by(self, meta: Meta, items: list[ast.OrderItem]) -> tuple[tuple[ast.OrderItem, ...], int]:
        return tuple(items), meta.start_pos

    def order_item(self, meta: Meta, children: list[Any]) -> ast.OrderItem:
        key, direction = children
        if isinstance(key, ast.Column):
            column = key.name.lower()
        elif isinstance(key, ast.Literal) and isinstance(key.value, int) and not isinstance(key.value, bool):
            column = key.value
        else:
            column = key
        return ast.OrderItem(column, direction is not None and direction.upper() == "DESC", _pos(meta), direction is not None)

    def add(self, meta: Meta, children: list[Any]) -> ast.Arith:
        return ast.Arith("+", children[0], children[1], _pos(meta))

    def subtract(self, meta: Meta, children: list[Any]) -> ast.Arith:
        return ast.Arith("-", children[0], children[1], _pos(meta))

    def multiply(self, meta: Meta, children: list[Any]) -> ast.Arith:
        return ast.Arith("*", children[0], children[1], _pos(meta))

    def divide(self, meta: Meta, children: list[Any]) -> ast.Arith:
        return ast.Arith("/", children[0], children[1], _pos(meta))

    def raise_to(self, meta: Meta, children: list[Any]) -> ast.Arith:
        return ast.Arith("^", children[0], children[1], _pos(meta))

    def negate(self, meta: Meta, children: list[Any]) -> ast.Negate:
        return ast.Negate(children[0], _pos(meta))

    def function(self, meta: Meta, children: list[Any]) -> ast.Function:
        name, *args = children
        return ast.Function(name.value.lower(), tuple(a for a in args if a is not None), _pos(meta))

    def star(self, meta: Meta, children: list[Any]) -> str:
        return "*"

    def distinct_on(self, meta: Meta, children: list[Token]) -> ast.Name:
        _, field = children
        return ast.Name(field.value, _pos(field))

    def limit_clause(self, meta: Meta, children: list[Any]) -> tuple[str, Any, Meta]:
        return "limit", children[0], meta

    def offset_clause(self, meta: Meta, children: list[Any]) -> tuple[str, Any, Meta]:
        return "offset", children[0], meta

    def after_clause(self, meta: Meta, children: list[Any]) -> tuple[str, Any, Meta]:
        return "after", children[0], meta

    def prf(self, meta: Meta, args: list[ast.Arg]) -> ast.Prf:
        return ast.Prf(tuple(args), _pos(meta))

    def diversify(self, meta: Meta, children: list[Any]) -> ast.Diversify:
        method, *args = children
        return ast.Diversify(method.value, tuple(args), _pos(method))

    def select_items(self, meta: Meta, items: list[Any]) -> tuple[ast.SelectItem | ast.Highlight | ast.Aggregate | ast.Bucket, ...]:
        return tuple(ast.SelectItem(item.value, _pos(item)) if isinstance(item, Token) else item for item in items)

    def select_call(self, meta: Meta, children: list[Any]) -> ast.Highlight | ast.Aggregate | ast.Bucket:
        function, *items = children
        items = [i for i in items if i is not None]
        name = function.value.lower()
        fields = [i for i in items if isinstance(i, Token)]
        named = [i for i in items if isinstance(i, ast.Arg)]
        values = [i for i in items if isinstance(i, ast.Literal)]
        shape = [("field" if isinstance(i, Token) else "*" if i == "*" else "arg" if isinstance(i, ast.Arg) else "value") for i in items]
        if name == "highlight" and shape[:1] == ["field"] and all(k == "arg" for k in shape[1:]):
            return ast.Highlight(fields[0].value, tuple(named), _pos(meta))
        if name == "count" and shape == ["*"]:
            return ast.Aggregate("count", None, _pos(meta))
        if name in ("count", "min", "max", "avg", "sum") and shape == ["field"]:
            return ast.Aggregate(name, fields[0].value, _pos(meta))
        if name == "width_bucket" and shape == ["field", "value", "value", "value"]:
            return ast.Bucket(name, fields[0].value, tuple(values), _pos(meta))
        if name == "date_trunc" and shape == ["value", "field"]:
            return ast.Bucket(name, fields[0].value, tuple(values), _pos(meta))
        usage = {
            "highlight": "HIGHLIGHT(field, name => value, ...)",
            "count": "count(*) or count(field)",
            "width_bucket": "width_bucket(field, low, high, buckets)",
            "date_trunc": "date_trunc('unit', field)",
        }.get(name, f"{name}(field)" if name in ("min", "max", "avg", "sum") else None)
        if usage is None:
            raise self._error(
                f"{function.value}(...) is not a function of the select list; it takes columns, HIGHLIGHT(field, ...), "
                "and with GROUP BY count(*), count, min, max, avg, sum(field), width_bucket and date_trunc",
                function,
            )
        raise self._error(f"{function.value}(...) is written {usage}", function)

    def explain(self, meta: Meta, children: list[Any]) -> ast.Explain:
        analyze, select = children
        return ast.Explain(select, analyze is not None, _pos(meta))

    def create_collection(self, meta: Meta, children: list[Any]) -> ast.CreateCollection:
        if_not_exists, name, fields, options = children
        return ast.CreateCollection(
            ast.Name(name.value, _pos(name)), fields, options or (), if_not_exists is not None, _pos(meta)
        )

    def field_list(self, meta: Meta, fields: list[ast.FieldDef]) -> tuple[ast.FieldDef, ...]:
        return tuple(fields)

    def field_def(self, meta: Meta, children: list[Any]) -> ast.FieldDef:
        name, type_name = children
        return ast.FieldDef(name.value, type_name, _pos(meta))

    def type_name(self, meta: Meta, words: list[Token]) -> str:
        return " ".join(word.value.lower() for word in words)

    def options(self, meta: Meta, args: list[ast.Arg]) -> tuple[ast.Arg, ...]:
        return tuple(args)

    def drop_collection(self, meta: Meta, children: list[Any]) -> ast.DropCollection:
        if_exists, name = children
        return ast.DropCollection(ast.Name(name.value, _pos(name)), if_exists is not None, _pos(meta))

    def show_collections(self, meta: Meta, children: list[Any]) -> ast.ShowCollections:
        return ast.ShowCollections(_pos(meta))

    def build_graph(self, meta: Meta, children: list[Any]) -> ast.BuildGraph:
        name, options = children
        return ast.BuildGraph(ast.Name(name.value, _pos(name)), options or (), _pos(meta))

    def show_graph(self, meta: Meta, children: list[Any]) -> ast.ShowGraph:
        (name,) = children
        return ast.ShowGraph(ast.Name(name.value, _pos(name)), _pos(meta))

    def set_option(self, meta: Meta, children: list[Any]) -> ast.SetOption:
        name, value = children
        if isinstance(value, Token):
            value = ast.Name(value.value, _pos(value))
        return ast.SetOption(ast.Name(name.value, _pos(name)), value, _pos(meta))

    def insert(self, meta: Meta, children: list[Any]) -> ast.Insert:
        collection, columns, *rows = children
        return ast.Insert(ast.Name(collection.value, _pos(collection)), columns, tuple(rows), _pos(meta))

    def insert_columns(self, meta: Meta, names: list[Token]) -> tuple[ast.Name, ...]:
        return tuple(ast.Name(name.value, _pos(name)) for name in names)

    def insert_row(self, meta: Meta, values: list[ast.Literal | ast.Param]) -> ast.InsertRow:
        return ast.InsertRow(tuple(values), _pos(meta))

    def delete(self, meta: Meta, children: list[Any]) -> ast.Delete:
        collection, where = children
        return ast.Delete(ast.Name(collection.value, _pos(collection)), where, _pos(meta))

    # ------------------------------------------------------------------------- search

    def sparse(self, meta: Meta, children: list[Any]) -> ast.Sparse:
        query, *args = children
        return ast.Sparse(query, tuple(args), _pos(meta))

    def dense(self, meta: Meta, children: list[Any]) -> ast.Dense:
        query, *args = children
        return ast.Dense(query, tuple(args), _pos(meta))

    def more_like(self, meta: Meta, children: list[Any]) -> ast.MoreLike:
        lists = [c for c in children if isinstance(c, tuple)]  # the keywords' tokens, and None for no UNLIKE, left out
        return ast.MoreLike(lists[0], lists[1] if len(lists) > 1 else (), _pos(meta))

    def like_ids(self, meta: Meta, children: list[Any]) -> tuple:
        return tuple(children)

    def hybrid(self, meta: Meta, children: list[Any]) -> ast.Hybrid:
        inputs = tuple(child for child in children if not isinstance(child, ast.Arg))
        args = tuple(child for child in children if isinstance(child, ast.Arg))
        return ast.Hybrid(inputs, args, _pos(meta))

    # ------------------------------------------------------------------------- named arguments

    def arg(self, meta: Meta, children: list[Any]) -> ast.Arg:
        name, value = children
        return ast.Arg(name.value, value, _pos(meta))

    def name(self, meta: Meta, children: list[Token]) -> ast.Name:
        return ast.Name(children[0].value, _pos(meta))

    def call(self, meta: Meta, children: list[Any]) -> ast.Call:
        name, *args = children
        return ast.Call(name.value, tuple(args), _pos(meta))

    def list_value(self, meta: Meta, items: list[ast.ArgValue]) -> ast.ListValue:
        return ast.ListValue(tuple(items), _pos(meta))

    def pairs(self, meta: Meta, args: list[ast.Arg]) -> ast.Pairs:
        return ast.Pairs(tuple(args), _pos(meta))

    # ------------------------------------------------------------------------- WHERE

    def disjunction(self, meta: Meta, items: list[ast.Predicate]) -> ast.Or:
        return ast.Or(tuple(items), _pos(meta))

    def conjunction(self, meta: Meta, items: list[ast.Predicate]) -> ast.And:
        return ast.And(tuple(items), _pos(meta))

    def negation(self, meta: Meta, children: list[ast.Predicate]) -> ast.Not:
        return ast.Not(children[0], _pos(meta))

    def compare(self, meta: Meta, children: list[Any]) -> ast.Compare:
        left, op, right = children
        return ast.Compare(op.value, left, right, _pos(meta))

    def in_list(self, meta: Meta, children: list[Any]) -> ast.InList:
        expr, negated, *items = children
        return ast.InList(expr, tuple(items), negated is not None, _pos(meta))

    def is_null(self, meta: Meta, children: list[Any]) -> ast.IsNull:
        expr, negated = children
        return ast.IsNull(expr, negated is not None, _pos(meta))

    def like(self, meta: Meta, children: list[Any]) -> ast.Like:
        expr, negated, op, pattern = children
        return ast.Like(expr, pattern, negated is not None, op.type == "ILIKE", _pos(meta))

    def column(self, meta: Meta, children: list[Token]) -> ast.Column:
        return ast.Column(children[0].value, _pos(meta))

    def json_path(self, meta: Meta, children: list[Any]) -> ast.JsonPath:
        column, *hops = children  # arrow, key, arrow, key, ...
        for arrow in hops[:-2:2]:
            if arrow.value == "->>":
                raise QuerySyntaxError(
                    "->> yields text, so only the last arrow of a path can be ->> (use -> before it)",
                    line=arrow.line, column=arrow.column, query=self._query,
                )
        keys = tuple(key.value for key in hops[1::2])
        return ast.JsonPath(column, keys, hops[-2].value == "->>", _pos(meta))

    def cast(self, meta: Meta, children: list[Any]) -> ast.Cast:
        expr, type_name = children
        return ast.Cast(expr, type_name, _pos(meta))
