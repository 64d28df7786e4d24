"""Retrieval on top of SQLAlchemy's `select()`: the ORM face of the dialect's SELECT ... SEARCH.

    stmt = (
        search(select(Paper).where(Paper.year >= 2000), hybrid(sparse(q), dense(q), fusion=rrf()))
        .with_prf(depth=10)
        .diversify(coverage(lambda_=0.7))
        .limit(10)
    )
    for paper, score in stmt.execute(session):            # or: await stmt.execute_async(session)
        ...

A `Search` renders itself as one dialect statement (`stmt.dialect`, values as parameters) and runs
it through the same parse -> check -> plan -> execute path as `Database.query`, on the session's
own connection and transaction; the chosen ids then load as mapped instances in one more query.
So an ORM search and the equivalent dialect query return the same documents with the same scores.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
from sqlalchemy import Select, and_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from sparsesql.errors import CheckError
from sparsesql.orm.connection import session_connection
from sparsesql.orm.model import mapped_collection
from sparsesql.orm.where import where_text

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DEFAULT = object()


@dataclass(frozen=True)
class Call:
    """A dialect call such as `rrf(k => 60)`: a name and its named arguments (None = omitted)."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


class Name(str):
    """An argument written as a bare word (`norm => minmax`, `sparse => none`)."""


@dataclass(frozen=True)
class Like:
    """Documents by id as a query: more like `ids`, unlike `unlike`."""

    ids: tuple[str, ...]
    unlike: tuple[str, ...] = ()


@dataclass(frozen=True)
class Signal:
    kind: str  # "SPARSE" | "DENSE"
    query: str | dict[str, float] | Sequence[float] | np.ndarray | Like
    ef_search: int | None = None
    field: str | None = None
    mode: str | None = None
    terms: int | None = None
    include_liked: bool | None = None
    syntax: str | None = None
    fields: dict[str, float] | None = None


@dataclass(frozen=True)
class Hybrid:
    signals: tuple[Signal, ...]
    fusion: Call | None = None
    candidates: int | None = None


def like(*ids: str, unlike: Sequence[str] = ()) -> Like:
    """LIKE ids [UNLIKE ids]: the query of `sparse(like(...))` (the documents' top terms) or
    `dense(like(...))` (their vectors); the examples are left out of the results."""
    return Like(tuple(ids), tuple(unlike))


def sparse(query: str | dict[str, float] | Like, *, field: str | None = None, mode: str | None = None,
           terms: int | None = None, include_liked: bool | None = None, syntax: str | None = None,
           fields: dict[str, float] | None = None) -> Signal:
    """SPARSE(query): the collection's first sparse field (or `field`) searched with text (BM25
    analysed, its quotes, -words and OR read as the search syntax unless `syntax="plain"`, and
    with `fields={"title": 2.0, "body": 1.0}` scored by BM25F; or a learned field's model: mode
    "full" or "inference_free"), a dict of term weights in the field's vocabulary, or
    `like(...)` (its `terms` top terms)."""
    return Signal("SPARSE", query, field=field, mode=mode, terms=terms, include_liked=include_liked, syntax=syntax, fields=fields)


def dense(query: str | Sequence[float] | np.ndarray | Like, *, ef_search: int | None = None, include_liked: bool | None = None) -> Signal:
    """DENSE(query): the text embedded with the collection's model, a vector of its size, or
    `like(...)`; with ef_search, candidates come from the collection's HNSW index (approximate)."""
    return Signal("DENSE", query, ef_search, include_liked=include_liked)


def hybrid(*signals: Signal, fusion: Call | None = None, candidates: int | None = None) -> Hybrid:
    """HYBRID(...): fuse two or more signals (default: min-max linear, weights per query by peakedness)."""
    if len(signals) < 2 or not all(isinstance(s, Signal) for s in signals):
        raise CheckError(f"hybrid() fuses two or more sparse(...) / dense(...) signals, got {signals!r}")
    return Hybrid(tuple(signals), fusion, candidates)


def rrf(k: int | None = None) -> Call:
    return Call("rrf", {"k": k})


def _word_or(value: object, convert: Callable[[object], object] = lambda v: v) -> object:
    """A word (`auto`, `zscore`) as the bare name the dialect writes; any other value converted."""
    if value is None:
        return None
    return Name(value) if isinstance(value, str) else convert(value)


