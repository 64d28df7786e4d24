"""Facet counts from the filter columns: a GROUP BY over a set of doc ids without PostgreSQL.

A facet's SQL (plan/facets.py) groups the hits' rows in PostgreSQL; when every column it names is
a filter column in memory, the same groups come from numpy over the hits' doc ids, with the
values PostgreSQL would return: count(*) and count(field) as integers, min and max in the
field's type, sum of integers exact (bigint's as numeric), sum and avg of double precision as
floats (PostgreSQL adds in its scan order, so the last bit may differ), width_bucket by
PostgreSQL's float8 formula (the SQL casts to float8 as well), NULL keys as one group, ordered
as the SQL orders them (NULL past every value, ties by the key). Text sorts here only in code
point order, which is the order of the C collations; anything else raises NotInMemory and the
facet runs in SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import numpy as np

from sparsesql.lang import ast
from sparsesql.lang.check_facets import CheckedFacets
from sparsesql.tier.filters import Column, FilterColumns, NotInMemory

_INT64_SAFE = 2**62


def facet_hits(data: FilterColumns, ids: list[int] | None, where: ast.Predicate | None, params: dict,
               matches: np.ndarray | None) -> tuple[np.ndarray, str]:
    """The sorted doc ids a facet counts, and how they were found: a ranking's top (`ids`), else
    the live documents `where` keeps (every one without it), and of those, with `matches` (a
    flag per doc id from the postings), the ones that match. Raises NotInMemory."""
    if ids is not None:
        return np.unique(np.asarray(ids, dtype=np.int64)), f"the top {len(ids)} of the ranking"
    flags = data.kept(where, params)
    how = "every document the filter keeps" if where is not None else "every document"
    if matches is not None:
        n = min(len(flags), len(matches))  # a doc id past either array is in neither
        flags = flags[:n] & matches[:n]
        how = f"every match from the postings in memory{', filtered' if where is not None else ''}"
    return np.flatnonzero(flags), how


def facet_rows(data: FilterColumns, ids: np.ndarray, facets: CheckedFacets, types: dict[str, str], *,
               codepoint_text: bool, limit: int | None, offset: int) -> list[tuple]:
    """The facet's rows over the live documents among `ids` (sorted doc ids), as the SQL returns
    them; `types` maps a field to its PostgreSQL type. Raises NotInMemory."""
    ids = ids[(ids >= 0) & (ids < len(data.alive))]
    ids = ids[data.alive[ids]]
    key = facets.key
    values, null, convert = _key_values(data, ids, key.field, key.function, key.args, codepoint_text)
    present = np.flatnonzero(~null)
    uniq, inverse = _distinct(values[present])
    groups = np.full(len(ids), len(uniq), dtype=np.int64)  # NULL keys: the last group
    groups[present] = inverse
    n_groups = len(uniq) + int(null.any())
    keys = [convert(v) for v in uniq.tolist()] + ([None] if null.any() else [])
    columns: dict[str, list] = {key.column: keys}
    for function, field, column in facets.aggregates:
        columns[column] = _aggregate(data, ids, groups, n_groups, function, field, types, codepoint_text)
    rows = list(zip(*(columns[c] for c in facets.columns))) if n_groups else []
    key_at = facets.columns.index(key.column)
    for position, descending in reversed([*facets.order, (key_at, False)]):  # stable sorts, last key first
        rows.sort(key=lambda r, p=position: (True, 0) if r[p] is None else (False, r[p]), reverse=descending)
    return rows[offset:] if limit is None else rows[offset: offset + limit]


def _distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(values, return_inverse=True); by flags over the range instead of a sort where
    the values are whole numbers (codes, integers, booleans, dates) in a range not much wider
    than their count."""
    if values.dtype.kind not in "iubM" or not len(values):
        return np.unique(values, return_inverse=True)
    ints = values.view(np.int64) if values.dtype.kind == "M" else values.astype(np.int64)
    low, high = int(ints.min()), int(ints.max())
    if high - low > 4 * len(ints) + 1024:
        return np.unique(values, return_inverse=True)
    seen = np.zeros(high - low + 1, dtype=bool)
    seen[ints - low] = True
    rank = np.cumsum(seen) - 1
    uniq = np.flatnonzero(seen) + low
    return (uniq.view(values.dtype) if values.dtype.kind == "M" else uniq.astype(values.dtype)), rank[ints - low]


