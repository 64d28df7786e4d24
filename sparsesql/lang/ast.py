"""The dialect's syntax tree: plain frozen dataclasses, each with the source position it came from.

Positions are 1-based (line, column) of the node's first token, so the checker can point a caret
at the exact spot without keeping lark's tree around.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class Pos:
    line: int
    column: int


# ----------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Literal:
    """A constant: str, int, float, bool or None (SQL NULL)."""

    value: str | int | float | bool | None
    pos: Pos


@dataclass(frozen=True)
class Param:
    """A bound parameter, `:name` or positional `$n` (name "n", as a PostgreSQL client binds its
    parameters); its value never enters the SQL text."""

    name: str
    pos: Pos

    @property
    def written(self) -> str:
        """The parameter as the query spells it, for messages."""
        return param_text(self.name)


def param_text(name: str) -> str:
    """`$n` for a positional name (all digits: `:` names start with a letter), else `:name`."""
    return f"${name}" if name.isascii() and name.isdigit() else f":{name}"


@dataclass(frozen=True)
class ListValue:
    """A bracketed list `[a, b, c]` used as a named argument's value."""

    items: tuple["ArgValue", ...]
    pos: Pos


@dataclass(frozen=True)
class Name:
    """A bare identifier used as a value, e.g. `norm => minmax`."""

    name: str
    pos: Pos


@dataclass(frozen=True)
class Arg:
    """A named argument `name => value`."""

    name: str
    value: "ArgValue"
    pos: Pos


@dataclass(frozen=True)
class Call:
    """A function-style value `rrf(k => 60)`; bare `rrf` parses as Name, not Call."""

    name: str
    args: tuple[Arg, ...]
    pos: Pos


@dataclass(frozen=True)
class Pairs:
    """Named values in parentheses, `(title => 2.0, abstract => 1.0)`: per-field weights."""

    args: tuple[Arg, ...]
    pos: Pos


ArgValue = Union[Literal, Param, ListValue, Name, Call, Pairs]


def render(value: "ArgValue") -> str:
    """An argument value written back as dialect text, so that a chosen setting can be stored
    and read again by the parser (the collection defaults `sparsesql tune --apply` keeps)."""
    if isinstance(value, Literal):
        v = value.value
        if isinstance(v, bool):
            return "true" if v else "false"
        if v is None:
            return "null"
        if isinstance(v, str):
            return "'" + v.replace("'", "''") + "'"
        return repr(v)
    if isinstance(value, Param):
        return value.written
    if isinstance(value, Name):
        return value.name.lower()
    if isinstance(value, ListValue):
        return "[" + ", ".join(render(i) for i in value.items) + "]"
    return f"{value.name.lower()}(" + ", ".join(f"{a.name.lower()} => {render(a.value)}" for a in value.args) + ")"


# ----------------------------------------------------------------------------- expressions (WHERE)


@dataclass(frozen=True)
class Column:
    """A collection field (`year`), the external id (`id`) or `metadata`."""

    name: str
    pos: Pos


@dataclass(frozen=True)
class JsonPath:
    """`metadata->'a'->>'b'`: keys in order; `as_text` when the last arrow is `->>`."""

    column: Column
    keys: tuple[str, ...]
    as_text: bool
    pos: Pos


@dataclass(frozen=True)
class Cast:
    """`expr::type` with type one of text, int, bigint, float, numeric, bool, date, timestamp."""

    expr: "Operand"
    type_name: str
    pos: Pos


Operand = Union[Column, JsonPath, Cast, Literal, Param]


@dataclass(frozen=True)
class Compare:
    """`left op right`, op one of = != <> < <= > >=."""

    op: str
    left: Operand
    right: Operand
    pos: Pos


@dataclass(frozen=True)
class InList:
    """`expr [NOT] IN (v1, v2, ...)`."""

    expr: Operand
    items: tuple[Operand, ...]
    negated: bool
    pos: Pos


@dataclass(frozen=True)
class IsNull:
    """`expr IS [NOT] NULL`."""

    expr: Operand
    negated: bool
    pos: Pos


@dataclass(frozen=True)
class Like:
    """`expr [NOT] LIKE|ILIKE pattern`."""

    expr: Operand
    pattern: Operand
    negated: bool
    case_insensitive: bool
    pos: Pos


@dataclass(frozen=True)
class And:
    items: tuple["Predicate", ...]
    pos: Pos


@dataclass(frozen=True)
class Or:
    items: tuple["Predicate", ...]
    pos: Pos


@dataclass(frozen=True)
class Not:
    item: "Predicate"
    pos: Pos


Predicate = Union[Compare, InList, IsNull, Like, And, Or, Not]


# ----------------------------------------------------------------------------- search


@dataclass(frozen=True)
class MoreLike:
    """`LIKE id` or `LIKE (id, ...)`, with `UNLIKE ...`: documents named by id (literals, or
    parameters bound to an id or a list of ids) as a search's query."""

    ids: tuple[Literal | Param, ...]
    unlike: tuple[Literal | Param, ...]
    pos: Pos


@dataclass(frozen=True)
class Sparse:
    """`SPARSE(query, name => value, ...)`; query is a string literal, a parameter, or LIKE."""

    query: Literal | Param | MoreLike
    args: tuple[Arg, ...]
    pos: Pos


@dataclass(frozen=True)
class Dense:
    """`DENSE(query, ...)`; query is text, a parameter bound to text or a vector, or LIKE."""

    query: Literal | Param | MoreLike
    args: tuple[Arg, ...]
    pos: Pos