def linear(alpha: float | str | None = None, weights: Sequence[float] | str | None = None, norm: str | None = None) -> Call:
    """linear(...); `alpha="auto"` (or `weights="auto"`) weighs each list per query by its peakedness."""
    return Call("linear", {"alpha": _word_or(alpha), "weights": _word_or(weights, list), "norm": _word_or(norm)})


def rm3(terms: int | None = None, weight: float | None = None, max_df: float | None = None,
        min_docs: int | None = None, selective: bool | None = None) -> Call:
    return Call("rm3", {"terms": terms, "weight": weight, "max_df": max_df, "min_docs": min_docs, "selective": selective})


def average() -> Call:
    return Call("average")


def rocchio(alpha: float | None = None, beta: float | None = None) -> Call:
    return Call("rocchio", {"alpha": alpha, "beta": beta})


def coverage(lambda_: float | None = None, candidates: int | None = None, hops: int | None = None) -> Call:
    return Call("COVERAGE", {"lambda": lambda_, "candidates": candidates, "hops": hops})


def mmr(lambda_: float | None = None, candidates: int | None = None) -> Call:
    return Call("MMR", {"lambda": lambda_, "candidates": candidates})


class _Hit(NamedTuple):
    entity: Any
    score: float | None


class Hit(_Hit):
    """One result: the mapped instance and its score (unpacks as `entity, score`), and its
    `cursor`: `.after(hits[-1].cursor)` is the next page."""

    cursor: str | None
    highlights: dict[str, str]  # field -> snippet, for each .highlight(field) of the search

    def __new__(cls, entity: Any, score: float | None, cursor: str | None = None) -> "Hit":
        hit = super().__new__(cls, entity, score)
        hit.cursor = cursor
        hit.highlights = {}
        return hit


def _field_name(entity: type, field: str) -> str:
    """A mapped column's name, refused early when the class has no such column."""
    if field.lower() not in {c.name.lower() for c in entity.__table__.columns}:
        raise CheckError(f"{entity.__name__} has no column {field!r}")
    return field.lower()


class Facet(NamedTuple):
    """One group of `.group_by(field)`: a value of the field and how many hits have it."""

    value: Any
    count: int