def _column(data: FilterColumns, field: str) -> Column:
    if field not in data.columns:
        raise NotInMemory(data.skipped.get(field, f"{field!r} is not a filter column"))
    col = data.columns[field]
    if col.has_nan:
        raise NotInMemory(f"{field!r} holds NaN, which PostgreSQL groups and orders in SQL")
    return col


def _text_ranks(col: Column, codepoint_text: bool) -> tuple[np.ndarray, list[str]]:
    """Each code's rank in the text order, and the words in that order."""
    if not codepoint_text:
        raise NotInMemory("text is ordered by the database's collation in SQL")
    words = sorted(col.words)
    ranks = np.zeros(max(len(col.words), 1), dtype=np.int64)
    for rank, word in enumerate(words):
        ranks[col.words[word]] = rank
    return ranks, words


def _key_values(data: FilterColumns, ids: np.ndarray, field: str, function: str | None, args: tuple,
                codepoint_text: bool) -> tuple[np.ndarray, np.ndarray, Callable[[object], object]]:
    """The grouping key of each hit (sortable numpy values), where it is NULL, and how a
    key value becomes the Python value the SQL returns."""
    col = _column(data, field)
    values, null = col.values[ids], col.null[ids]
    if function == "date_trunc":
        raise NotInMemory("date_trunc runs in SQL (on a date it yields a timestamp in the session's time zone)")
    if function == "width_bucket":
        return width_bucket(values.astype(np.float64), *args), null, int
    if col.kind == "text":
        ranks, words = _text_ranks(col, codepoint_text)
        return ranks[values], null, words.__getitem__
    return values, null, lambda v: v  # tolist() already made ints, floats, bools, dates and datetimes


def width_bucket(x: np.ndarray, low: float, high: float, count: int) -> np.ndarray:
    """PostgreSQL's width_bucket(float8, float8, float8, int) for low < high (the checker's rule)."""
    low, high = float(low), float(high)
    inside = np.minimum(np.floor(count * ((x - low) / (high - low))), count - 1) + 1
    return np.where(x < low, 0, np.where(x >= high, count + 1, inside)).astype(np.int64)


def _aggregate(data: FilterColumns, ids: np.ndarray, groups: np.ndarray, n_groups: int, function: str,
               field: str | None, types: dict[str, str], codepoint_text: bool) -> list:
    if field is None:
        return np.bincount(groups, minlength=n_groups).tolist()
    col = _column(data, field)
    present = ~col.null[ids]
    values, groups_in = col.values[ids][present], groups[present]
    counts = np.bincount(groups_in, minlength=n_groups)
    if function == "count":
        return counts.tolist()
    if function in ("min", "max"):
        return _extreme(col, values, groups_in, n_groups, counts, function, codepoint_text)
    kind = types[field]
    if function == "sum" and kind in ("integer", "bigint"):
        if len(values) and int(np.abs(values).max()) * len(values) >= _INT64_SAFE:
            raise NotInMemory(f"sum({field}) could pass int64; it is added in SQL")
        sums = np.zeros(n_groups, dtype=np.int64)
        np.add.at(sums, groups_in, values)
        wrap = int if kind == "integer" else Decimal  # sum(bigint) is numeric in PostgreSQL
        return [wrap(int(s)) if c else None for s, c in zip(sums.tolist(), counts.tolist())]
    if kind != "double precision":
        raise NotInMemory(f"{function}({field}) over {kind} is {'numeric' if function == 'avg' else 'real'} in PostgreSQL; it runs in SQL")
    sums = np.bincount(groups_in, weights=values, minlength=n_groups)
    if function == "sum":
        return [float(s) if c else None for s, c in zip(sums.tolist(), counts.tolist())]
    return [float(s) / c if c else None for s, c in zip(sums.tolist(), counts.tolist())]


def _extreme(col: Column, values: np.ndarray, groups: np.ndarray, n_groups: int, counts: np.ndarray, function: str,
             codepoint_text: bool) -> list:
    """min or max per group: sort by (group, value) and take each group's first or last."""
    words: list[str] | None = None
    if col.kind == "text":
        ranks, words = _text_ranks(col, codepoint_text)
        values = ranks[values]
    order = np.lexsort((values, groups))
    ends = np.cumsum(counts)
    at = ends - counts if function == "min" else ends - 1
    out: list = [None] * n_groups
    for g in np.flatnonzero(counts).tolist():
        value = values[order[at[g]]].item()
        out[g] = words[value] if words is not None else value
    return out