@dataclass(frozen=True)
class Hybrid:
    """`HYBRID(signal, signal, ..., fusion => ...)`: two or more SPARSE/DENSE inputs."""

    inputs: tuple[Union[Sparse, Dense], ...]
    args: tuple[Arg, ...]
    pos: Pos


Search = Union[Sparse, Dense, Hybrid]


# ----------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class SelectItem:
    """A selected column: a field, `id`, `metadata`, `score` or `cursor`."""

    name: str
    pos: Pos


@dataclass(frozen=True)
class Aggregate:
    """count(*) (`field` None), or count / min / max / avg / sum(field), with GROUP BY."""

    function: str
    field: str | None
    pos: Pos


@dataclass(frozen=True)
class Bucket:
    """width_bucket(field, low, high, n) or date_trunc('unit', field): a grouping key."""

    function: str
    field: str
    args: tuple[Literal, ...]
    pos: Pos


@dataclass(frozen=True)
class Arith:
    """`left op right` in ORDER BY: op is one of + - * / ^."""

    op: str
    left: "Expr"
    right: "Expr"
    pos: Pos


@dataclass(frozen=True)
class Negate:
    item: "Expr"
    pos: Pos


@dataclass(frozen=True)
class Function:
    """`name(arg, ...)` in ORDER BY (ln, exp_decay, ...; the checker knows them)."""

    name: str
    args: tuple["Expr", ...]
    pos: Pos


Expr = Union[Literal, Param, Column, Arith, Negate, Function]


@dataclass(frozen=True)
class OrderItem:
    """ORDER BY's item: a column of a facet's result (by name or position, from 1), or an
    expression (a search's boost); ascending unless DESC."""

    column: str | int | Expr
    descending: bool
    pos: Pos
    explicit: bool = False  # ASC or DESC was written


@dataclass(frozen=True)
class Highlight:
    """`HIGHLIGHT(field, name => value, ...)` in the select list: the field's passages that best
    match the search."""

    field: str
    args: tuple[Arg, ...]
    pos: Pos


@dataclass(frozen=True)
class Prf:
    """`WITH PRF(name => value, ...)`: pseudo-relevance feedback after the first search."""

    args: tuple[Arg, ...]
    pos: Pos


@dataclass(frozen=True)
class Diversify:
    """`DIVERSIFY BY method(name => value, ...)`: choose the result from the top candidates."""

    method: str
    args: tuple[Arg, ...]
    pos: Pos


@dataclass(frozen=True)
class Rerank:
    """`RERANK(model => 'folder', candidates => n, field => name, ...)`."""

    args: tuple[Arg, ...]
    pos: Pos


@dataclass(frozen=True)
class Select:
    """`SELECT [DISTINCT ON (field)] items FROM collection [SEARCH s [WITH PRF(...)] [DIVERSIFY BY ...]]
    [WHERE p] [LIMIT n] [OFFSET m | AFTER cursor]`; no items means `*`. `span` is where the text of the
    ranking starts (the collection's name: the select list does not change it) and where the page
    clauses do (its end without them), for the cursor's fingerprint of the search."""

    items: tuple[SelectItem | Highlight | Aggregate | Bucket, ...]
    collection: Name
    search: Search | None
    where: Predicate | None
    limit: Literal | Param | None
    pos: Pos
    prf: Prf | None = None
    diversify: Diversify | None = None
    offset: Literal | Param | None = None
    after: Literal | Param | None = None
    span: tuple[int, int] | None = field(default=None, compare=False)  # where the text is, as `pos`
    distinct_on: Name | None = None
    group_by: Name | Literal | None = None  # a field's name, or a select item's position
    order_by: tuple[OrderItem, ...] = ()
    rerank: Rerank | None = None


@dataclass(frozen=True)
class Explain:
    select: Select
    analyze: bool
    pos: Pos


@dataclass(frozen=True)
class FieldDef:
    """A declared field `name type` in CREATE COLLECTION."""

    name: str
    type_name: str
    pos: Pos


@dataclass(frozen=True)
class CreateCollection:
    name: Name
    fields: tuple[FieldDef, ...]
    options: tuple[Arg, ...]
    if_not_exists: bool
    pos: Pos


@dataclass(frozen=True)
class DropCollection:
    name: Name
    if_exists: bool
    pos: Pos


@dataclass(frozen=True)
class ShowCollections:
    pos: Pos


@dataclass(frozen=True)
class BuildGraph:
    """`BUILD GRAPH ON collection [WITH (k => n)]`."""

    name: Name
    options: tuple[Arg, ...]
    pos: Pos


@dataclass(frozen=True)
class ShowGraph:
    name: Name
    pos: Pos


@dataclass(frozen=True)
class SetOption:
    """`SET name = value`: a setting of this connection."""

    name: Name
    value: Literal | Name
    pos: Pos


@dataclass(frozen=True)
class InsertRow:
    """One parenthesised row of VALUES: a literal or a parameter per column, in the list's order."""

    values: tuple[Union[Literal, Param], ...]
    pos: Pos


@dataclass(frozen=True)
class Insert:
    """`INSERT INTO collection (column, ...) VALUES (...), ...`: add documents, or update those
    whose id exists."""

    collection: Name
    columns: tuple[Name, ...]
    rows: tuple[InsertRow, ...]
    pos: Pos


@dataclass(frozen=True)
class Delete:
    """`DELETE FROM collection [WHERE p]`: without a WHERE, every document goes."""

    collection: Name
    where: Predicate | None
    pos: Pos


Statement = Union[
    Select, Explain, CreateCollection, DropCollection, ShowCollections, BuildGraph, ShowGraph, SetOption, Insert, Delete
]