class _Renderer:
    """Dialect text with every value a parameter (`:a<n>` for arguments, `:q<n>` for queries)."""

    def __init__(self, params: dict[str, object]) -> None:
        self.params = params

    def bind(self, prefix: str, value: object) -> str:
        name = f"{prefix}{sum(k.startswith(prefix) for k in self.params)}"
        self.params[name] = value
        return f":{name}"

    def value(self, value: object) -> str:
        if isinstance(value, Name):
            if not _NAME.match(value):
                raise CheckError(f"{value!r} is not a valid option word")
            return str(value)
        if isinstance(value, Call):
            return self.call(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise CheckError(f"argument value {value} is not a finite number")
        return self.bind("a", value)

    def call(self, call: Call) -> str:
        args = ", ".join(f"{k} => {self.value(v)}" for k, v in call.args.items() if v is not None)
        return f"{call.name}({args})" if args or call.name.islower() else call.name

    def signal(self, s: Signal | Hybrid) -> str:
        if isinstance(s, Hybrid):
            parts = [self.signal(i) for i in s.signals]
            if s.fusion is not None:
                parts.append(f"fusion => {self.call(s.fusion)}")
            if s.candidates is not None:
                parts.append(f"candidates => {self.value(s.candidates)}")
            return f"HYBRID({', '.join(parts)})"
        if not isinstance(s, Signal):
            raise CheckError(f"search() expects sparse(...), dense(...) or hybrid(...), got {s!r}")
        named = {"ef_search": s.ef_search, "field": s.field, "mode": s.mode, "terms": s.terms, "include_liked": s.include_liked,
                 "syntax": s.syntax, "fields": s.fields}
        args = "".join(f", {k} => {self.value(v)}" for k, v in named.items() if v is not None)
        if isinstance(s.query, Like):
            liked = self.bind("q", list(s.query.ids))
            unlike = f" UNLIKE {self.bind('q', list(s.query.unlike))}" if s.query.unlike else ""
            return f"{s.kind}(LIKE {liked}{unlike}{args})"
        return f"{s.kind}({self.bind('q', s.query)}{args})"


@dataclass(frozen=True)
class Search:
    """A retrieval statement over one mapped collection; generative like `Select`."""

    entity: type
    criteria: Any
    signal: Signal | Hybrid
    prf: dict[str, Any] | None = None
    diversification: Call | None = None
    limit_: int = 10
    offset_: int = 0
    after_: str | None = None
    distinct_: str | None = None
    highlights: tuple[tuple[str, dict[str, Any]], ...] = ()
    group_: str | None = None
    boost_: tuple[str, dict[str, object]] | None = None
    reranking: Call | None = None

    def where(self, *clauses: Any) -> "Search":
        """Add filters, ANDed with those already there (as Select.where does)."""
        parts = ([self.criteria] if self.criteria is not None else []) + list(clauses)
        return replace(self, criteria=and_(*parts) if len(parts) > 1 else parts[0])

    def with_prf(self, depth: int | None = None, sparse: Call | None | object = _DEFAULT,
                 dense: Call | None | object = _DEFAULT, interpolate: str | None = None) -> "Search":
        """WITH PRF(...): omitted arguments take the dialect's defaults; None turns a side off."""
        args: dict[str, Any] = {"depth": depth}
        for side, value in (("sparse", sparse), ("dense", dense)):
            if value is not _DEFAULT:
                args[side] = Name("none") if value is None else value
        args["interpolate"] = Name(interpolate) if interpolate is not None else None
        return replace(self, prf=args)

    def rerank(self, model: str, *, candidates: int | None = None, field: str | None = None, query: str | None = None,
               batch: int | None = None) -> "Search":
        """RERANK(...): a cross-encoder folder (under SPARSESQL_RERANKERS) orders the top candidates."""
        return replace(self, reranking=Call("RERANK", {"model": model, "candidates": candidates, "field": field, "query": query, "batch": batch}))

    def diversify(self, method: Call) -> "Search":
        """DIVERSIFY BY coverage(...) or mmr(...)."""
        if not isinstance(method, Call) or method.name not in ("COVERAGE", "MMR"):
            raise CheckError(f"diversify() expects coverage(...) or mmr(...), got {method!r}")
        return replace(self, diversification=method)

    def limit(self, n: int) -> "Search":
        return replace(self, limit_=n)

    def offset(self, m: int) -> "Search":
        """Skip the ranking's first m hits (a page: `.limit(n).offset(k * n)`), as Select.offset."""
        return replace(self, offset_=m, after_=None)

    def after(self, cursor: str) -> "Search":
        """The page after the hit whose `cursor` this is (the dialect's AFTER)."""
        return replace(self, after_=cursor, offset_=0)

    def group_by(self, field: str) -> "Search":
        """Facet counts instead of hits: `execute` returns (value, count) pairs of the field over
        the search's hits, biggest first (the dialect's GROUP BY); `.limit()` counts groups."""
        return replace(self, group_=_field_name(self.entity, field))

    def distinct(self, field: str) -> "Search":
        """The best hit per value of a field (the dialect's DISTINCT ON)."""
        return replace(self, distinct_=_field_name(self.entity, field))

    def order_by(self, expression: str, **values: object) -> "Search":
        """Reorder the hits by a dialect expression of `score` and number or date fields, highest
        first (the dialect's ORDER BY: `"score * (1 + 0.1 * ln(1 + coalesce(cites, 0)))"`,
        `"score * gauss_decay(day, :origin, 30)"`); values by name as `:name` parameters. The
        expression must be just that: it is parsed on its own and refused if it holds more."""
        from sparsesql.lang.parse import parse_statement

        clash = next((k for k in values if re.fullmatch(r"[qa]\d+", k)), None)
        if clash is not None:
            raise CheckError(f"order_by() value name {clash!r} is one the ORM binds itself; choose another name")
        parsed = parse_statement(f"SELECT id FROM c SEARCH SPARSE('') ORDER BY {expression}")
        if len(parsed.order_by) != 1 or parsed.limit is not None or parsed.offset is not None or parsed.after is not None:
            raise CheckError(f"order_by() takes one expression of score and fields, got {expression!r}")
        return replace(self, boost_=(expression, dict(values)))

    def highlight(self, field: str, *, fragments: int | None = None, size: int | None = None,
                  tags: tuple[str, str] | None = None, escape: str | None = None) -> "Search":
        """Each hit's snippet of a text field, in `hit.highlights[field]` (the dialect's HIGHLIGHT)."""
        options = {k: v for k, v in (("fragments", fragments), ("size", size), ("tags", tags), ("escape", escape)) if v is not None}
        return replace(self, highlights=(*self.highlights, (_field_name(self.entity, field), options)))

    def render(self) -> tuple[str, dict[str, object]]:
        """(dialect statement, parameters) this search runs."""
        params: dict[str, object] = {}
        out = _Renderer(params)
        distinct = f'DISTINCT ON ("{self.distinct_}") ' if self.distinct_ else ""
        snippets = "".join(
            f', HIGHLIGHT("{field}"' + "".join(f", {k} => {out.value(Name(v) if k == 'escape' else list(v) if k == 'tags' else v)}" for k, v in options.items()) + ")"
            for field, options in self.highlights
        )
        selected = f'"{self.group_}", count(*)' if self.group_ else f"{distinct}id{snippets}, score, cursor"
        text = f'SELECT {selected} FROM "{mapped_collection(self.entity)}" SEARCH {out.signal(self.signal)}'
        if self.prf is not None:
            text += " WITH " + out.call(Call("PRF", self.prf))
        if self.reranking is not None:
            text += " " + out.call(self.reranking)
        if self.diversification is not None:
            text += " DIVERSIFY BY " + out.call(self.diversification)
        where, bound = where_text(self.entity.__table__, self.criteria)
        if where:
            text += " WHERE " + where
            params.update(bound)
        if self.group_:
            text += f' GROUP BY "{self.group_}"'
        if self.boost_ is not None:
            text += f" ORDER BY {self.boost_[0]}"
            params.update(self.boost_[1])
        text += f" LIMIT {out.bind('a', self.limit_)}"
        if self.offset_:
            text += f" OFFSET {out.bind('a', self.offset_)}"
        if self.after_ is not None:
            text += f" AFTER {out.bind('a', self.after_)}"
        return text, params

    @property
    def dialect(self) -> str:
        return self.render()[0]

    def execute(self, session: Session) -> list[Hit] | list[Facet]:
        """Run on the session's connection: (instance, score) pairs, best first; after
        `.group_by(field)`, (value, count) pairs."""
        from sparsesql.database import run_select

        text, params = self.render()
        rows = run_select(session_connection(session), text, params)
        if self.group_:
            return [Facet(r[self.group_], r["count"]) for r in rows]
        ids = [r["id"] for r in rows]
        loaded = {e.id: e for e in session.scalars(select(self.entity).where(self.entity.id.in_(ids)))} if ids else {}
        hits = []
        for r in rows:
            if r["id"] in loaded:
                hit = Hit(loaded[r["id"]], r.get("score"), r.get("cursor"))
                hit.highlights = {field: r[f"highlight_{field}"] for field, _ in self.highlights}
                hits.append(hit)
        return hits

    async def execute_async(self, session: AsyncSession) -> list[Hit]:
        """`execute` for an AsyncSession (psycopg async): the same plan, awaited statement by statement."""
        return await session.run_sync(self.execute)


def search(stmt: Select | type, signal: Signal | Hybrid) -> Search:
    """Add SEARCH to `select(Entity).where(...)` (or to a mapped class directly)."""
    if not isinstance(signal, (Signal, Hybrid)):
        raise CheckError(f"search() expects sparse(...), dense(...) or hybrid(...), got {signal!r}")
    if isinstance(stmt, type):
        return Search(stmt, None, signal)
    if not isinstance(stmt, Select):
        raise CheckError(f"search() takes select(Entity) or a mapped class, got {type(stmt).__name__}")
    descriptions = stmt.column_descriptions
    if len(descriptions) != 1 or not isinstance(descriptions[0].get("entity"), type) or descriptions[0].get("expr") is not descriptions[0].get("entity"):
        raise CheckError("search() takes select(Entity) of one mapped collection class")
    for unsupported, present in (
        ("ORDER BY (results are ordered by score)", stmt._order_by_clauses),
        ("LIMIT/OFFSET (use .limit(n) and .offset(m) on the search)", stmt._limit_clause is not None or stmt._offset_clause is not None),
        ("joins", stmt._setup_joins),
        ("GROUP BY", stmt._group_by_clauses),
    ):
        if present:
            raise CheckError(f"search() cannot carry the select's {unsupported}")
    entity = descriptions[0]["entity"]
    mapped_collection(entity)
    return Search(entity, stmt.whereclause, signal)
