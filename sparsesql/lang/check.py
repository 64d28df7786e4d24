"""AST -> checked query: names resolved against the catalog, arguments and parameters validated.

Everything a user can get wrong is caught here, with the line and column of the offending token,
before a single statement of the query reaches the database. The checked query carries plain
Python values (bound parameters already looked up), so planning needs no further validation.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
from dataclasses import dataclass, replace
from typing import Callable, Union

import numpy as np

from sparsesql.db import ingest
from sparsesql.db.catalog import NUMERIC_TYPES, CollectionInfo, SparseField, check_name
from sparsesql.errors import CheckError, Error, IngestError, ParameterError
from sparsesql.sizes import parse_bytes
from sparsesql.lang import ast, check_like, check_page
from sparsesql.lang.check_facets import FACET_DEPTH, CheckedFacets, check_facets
from sparsesql.lang.check_boost import CheckedBoost, check_boost
from sparsesql.lang.check_like import Liked
from sparsesql.lang.check_rerank import CheckedRerank, check_rerank
from sparsesql.lang.check_page import COLLAPSE_DEPTH, MAX_LIMIT, CheckedCursor, CheckedHighlight

MAX_QUERY_TEXT = 100_000
DEFAULT_CANDIDATES = 200  # HYBRID's candidates per signal, chosen by benchmarks/tune_defaults.py
MAX_CANDIDATES = 100_000


# ----------------------------------------------------------------------------- checked query


@dataclass(frozen=True)
class SparseSignal:
    """Text to analyse (BM25) or to encode (a learned field's model: `idf` set, its tokens
    weighted by the field's idf, as inference-free retrievers do), or {term: weight} in the
    field's vocabulary."""

    query: str | dict[str, float] | Liked  # Liked: resolved in the search's snapshot (retrieval/like.py)
    pos: ast.Pos
    field: SparseField
    label: str = "sparse"
    idf: bool = False


@dataclass(frozen=True)
class DenseSignal:
    """Text to embed with the collection's model, or a vector of the collection's dimension.
    `ef_search` set: candidates come from the collection's pgvector HNSW index (approximate)."""

    query: str | np.ndarray | Liked
    pos: ast.Pos
    label: str = "dense"
    ef_search: int | None = None


Signal = Union[SparseSignal, DenseSignal]


@dataclass(frozen=True)
class Fusion:
    method: str  # "rrf" | "linear"
    k: int = 60
    weights: tuple[float, ...] = (0.5, 0.5)
    norm: str = "minmax"  # "minmax" | "zscore" | "none"
    adaptive: bool = False  # weights worked out per query from each list's peakedness (`alpha => auto`)

    def text(self) -> str:
        """As the dialect writes it (EXPLAIN and its account of defaults)."""
        if self.method == "rrf":
            return f"rrf(k => {self.k})"
        return f"linear(weights => {'auto' if self.adaptive else list(self.weights)}, norm => {self.norm})"


@dataclass(frozen=True)
class CheckedSearch:
    signals: tuple[Signal, ...]
    fusion: Fusion | None
    candidates: int


@dataclass(frozen=True)
class Rm3:
    terms: int = 10
    weight: float = 0.5
    max_df: float = 0.1
    min_docs: int = 2
    selective: bool = False

    def text(self) -> str:
        """As the dialect writes it (EXPLAIN and its account of defaults)."""
        return (
            f"rm3(terms => {self.terms}, weight => {self.weight}, max_df => {self.max_df}, "
            f"min_docs => {self.min_docs}, selective => {str(self.selective).lower()})"
        )


@dataclass(frozen=True)
class VectorPrf:
    method: str = "rocchio"  # "average" | "rocchio"
    alpha: float = 1.0
    beta: float = 0.5

    def text(self) -> str:
        """As the dialect writes it."""
        return "average" if self.method == "average" else f"rocchio(alpha => {self.alpha}, beta => {self.beta})"


@dataclass(frozen=True)
class CheckedPrf:
    """Feedback from the top `depth` documents; a side is None when it gets no feedback."""

    depth: int
    sparse: Rm3 | None
    dense: VectorPrf | None
    interpolate: str  # "before" | "after" | "both"


# The fusion of a bare HYBRID, chosen by benchmarks/tune_defaults.py (see docs/decisions.md).
DEFAULT_FUSION = Fusion("linear", weights=(), norm="minmax", adaptive=True)

# A collection's own defaults (sparsesql tune --apply) live in its catalog row's extra, as
# {"HYBRID" | "PRF": {"args": {argument: dialect text}, "source": why, "inputs": kinds}}: text, so that they are
# checked by the same code as the arguments a query writes.
DEFAULTS_KEY = "defaults"


@functools.lru_cache(maxsize=256)
def _stored_arg(clause: str, name: str, text: str) -> ast.Arg:
    """A stored default read as the argument the parser makes of `name => text`."""
    from sparsesql.lang.parse import parse_statement

    if clause == "HYBRID":
        statement = parse_statement(f"SELECT id FROM c SEARCH HYBRID(SPARSE('x'), DENSE('x'), {name} => {text})")
        return statement.search.args[0]
    return parse_statement(f"SELECT id FROM c SEARCH SPARSE('x') WITH PRF({name} => {text})").prf.args[0]

# The defaults of a bare `WITH PRF`, chosen by benchmarks/tune_defaults.py (see docs/decisions.md).
PRF_DEFAULTS = CheckedPrf(
    depth=7,
    sparse=Rm3(terms=10, weight=0.7, max_df=0.1, min_docs=2, selective=True),
    dense=VectorPrf("rocchio", 1.0, 0.5),
    interpolate="both",
)
MAX_PRF_DEPTH = 1000


# The built-in PRF defaults as dialect text, for EXPLAIN's account of where values came from.
PRF_TEXT = {
    "depth": str(PRF_DEFAULTS.depth),
    "sparse": PRF_DEFAULTS.sparse.text() if PRF_DEFAULTS.sparse else "none",
    "dense": PRF_DEFAULTS.dense.text() if PRF_DEFAULTS.dense else "none",
    "interpolate": PRF_DEFAULTS.interpolate,
}


@dataclass(frozen=True)
class CheckedDiversify:
    """Choose LIMIT documents from the top `candidates` (plus graph neighbours up to `hops`)."""

    method: str  # "coverage" | "mmr"
    lam: float
    candidates: int
    hops: int


DIVERSIFY_DEFAULTS = {"candidates": 100, "lambda": 0.8, "hops": 0}
MAX_HOPS = 3


@dataclass(frozen=True)
class CheckedSelect:
    collection: CollectionInfo
    columns: tuple[str, ...]
    with_score: bool
    search: CheckedSearch | None
    where: ast.Predicate | None
    limit: int  # the depth of the ranking: the page's end, LIMIT + OFFSET
    params: dict
    explain: bool = False
    analyze: bool = False
    prf: CheckedPrf | None = None
    diversify: CheckedDiversify | None = None
    defaults: tuple[tuple[str, str, str], ...] = ()  # (argument, value, source) of each one left out
    offset: int = 0  # rows of the ranking before the page
    page_size: int | None = None  # the page's rows, LIMIT (None: all from offset)
    highlights: tuple[CheckedHighlight, ...] = ()
    hidden: tuple[str, ...] = ()  # columns fetched for HIGHLIGHT only, not returned
    collapse: str | None = None  # DISTINCT ON (field): the best row per value of the field
    facets: CheckedFacets | None = None  # GROUP BY: groups of the search's hits, paged by LIMIT / OFFSET
    fingerprint: str = ""  # the search's own text and values (cursor_token.fingerprint); "" without SEARCH
    cursor: CheckedCursor | None = None  # a cursor column asked for, or a page AFTER a cursor
    seek: bool = False  # a SPARSE search's page AFTER a cursor past the result window: by (score, doc id)
    exclude: frozenset[int] = frozenset()  # doc ids left out of every list: LIKE's examples (exec/like.py)
    likes: tuple[str, ...] = ()  # what each LIKE searches with, for EXPLAIN
    boost: CheckedBoost | None = None  # ORDER BY: the ranking's top reordered by an expression of score
    rerank: CheckedRerank | None = None  # RERANK: a cross-encoder orders the top candidates


@dataclass(frozen=True)
class CheckedCreate:
    name: str
    fields: tuple[tuple[str, str], ...]
    options: dict
    if_not_exists: bool


@dataclass(frozen=True)
class CheckedDrop:
    name: str
    if_exists: bool


@dataclass(frozen=True)
class CheckedShow:
    pass


@dataclass(frozen=True)
class CheckedBuildGraph:
    name: str
    k: int


@dataclass(frozen=True)
class CheckedShowGraph:
    name: str


@dataclass(frozen=True)
class CheckedSet:
    """A connection setting: sparse_tier / dense_tier (bool) or sparse_tier_memory /
    dense_tier_memory (bytes, None = no limit)."""

    name: str
    value: bool | int | None


DEFAULT_GRAPH_K = 16  # BUILD GRAPH's neighbours per document
MAX_GRAPH_K = 256
SETTINGS = ("sparse_tier", "sparse_tier_memory", "dense_tier", "dense_tier_memory")


@dataclass(frozen=True)
class CheckedInsert:
    """An INSERT's rows as ingest documents ({"id", fields..., "metadata", "vector", "sparse"}),
    every one already validated, so the write that follows cannot fail on a value."""

    collection: CollectionInfo
    docs: tuple[dict, ...]


@dataclass(frozen=True)
class CheckedDelete:
    """A DELETE: the checked WHERE (None: every document) and the parameters it binds."""

    collection: CollectionInfo
    where: ast.Predicate | None
    params: dict


Checked = Union[
    CheckedSelect, CheckedCreate, CheckedDrop, CheckedShow, CheckedBuildGraph, CheckedShowGraph, CheckedSet,
    CheckedInsert, CheckedDelete,
]
Catalog = Callable[[str], Union[CollectionInfo, None]]


# ----------------------------------------------------------------------------- helpers


class _Checker:
    def __init__(self, text: str, params: dict) -> None:
        self.text = text
        self.params = params
        self.defaults: list[tuple[str, str, str]] = []  # (argument, value, where it came from)

    def with_defaults(self, got: dict[str, ast.Arg], info: CollectionInfo, clause: str, built_in: dict[str, str], applies: set[str]) -> dict[str, ast.Arg]:
        """The arguments given, completed by the collection's stored defaults for `clause` (those
        in `applies`); records where every argument left out took its value from."""
        stored = info.extra.get(DEFAULTS_KEY, {}).get(clause, {})
        merged = dict(got)
        for name, value in built_in.items():
            if name in got:
                continue
            text = stored.get("args", {}).get(name)
            if text is not None and name in applies:
                merged[name] = _stored_arg(clause, name, text)
                self.defaults.append((f"{clause} {name}", text, f"collection default ({stored.get('source', 'stored')})"))
            else:
                self.defaults.append((f"{clause} {name}", value, "built-in default"))
        return merged

    def error(self, message: str, pos: ast.Pos, kind: type[Error] = CheckError) -> Error:
        return kind(message, line=pos.line, column=pos.column, query=self.text)

    def param(self, p: ast.Param) -> object:
        if p.name not in self.params:
            names = sorted(self.params, key=lambda k: (k.isascii() and k.isdigit(), k.zfill(20)))
            given = ", ".join(map(ast.param_text, names)) or "none"
            raise self.error(f"parameter {p.written} is not bound (bound: {given})", p.pos, ParameterError)
        return self.params[p.name]

    def value(self, v: ast.ArgValue) -> object:
        """A named argument's value as plain Python: Name -> str, ListValue -> list."""
        if isinstance(v, ast.Literal):
            return v.value
        if isinstance(v, ast.Param):
            return self.param(v)
        if isinstance(v, ast.Name):
            return v.name.lower()
        if isinstance(v, ast.ListValue):
            return [self.value(i) for i in v.items]
        raise self.error(f"{v.name}(...) is not allowed here", v.pos)

    def valid_text(self, value: str, pos: ast.Pos, what: str) -> str:
        """Text PostgreSQL can store: no NUL character, valid Unicode, within the size limit."""
        if len(value) > MAX_QUERY_TEXT:
            raise self.error(f"{what} is too long ({len(value)} characters, limit {MAX_QUERY_TEXT})", pos)
        if "\x00" in value:
            raise self.error(f"{what} contains a NUL character, which PostgreSQL text cannot hold", pos)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise self.error(f"{what} is not valid Unicode (it holds a lone surrogate)", pos) from None
        return value

    def number(self, arg: ast.Arg, *, integer: bool, low: float, high: float) -> float | int:
        """An argument's number within [low, high]. A bound int is compared as it is, never
        through float(), which overflows past 1e308 (parameters, unlike literals, have no size)."""
        value = self.value(arg.value)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and isinstance(value, float) and (not math.isfinite(value) or (integer and not value.is_integer())):
            ok = False
        if not ok:
            kind = "an integer" if integer else "a number"
            raise self.error(f"{arg.name} => expects {kind}, got {value!r:.40}", arg.value.pos)
        if not low <= value <= high:
            shown = value if isinstance(value, float) or abs(value) < 2**63 else "an integer beyond 64 bits"
            raise self.error(f"{arg.name} => {shown} is out of range [{low}, {high}]", arg.value.pos)
        return int(value) if integer else float(value)

    def args(self, args: tuple[ast.Arg, ...], allowed: set[str], where: str) -> dict[str, ast.Arg]:
        seen: dict[str, ast.Arg] = {}
        for arg in args:
            name = arg.name.lower()
            if name not in allowed:
                known = ", ".join(sorted(allowed)) or "none"
                raise self.error(f"unknown argument {arg.name!r} for {where} (known: {known})", arg.pos)
            if name in seen:
                raise self.error(f"argument {arg.name!r} is given twice", arg.pos)
            seen[name] = arg
        return seen


# ----------------------------------------------------------------------------- search


def _finite(number: float) -> bool:
    """math.isfinite, False (not OverflowError) for a bound int too large for a float."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


SPARSE_MODES = ("full", "inference_free")


def _sparse(c: _Checker, node: ast.Sparse, info: CollectionInfo) -> SparseSignal:
    like = isinstance(node.query, ast.MoreLike)
    got = c.args(node.args, {"field", "mode", *(("terms", "include_liked") if like else ())}, "SPARSE")
    field = info.sparse_field()
    if "field" in got:
        name = c.value(got["field"].value)
        if not isinstance(name, str):
            raise c.error(f"field => expects a sparse field's name, got {name!r}", got["field"].value.pos)
        try:
            field = info.sparse_field(name)
        except CheckError as exc:
            raise c.error(exc.message, got["field"].value.pos) from None
    mode = None
    if "mode" in got:
        mode = c.value(got["mode"].value)
        if not isinstance(mode, str) or mode.lower() not in SPARSE_MODES:
            raise c.error(f"mode => expects one of {', '.join(SPARSE_MODES)}, got {mode!r}", got["mode"].value.pos)
        mode = mode.lower()
        if field.bm25 or field.model == "none":
            what = "a BM25 field" if field.bm25 else "a field without a model"
            raise c.error(f"mode => chooses how a learned field's model reads query text; {field.name!r} is {what}", got["mode"].pos)
    label = "sparse" if field == info.sparse_field() else f"sparse_{field.name}"
    if like:
        if mode is not None:
            raise c.error("mode => applies to query text; LIKE searches with the documents' own terms", got["mode"].pos)
        return SparseSignal(check_like.liked(c, node.query, got, sparse=True), node.pos, field, label)
    query = c.param(node.query) if isinstance(node.query, ast.Param) else node.query.value
    if isinstance(query, dict):
        bad = [t for t, w in query.items() if not isinstance(t, str) or isinstance(w, bool) or not isinstance(w, (int, float)) or not _finite(w) or w < 0]
        if bad or not query:
            raise c.error("SPARSE(...) takes text or a non-empty {term: weight >= 0} mapping", node.query.pos)
        if mode is not None:
            raise c.error("mode => applies to query text; a {term: weight} mapping is used as given", got["mode"].pos)
        return SparseSignal({t: float(w) for t, w in query.items()}, node.pos, field, label)
    if not isinstance(query, str):
        raise c.error(f"SPARSE(...) takes text, got {type(query).__name__}", node.query.pos)
    if not field.bm25 and field.model == "none":
        where = f"collection {info.name!r}" if len(info.sparse_fields) == 1 else f"sparse field {field.name!r}"
        raise c.error(
            f"{where} stores precomputed sparse vectors (no model reads text); bind SPARSE(:q) to a {{token: weight}} mapping",
            node.query.pos,
        )
    return SparseSignal(c.valid_text(query, node.query.pos, "query text"), node.pos, field, label, mode == "inference_free")


MAX_EF_SEARCH = 1000  # pgvector's own limit for hnsw.ef_search


def _dense(c: _Checker, node: ast.Dense, info: CollectionInfo) -> DenseSignal:
    like = isinstance(node.query, ast.MoreLike)
    got = c.args(node.args, {"ef_search", *(("include_liked",) if like else ())}, "DENSE")
    ef = int(c.number(got["ef_search"], integer=True, low=1, high=MAX_EF_SEARCH)) if "ef_search" in got else None
    if like:
        return DenseSignal(check_like.liked(c, node.query, got, sparse=False), node.pos, ef_search=ef)
    query = c.param(node.query) if isinstance(node.query, ast.Param) else node.query.value
    if isinstance(query, str) and info.settings.dense == "none":
        # pgvector's text form ('[0.1, 0.2]'): how a client without parameters writes a vector
        try:
            query = _vector_text(query) or query
        except ValueError:
            raise c.error("DENSE(...) vector text holds something that is not a number", node.query.pos) from None
    if isinstance(query, str):
        if info.settings.dense == "none":
            raise c.error(
                f"collection {info.name!r} has no dense model (dense => 'none'); bind DENSE(:q) to a vector",
                node.query.pos,
            )
        return DenseSignal(c.valid_text(query, node.query.pos, "query text"), node.pos, ef_search=ef)
    try:
        vector = np.asarray(query, dtype=np.float64)
    except OverflowError:
        raise c.error("DENSE(...) vector holds an integer too large for a vector component", node.query.pos) from None
    except (TypeError, ValueError):
        vector = None
    if vector is None or vector.ndim != 1 or isinstance(query, (bool, int, float)):
        raise c.error(f"DENSE(...) takes text or a vector, got {type(query).__name__}", node.query.pos)
    if vector.shape[0] != info.settings.dim:
        raise c.error(
            f"DENSE(...) vector has {vector.shape[0]} dimensions; collection {info.name!r} stores {info.settings.dim}",
            node.query.pos,
        )
    if not np.isfinite(vector).all():
        raise c.error("DENSE(...) vector holds NaN or infinite components", node.query.pos)
    with np.errstate(over="ignore"):
        single = vector.astype(np.float32)  # what pgvector compares: past 3.4e38 is infinite
    if not np.isfinite(single).all():
        raise c.error("DENSE(...) vector holds a component beyond single precision (pgvector stores float4, up to 3.4e38)", node.query.pos)
    if not np.any(single):
        raise c.error("DENSE(...) vector is all zeros, so it has no direction to compare", node.query.pos)
    return DenseSignal(single, node.pos, ef_search=ef)


def _fusion(c: _Checker, arg: ast.Arg | None, n_inputs: int) -> Fusion:
    if arg is None:
        return DEFAULT_FUSION
    node = arg.value
    if isinstance(node, ast.Name):
        node = ast.Call(node.name, (), node.pos)
    if not isinstance(node, ast.Call) or node.name.lower() not in ("rrf", "linear"):
        raise c.error("fusion => expects rrf(k => 60) or linear(alpha => 0.5, norm => minmax)", arg.value.pos)
    if node.name.lower() == "rrf":
        got = c.args(node.args, {"k"}, "rrf")
        k = c.number(got["k"], integer=True, low=0, high=1_000_000) if "k" in got else 60
        return Fusion("rrf", k=int(k), weights=tuple([1.0] * n_inputs))
    got = c.args(node.args, {"alpha", "weights", "norm"}, "linear")
    if "alpha" in got and "weights" in got:
        raise c.error("linear(...) takes alpha or weights, not both", got["weights"].pos)
    norm = "minmax"
    if "norm" in got:
        norm = str(c.value(got["norm"].value)).lower()
        if norm not in ("minmax", "zscore", "none"):
            raise c.error(f"norm => {norm!r} is not one of minmax, zscore, none", got["norm"].value.pos)
    chosen = got.get("alpha") or got.get("weights")
    if chosen is not None and isinstance(chosen.value, ast.Name) and chosen.value.name.lower() == "auto":
        return Fusion("linear", weights=(), norm=norm, adaptive=True)
    if "alpha" in got:
        if n_inputs != 2:
            raise c.error(f"alpha => applies to two inputs; this HYBRID has {n_inputs}: use weights => [...]", got["alpha"].pos)
        alpha = c.number(got["alpha"], integer=False, low=0.0, high=1.0)
        weights: tuple[float, ...] = (alpha, 1.0 - alpha)
    elif "weights" in got:
        raw = c.value(got["weights"].value)
        if (
            not isinstance(raw, list)
            or len(raw) != n_inputs
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and _finite(w) and w >= 0 for w in raw)
        ):
            raise c.error(f"weights => expects a list of {n_inputs} non-negative numbers", got["weights"].value.pos)
        weights = tuple(float(w) for w in raw)
    else:
        weights = tuple([1.0 / n_inputs] * n_inputs)
    return Fusion("linear", weights=weights, norm=norm)


def _search(c: _Checker, node: ast.Search, info: CollectionInfo, limit: int) -> CheckedSearch:
    if isinstance(node, ast.Sparse):
        return CheckedSearch((_sparse(c, node, info),), None, limit)
    if isinstance(node, ast.Dense):
        return CheckedSearch((_dense(c, node, info),), None, limit)
    got = c.args(node.args, {"fusion", "candidates"}, "HYBRID")
    kinds = tuple("sparse" if isinstance(i, ast.Sparse) else "dense" for i in node.inputs)
    stored_inputs = tuple(info.extra.get(DEFAULTS_KEY, {}).get("HYBRID", {}).get("inputs", ()))
    built_in = {"fusion": DEFAULT_FUSION.text(), "candidates": str(DEFAULT_CANDIDATES)}
    # A tuned fusion holds for the inputs it was tuned on (its weights are theirs).
    got = c.with_defaults(got, info, "HYBRID", built_in, {"candidates", *(("fusion",) if stored_inputs == kinds else ())})
    signals: list[Signal] = []
    for item in node.inputs:
        if isinstance(item, ast.Sparse):
            signals.append(_sparse(c, item, info))
        elif isinstance(item, ast.Dense):
            signals.append(_dense(c, item, info))
        else:
            raise c.error("HYBRID(...) inputs are SPARSE(...) or DENSE(...), not a nested HYBRID", item.pos)
    if len(signals) < 2:
        raise c.error("HYBRID(...) needs at least two inputs", node.pos)
    candidates = DEFAULT_CANDIDATES
    if "candidates" in got:
        candidates = int(c.number(got["candidates"], integer=True, low=1, high=MAX_CANDIDATES))
    return CheckedSearch(tuple(signals), _fusion(c, got.get("fusion"), len(signals)), max(candidates, limit))


def _side(c: _Checker, arg: ast.Arg, choices: dict[str, set[str]]) -> tuple[str, dict[str, ast.Arg]] | None:
    """`none`, a bare method name or `method(args)`: the method and its checked arguments."""
    node = arg.value
    if isinstance(node, ast.Name):
        node = ast.Call(node.name, (), node.pos)
    names = " | ".join([*choices, "none"])
    if not isinstance(node, ast.Call) or node.name.lower() not in (*choices, "none"):
        raise c.error(f"{arg.name} => expects {names}", arg.value.pos)
    method = node.name.lower()
    if method == "none":
        if node.args:
            raise c.error("none takes no arguments", node.pos)
        return None
    return method, c.args(node.args, choices[method], method)


def _flag(c: _Checker, arg: ast.Arg) -> bool:
    value = c.value(arg.value)
    if not isinstance(value, bool):
        raise c.error(f"{arg.name} => expects true or false, got {value!r}", arg.value.pos)
    return value


def _prf(c: _Checker, node: ast.Prf, search: CheckedSearch, info: CollectionInfo) -> CheckedPrf:
    got = c.args(node.args, {"depth", "sparse", "dense", "interpolate"}, "PRF")
    kinds = {type(s) for s in search.signals}
    applies = {"depth"} | ({"sparse"} if SparseSignal in kinds else set()) | ({"dense"} if DenseSignal in kinds else set())
    applies |= {"interpolate"} if search.fusion is not None else set()
    got = c.with_defaults(got, info, "PRF", {name: PRF_TEXT[name] for name in applies}, applies)
    depth = PRF_DEFAULTS.depth
    if "depth" in got:
        depth = int(c.number(got["depth"], integer=True, low=1, high=MAX_PRF_DEPTH))
    rm3 = PRF_DEFAULTS.sparse if SparseSignal in kinds else None
    if "sparse" in got:
        if SparseSignal not in kinds:
            raise c.error("sparse => applies to a SPARSE signal; this search has none", got["sparse"].pos)
        side = _side(c, got["sparse"], {"rm3": {"terms", "weight", "max_df", "min_docs", "selective"}})
        rm3 = None
        if side is not None:
            a = side[1]
            rm3 = Rm3(
                terms=int(c.number(a["terms"], integer=True, low=1, high=1000)) if "terms" in a else PRF_DEFAULTS.sparse.terms,
                weight=c.number(a["weight"], integer=False, low=0.0, high=1.0) if "weight" in a else PRF_DEFAULTS.sparse.weight,
                max_df=c.number(a["max_df"], integer=False, low=0.0, high=1.0) if "max_df" in a else PRF_DEFAULTS.sparse.max_df,
                min_docs=int(c.number(a["min_docs"], integer=True, low=1, high=MAX_PRF_DEPTH)) if "min_docs" in a else PRF_DEFAULTS.sparse.min_docs,
                selective=_flag(c, a["selective"]) if "selective" in a else PRF_DEFAULTS.sparse.selective,
            )
    vprf = PRF_DEFAULTS.dense if DenseSignal in kinds else None
    if "dense" in got:
        if DenseSignal not in kinds:
            raise c.error("dense => applies to a DENSE signal; this search has none", got["dense"].pos)
        side = _side(c, got["dense"], {"average": set(), "rocchio": {"alpha", "beta"}})
        vprf = None
        if side is not None:
            method, a = side
            vprf = VectorPrf(
                method,
                c.number(a["alpha"], integer=False, low=0.0, high=1000.0) if "alpha" in a else PRF_DEFAULTS.dense.alpha,
                c.number(a["beta"], integer=False, low=0.0, high=1000.0) if "beta" in a else PRF_DEFAULTS.dense.beta,
            )
            if method == "rocchio" and vprf.alpha == 0 and vprf.beta == 0:
                raise c.error("rocchio(alpha => 0, beta => 0) leaves no query", got["dense"].value.pos)
    interpolate = PRF_DEFAULTS.interpolate
    if "interpolate" in got:
        if search.fusion is None:
            raise c.error("interpolate => applies to HYBRID searches", got["interpolate"].pos)
        interpolate = str(c.value(got["interpolate"].value))
        if interpolate not in ("before", "after", "both"):
            raise c.error(f"interpolate => {interpolate!r} is not one of before, after, both", got["interpolate"].value.pos)
    return CheckedPrf(depth, rm3, vprf, interpolate if search.fusion is not None else "after")


# ----------------------------------------------------------------------------- WHERE


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


def _operand(c: _Checker, op: ast.Operand, info: CollectionInfo) -> None:
    if isinstance(op, ast.Column):
        if info.field_type(op.name.lower()) is None:
            raise c.error(_unknown_field(op.name, info), op.pos)
    elif isinstance(op, ast.JsonPath):
        _operand(c, op.column, info)
        if info.field_type(op.column.name.lower()) != "jsonb":
            raise c.error(f"-> and ->> apply to metadata, not to {op.column.name!r}", op.pos)
    elif isinstance(op, ast.Cast):
        if op.type_name.lower() not in CAST_TYPES:
            raise c.error(f"cannot cast to {op.type_name!r}; known: {', '.join(sorted(CAST_TYPES))}", op.pos)
        _operand(c, op.expr, info)
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


def _unknown_field(name: str, info: CollectionInfo) -> str:
    known = ", ".join(["id", *(f.name for f in info.fields), "metadata"])
    return f"unknown field {name!r} in collection {info.name!r} (fields: {known})"


def _predicate(c: _Checker, node: ast.Predicate, info: CollectionInfo) -> None:
    if isinstance(node, (ast.And, ast.Or)):
        for item in node.items:
            _predicate(c, item, info)
    elif isinstance(node, ast.Not):
        _predicate(c, node.item, info)
    elif isinstance(node, ast.IsNull):
        _operand(c, node.expr, info)
    elif isinstance(node, ast.Compare):
        _operand(c, node.left, info)
        _operand(c, node.right, info)
        left, right = operand_kind(node.left, info, c.params), operand_kind(node.right, info, c.params)
        if "null" in (left, right):
            raise c.error(f"comparing with NULL is never true; write IS {'NOT ' if node.op in ('!=', '<>') else ''}NULL", node.pos)
        if not _compatible(left, right):
            raise c.error(f"cannot compare {left} with {right}", node.pos)
    elif isinstance(node, ast.InList):
        _operand(c, node.expr, info)
        left = operand_kind(node.expr, info, c.params)
        kinds = {operand_kind(item, info, c.params) for item in node.items}
        if left in ("jsontext", "jsonb") and len(kinds) > 1:
            raise c.error(f"IN list mixes {' and '.join(sorted(kinds))}; a JSON value compares with one kind", node.pos)
        for item in node.items:
            _operand(c, item, info)
            right = operand_kind(item, info, c.params)
            if right == "null" or not _compatible(left, right):
                raise c.error(f"IN list item of kind {right} does not match {left}", item.pos)
    elif isinstance(node, ast.Like):
        _operand(c, node.expr, info)
        _operand(c, node.pattern, info)
        for side in (node.expr, node.pattern):
            if operand_kind(side, info, c.params) not in ("text", "jsontext"):
                raise c.error("LIKE and ILIKE compare text", side.pos)


# ----------------------------------------------------------------------------- statements


def _collection(c: _Checker, node: ast.Name, catalog: Catalog) -> CollectionInfo:
    try:
        name = check_name(node.name)
    except CheckError as exc:
        raise c.error(exc.message, node.pos) from None
    info = catalog(name)
    if info is None:
        raise c.error(f"collection {node.name!r} does not exist", node.pos)
    return info


def _select(c: _Checker, node: ast.Select, catalog: Catalog) -> CheckedSelect:
    info = _collection(c, node.collection, catalog)
    columns: list[str] = []
    highlights: list[CheckedHighlight] = []
    with_score = with_cursor = False
    facets = check_facets(c, node, info, _unknown_field)
    for item in node.items if facets is None else ():
        if isinstance(item, ast.Highlight):
            highlights.append(check_page.highlight(c, item, info, node.search is not None, _unknown_field))
            continue
        col = item.name.lower()
        if col == "score":
            if node.search is None:
                raise c.error("score needs a SEARCH clause", item.pos)
            with_score = True
        elif col == "cursor" and info.field_type(col) is None:
            if node.search is None:
                raise c.error("cursor needs a SEARCH clause: it names a row of the ranking", item.pos)
            with_cursor = True
        elif info.field_type(col) is None:
            raise c.error(_unknown_field(item.name, info), item.pos)
        elif col not in columns:
            columns.append(col)
    if not node.items and facets is None:
        columns = ["id", *(f.name for f in info.fields), "metadata"]
        with_score = node.search is not None
    collapse = None
    if node.distinct_on is not None:
        collapse = node.distinct_on.name.lower()
        if collapse != "id" and collapse not in {f.name for f in info.fields}:
            raise c.error(_unknown_field(node.distinct_on.name, info) + "; DISTINCT ON takes id or a declared field", node.distinct_on.pos)
    hidden = tuple(dict.fromkeys(f for f in [*(h.field for h in highlights), collapse] if f is not None and f not in columns))
    columns += hidden
    fingerprint = check_page.search_fingerprint(c, node) if node.search is not None else ""
    cursor = check_page.cursor(c, node, with_cursor, fingerprint)
    seekable = (isinstance(node.search, ast.Sparse) and not isinstance(node.search.query, ast.MoreLike)
                and node.prf is None and node.diversify is None and node.distinct_on is None and not node.order_by
                and node.rerank is None)
    limit, offset, page_size, seek = check_page.page(c, node, cursor, seekable)
    if node.distinct_on is not None:
        limit = min(MAX_LIMIT, max(COLLAPSE_DEPTH, limit))
    if facets is not None:  # LIMIT and OFFSET page the groups; the hits are the search's candidates
        search = _search(c, node.search, info, FACET_DEPTH) if node.search is not None else None
        limit = search.candidates if search is not None else 0
    else:
        search = _search(c, node.search, info, limit) if node.search is not None else None
    prf = None
    if node.prf is not None:
        if search is None:
            raise c.error("WITH PRF needs a SEARCH clause to take feedback from", node.prf.pos)
        prf = _prf(c, node.prf, search, info)
    diversify = None
    if node.diversify is not None:
        if search is None:
            raise c.error("DIVERSIFY needs a SEARCH clause to choose from", node.diversify.pos)
        diversify = _diversify(c, node.diversify, limit)
        if diversify.hops and "graph" not in info.extra:
            raise c.error(
                f"hops => {diversify.hops} walks the kNN graph, and collection {info.name!r} has none; "
                f"build it with BUILD GRAPH ON {info.name}",
                node.diversify.pos,
            )
    boost = rerank = None
    if facets is None and search is not None:
        boost = check_boost(c, node, info, _unknown_field, max(limit, search.candidates))
    if node.rerank is not None:
        rerank = _rerank(c, node, info, search, facets, limit)
    if node.where is not None:
        _predicate(c, node.where, info)
    return CheckedSelect(
        info, tuple(columns), with_score, search, node.where, limit, c.params, prf=prf, diversify=diversify, defaults=tuple(c.defaults),
        offset=offset, page_size=page_size, cursor=cursor, highlights=tuple(highlights), hidden=hidden, collapse=collapse, facets=facets,
        fingerprint=fingerprint, seek=seek, boost=boost, rerank=rerank,
    )


def _rerank(c: _Checker, node: ast.Select, info: CollectionInfo, search: CheckedSearch | None, facets: CheckedFacets | None,
            limit: int) -> CheckedRerank:
    if search is None:
        raise c.error("RERANK needs a SEARCH clause: it orders the search's top candidates", node.rerank.pos)
    for clause, present in (("GROUP BY", facets), ("DIVERSIFY", node.diversify), ("ORDER BY", node.order_by)):
        if present:
            raise c.error(f"RERANK does not go with {clause}: the cross-encoder's scores are the final order", node.rerank.pos)
    texts = [s.query for s in search.signals if isinstance(s.query, str)]
    return check_rerank(c, node.rerank, info, texts, limit)


# ----------------------------------------------------------------------------- INSERT and DELETE


def insert_columns(info: CollectionInfo) -> dict[str, str]:
    """INSERT's columns for a collection -> the keys of an ingest document: `embedding` is the
    dense vector ("vector"), `sparse` exists where a sparse field is learned."""
    columns = {"id": "id", **{f.name: f.name for f in info.fields}, "metadata": "metadata", "embedding": "vector"}
    if any(not f.bm25 for f in info.sparse_fields):
        columns["sparse"] = "sparse"
    return columns


def _vector_text(text: str) -> list[float] | None:
    """'[0.1, 0.2]' (pgvector) or '{0.1,0.2}' (a PostgreSQL array) as numbers; None if the text
    is neither; ValueError if it is bracketed but holds something that is not a number."""
    inner = text.strip()
    if len(inner) < 2 or (inner[0], inner[-1]) not in (("[", "]"), ("{", "}")):
        return None
    parts = inner[1:-1].split(",")
    return [] if parts == [""] else [float(part) for part in parts]


def _insert_value(c: _Checker, node: ast.Literal | ast.Param, key: str) -> object:
    """A written value as ingest takes it: text that holds JSON (metadata, sparse) or a vector
    (embedding) is decoded, so a literal and a parameter may carry either form."""
    value = c.param(node) if isinstance(node, ast.Param) else node.value
    if not isinstance(value, str) or key not in ("metadata", "sparse", "vector"):
        return value
    if key == "vector":
        try:
            vector = _vector_text(value)
        except ValueError:
            vector = None
        if vector is None:
            raise c.error(f"embedding text must look like '[0.1, 0.2]' or '{{0.1,0.2}}', got {value[:40]!r}", node.pos)
        return vector
    try:
        decoded = json.loads(value)
    except ValueError as exc:
        raise c.error(f"{key} text is not JSON ({exc})", node.pos) from None
    if not isinstance(decoded, dict):
        raise c.error(f"{key} must be a JSON object, got {type(decoded).__name__}", node.pos)
    return decoded


def _insert(c: _Checker, node: ast.Insert, catalog: Catalog) -> CheckedInsert:
    info = _collection(c, node.collection, catalog)
    known = insert_columns(info)
    keys: list[str] = []
    for column in node.columns:
        key = known.get(column.name.lower())
        if key is None:
            raise c.error(f"unknown column {column.name!r} for collection {info.name!r} (columns: {', '.join(known)})", column.pos)
        if key in keys:
            raise c.error(f"column {column.name!r} is listed twice", column.pos)
        keys.append(key)
    first = node.columns[0].pos
    if "id" not in keys:
        raise c.error("INSERT needs the id column: every document has one", first)
    if "vector" not in keys and info.settings.dense == "none":
        raise c.error(f"collection {info.name!r} has no dense model (dense => 'none'); list an embedding column", first)
    docs = []
    for number, row in enumerate(node.rows, 1):
        if len(row.values) != len(keys):
            raise c.error(f"row {number} has {len(row.values)} values for {len(keys)} columns", row.pos)
        ident = _insert_value(c, row.values[keys.index("id")], "id")
        # named as Collection.add names a document: its position, then its id once it has one
        where = f"row {number}" + (f" (id {ident!r})" if isinstance(ident, (str, int)) and not isinstance(ident, bool) else "")
        doc = {}
        for key, value in zip(keys, row.values):
            doc[key] = _insert_value(c, value, key)
            if key == "vector" and doc[key] is None and info.settings.dense == "none":
                raise c.error(f"collection {info.name!r} has no dense model (dense => 'none'); embedding cannot be NULL", value.pos)
            try:
                ingest.check_value(info, key, doc[key], where, label="embedding")
            except IngestError as exc:
                raise c.error(exc.message, value.pos) from None
        try:  # what a row needs as a whole (a learned field without a model needs its vector)
            ingest.validate(info, doc, number, where=where)
        except IngestError as exc:
            raise c.error(exc.message, row.pos) from None
        docs.append(doc)
    return CheckedInsert(info, tuple(docs))


def _delete(c: _Checker, node: ast.Delete, catalog: Catalog) -> CheckedDelete:
    info = _collection(c, node.collection, catalog)
    if node.where is not None:
        _predicate(c, node.where, info)
    return CheckedDelete(info, node.where, c.params)


def _diversify(c: _Checker, node: ast.Diversify, limit: int) -> CheckedDiversify:
    method = node.method.lower()
    if method not in ("coverage", "mmr"):
        raise c.error(f"DIVERSIFY BY {node.method} is not a method; use COVERAGE or MMR", node.pos)
    got = c.args(node.args, set(DIVERSIFY_DEFAULTS), method.upper())
    d = DIVERSIFY_DEFAULTS
    # the default pool grows with the page's end (LIMIT + OFFSET); one given must hold it
    candidates = int(c.number(got["candidates"], integer=True, low=1, high=MAX_LIMIT)) if "candidates" in got else max(d["candidates"], limit)
    if candidates < limit:
        raise c.error(
            f"DIVERSIFY chooses {limit} documents (LIMIT + OFFSET) from {candidates} candidates; raise candidates => to at least {limit}",
            got["candidates"].pos,
        )
    return CheckedDiversify(
        method,
        c.number(got["lambda"], integer=False, low=0.0, high=1.0) if "lambda" in got else d["lambda"],
        candidates,
        int(c.number(got["hops"], integer=True, low=0, high=MAX_HOPS)) if "hops" in got else d["hops"],
    )


def _option_value(c: _Checker, arg: ast.Arg) -> object:
    value = c.value(arg.value)
    if isinstance(value, float) and not math.isfinite(value):
        raise c.error(f"{arg.name} => must be finite", arg.value.pos)
    return value


def _blame(statement: ast.CreateCollection, message: str) -> ast.Pos:
    """The option or field an error message is about (it names it), else the statement."""
    for arg in statement.options:
        if f"{arg.name.lower()} =>" in message:
            return arg.pos
    for f in reversed(statement.fields):
        if repr(f.name.lower()) in message:
            return f.pos
    return statement.pos


def check(statement: ast.Statement, catalog: Catalog, params: dict | None = None, text: str = "") -> Checked:
    """Validate a parsed statement; `catalog(name)` returns a collection's info or None."""
    c = _Checker(text, dict(params or {}))
    if isinstance(statement, ast.Explain):
        checked = _select(c, statement.select, catalog)
        return replace(checked, explain=True, analyze=statement.analyze)
    if isinstance(statement, ast.Select):
        return _select(c, statement, catalog)
    if isinstance(statement, ast.CreateCollection):
        from sparsesql.db.schema import make_fields, make_settings, placement

        try:
            name = check_name(statement.name.name)
        except CheckError as exc:
            raise c.error(exc.message, statement.name.pos) from None
        for f in statement.fields:
            try:
                make_fields([(f.name, f.type_name)])
            except CheckError as exc:
                raise c.error(exc.message, f.pos) from None
        options = {}
        for arg in statement.options:
            if arg.name.lower() in options:
                raise c.error(f"option {arg.name!r} is given twice", arg.pos)
            options[arg.name.lower()] = _option_value(c, arg)
        pairs = tuple((f.name, f.type_name) for f in statement.fields)
        try:
            scoring = dict(options)
            placement(scoring)
            make_settings(make_fields(list(pairs)), scoring)
        except CheckError as exc:
            raise c.error(exc.message, _blame(statement, exc.message)) from None
        return CheckedCreate(name, pairs, options, statement.if_not_exists)
    if isinstance(statement, ast.DropCollection):
        try:
            name = check_name(statement.name.name)
        except CheckError as exc:
            raise c.error(exc.message, statement.name.pos) from None
        return CheckedDrop(name, statement.if_exists)
    if isinstance(statement, (ast.BuildGraph, ast.ShowGraph)):
        return _graph_statement(c, statement, catalog)
    if isinstance(statement, ast.SetOption):
        return _set_option(c, statement)
    if isinstance(statement, ast.Insert):
        return _insert(c, statement, catalog)
    if isinstance(statement, ast.Delete):
        return _delete(c, statement, catalog)
    return CheckedShow()


def _set_option(c: _Checker, statement: ast.SetOption) -> CheckedSet:
    name = statement.name.name.lower()
    if name not in SETTINGS:
        raise c.error(f"unknown setting {statement.name.name!r}; settings: {', '.join(SETTINGS)}", statement.name.pos)
    raw = statement.value.name.lower() if isinstance(statement.value, ast.Name) else statement.value.value
    if name in ("sparse_tier", "dense_tier"):
        value = {True: True, False: False, "on": True, "off": False, "true": True, "false": False}.get(raw)
        if value is None or (isinstance(raw, (int, float)) and not isinstance(raw, bool)):
            raise c.error(f"{name} takes on or off, got {raw!r}", statement.value.pos)
        return CheckedSet(name, value)
    if raw in ("none", "unlimited"):
        return CheckedSet(name, None)

    if raw == "default":
        return CheckedSet(name, parse_bytes("auto"))

    size: float | int | None = None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        size = raw
    elif isinstance(raw, str):
        try:
            size = parse_bytes(raw)
        except CheckError:
            size = None
    if size is None or size <= 0:
        raise c.error(f"{name} takes a size such as '2GB' or '512MB' (or none, or 'auto'), got {raw!r}", statement.value.pos)
    return CheckedSet(name, int(size))


def _graph_statement(c: _Checker, statement: ast.BuildGraph | ast.ShowGraph, catalog: Catalog) -> Checked:
    try:
        name = check_name(statement.name.name)
    except CheckError as exc:
        raise c.error(exc.message, statement.name.pos) from None
    info = catalog(name)
    if info is None:
        raise c.error(f"collection {statement.name.name!r} does not exist", statement.name.pos)
    if isinstance(statement, ast.ShowGraph):
        if "graph" not in info.extra:
            raise c.error(f"collection {name!r} has no graph; build one with BUILD GRAPH ON {name}", statement.name.pos)
        return CheckedShowGraph(name)
    got = c.args(statement.options, {"k"}, "BUILD GRAPH")
    k = int(c.number(got["k"], integer=True, low=1, high=MAX_GRAPH_K)) if "k" in got else DEFAULT_GRAPH_K
    return CheckedBuildGraph(name, k)
