"""Score boosts: a search's ORDER BY expression computed over its ranking's top candidates.

Each candidate's value is computed from its score and its fields (fetched by id), in numpy over
all candidates at once, with SQL's NULL: an operation on NULL is NULL, least, greatest and
coalesce skip NULLs as PostgreSQL's do, and a row whose value is NULL ranks after every other.
What PostgreSQL refuses is refused here too, naming the document: ln or log of zero or less,
the square root of a negative number, division by zero, a result past double precision.

The decay functions are Elasticsearch's (function_score): with d = max(0, |value - origin| -
offset) and `decay` (0.5 by default) the factor at d = scale,
- exp_decay: exp(ln(decay) / scale * d);
- gauss_decay: exp(d^2 * ln(decay) / scale^2);
- linear_decay: max(0, (s - d) / s) with s = scale / (1 - decay);
a date's distance in days. A NULL field decays to NULL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np

from sparsesql.errors import CheckError
from sparsesql.lang import ast
from sparsesql.lang.check_boost import CheckedBoost

Values = tuple[np.ndarray, np.ndarray]  # (values as float64, where NULL)
_EPOCH = dt.date(1970, 1, 1)


def rerank(ranked: list[tuple[int, float]], columns: dict[str, Values], boost: CheckedBoost, name_of: Callable[[int], str],
           now: dt.datetime) -> list[tuple[int, float | None]]:
    """The candidates by their boosted value, highest first, NULL last, ties by doc id; `columns`
    holds each field's values in the candidates' order (`column_values` makes them of Python
    values; a date as days since 1970), `name_of` a document's id, for errors."""
    if not ranked:
        return []
    docs = np.array([d for d, _ in ranked], dtype=np.int64)
    score = np.array([s if s is not None else np.nan for _, s in ranked], dtype=np.float64)
    arrays = {"score": (score, np.isnan(score)), **columns}
    values, null = _eval(boost.expr, arrays, len(docs), now, docs, name_of)
    values = np.where(null, 0.0, values)
    order = np.lexsort((docs, -values, null))
    return [(int(docs[i]), None if null[i] else float(values[i])) for i in order]


def column_values(values: list) -> Values:
    """A field's values (Python's: numbers, dates, None) as rerank takes them."""
    null = np.array([v is None for v in values], dtype=bool)
    return np.array([0.0 if v is None else _days(v) if isinstance(v, (dt.date, dt.datetime)) else float(v) for v in values]), null


def _days(value: dt.date | dt.datetime) -> float:
    """Days since 1970-01-01 (a timestamp with a zone at its UTC instant)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return value.timestamp() / 86400
        return (value - dt.datetime(1970, 1, 1)).total_seconds() / 86400
    return float((value - _EPOCH).days)


def _eval(node: ast.Expr, arrays: dict[str, Values], n: int, now: dt.datetime, docs: np.ndarray, name_of: Callable[[int], str]) -> Values:
    none = np.zeros(n, dtype=bool)
    if isinstance(node, ast.Literal):
        value = _days(node.value) if isinstance(node.value, (dt.date, dt.datetime)) else float(node.value)
        return np.full(n, value), none
    if isinstance(node, ast.Column):
        return arrays[node.name]
    if isinstance(node, ast.Negate):
        v, null = _eval(node.item, arrays, n, now, docs, name_of)
        return -v, null
    if isinstance(node, ast.Arith):
        (a, an), (b, bn) = _eval(node.left, arrays, n, now, docs, name_of), _eval(node.right, arrays, n, now, docs, name_of)
        null = an | bn
        with np.errstate(all="ignore"):
            if node.op == "/":
                _refuse(null, b == 0, "division by zero", node, docs, name_of)
            out = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power}[node.op](a, np.where(null, 1.0, b))
        _refuse(null, ~np.isfinite(out), f"{node.op} gives a result past double precision (or an imaginary one)", node, docs, name_of)
        return out, null
    if node.name == "now":
        return np.full(n, _days(now)), none
    args = [_eval(a, arrays, n, now, docs, name_of) for a in node.args]
    if node.name in ("least", "greatest", "coalesce"):
        return _choose(node.name, args, n)
    if node.name.endswith("_decay"):
        return _decay(node.name, args, n)
    (x, null), *rest = args
    for _, other in rest:
        null = null | other
    with np.errstate(all="ignore"):
        if node.name in ("ln", "log"):
            _refuse(null, x <= 0, f"{node.name} of zero or a negative number", node, docs, name_of)
            out = np.log(x) if node.name == "ln" else np.log10(x)
        elif node.name == "sqrt":
            _refuse(null, x < 0, "sqrt of a negative number", node, docs, name_of)
            out = np.sqrt(x)
        elif node.name == "power":
            out = np.power(x, rest[0][0])
        else:
            out = {"exp": np.exp, "abs": np.abs}[node.name](x)
    _refuse(null, ~np.isfinite(out), f"{node.name} gives a result past double precision (or an imaginary one)", node, docs, name_of)
    return out, null


def _choose(name: str, args: list[Values], n: int) -> Values:
    values = np.array([v for v, _ in args])
    nulls = np.array([null for _, null in args])
    all_null = nulls.all(axis=0)
    if name == "coalesce":
        first = np.argmax(~nulls, axis=0)
        return values[first, np.arange(n)], all_null
    filled = np.where(nulls, np.inf if name == "least" else -np.inf, values)
    out = filled.min(axis=0) if name == "least" else filled.max(axis=0)
    return np.where(all_null, 0.0, out), all_null


def _decay(name: str, args: list[Values], n: int) -> Values:
    (x, null), (origin, origin_null), (scale, _) = args[:3]
    offset = args[3][0] if len(args) > 3 else np.zeros(n)
    decay = args[4][0] if len(args) > 4 else np.full(n, 0.5)
    d = np.maximum(0.0, np.abs(x - origin) - offset)
    if name == "exp_decay":
        out = np.exp(np.log(decay) / scale * d)
    elif name == "gauss_decay":
        out = np.exp(d**2 * np.log(decay) / scale**2)
    else:
        s = scale / (1 - decay)
        out = np.maximum(0.0, (s - d) / s)
    return out, null | origin_null


def _refuse(null: np.ndarray, bad: np.ndarray, what: str, node: ast.Expr, docs: np.ndarray, name_of: Callable[[int], str]) -> None:
    hit = np.flatnonzero(bad & ~null)
    if len(hit):
        doc = name_of(int(docs[hit[0]]))
        raise CheckError(f"ORDER BY: {what} for document {doc!r}", line=node.pos.line, column=node.pos.column)
