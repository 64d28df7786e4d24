"""Checking a SEARCH: its signals (SPARSE, DENSE, HYBRID and its fusion), WITH PRF and DIVERSIFY BY,
each argument against its range, with the built-in and a collection's stored defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from sparsesql.db.catalog import CollectionInfo, SparseField
from sparsesql.errors import CheckError, position
from sparsesql.lang import ast, check_like, search_syntax
from sparsesql.lang.check_core import Checker, DEFAULTS_KEY, finite
from sparsesql.lang.check_like import Liked
from sparsesql.lang.check_page import MAX_LIMIT


DEFAULT_CANDIDATES = 200  # HYBRID's candidates per signal, chosen by benchmarks/tune_defaults.py


MAX_CANDIDATES = 100_000


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
    syntax: search_syntax.SyntaxFilter | None = None  # the search syntax's phrases and exclusions
    fields: tuple[float, ...] | None = None  # BM25F: a weight per text field (the collection's text_fields order)


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


SPARSE_MODES = ("full", "inference_free")


def sparse_signal(c: Checker, node: ast.Sparse, info: CollectionInfo) -> SparseSignal:
    like = isinstance(node.query, ast.MoreLike)
    got = c.args(node.args, {"field", "mode", *(("terms", "include_liked") if like else ("syntax", "fields"))}, "SPARSE")
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
    weights = _field_weights(c, got["fields"], info, field) if "fields" in got else None
    query = c.param(node.query) if isinstance(node.query, ast.Param) else node.query.value
    if isinstance(query, dict):
        bad = [t for t, w in query.items() if not isinstance(t, str) or isinstance(w, bool) or not isinstance(w, (int, float)) or not finite(w) or w < 0]
        if bad or not query:
            raise c.error("SPARSE(...) takes text or a non-empty {term: weight >= 0} mapping", node.query.pos)
        if mode is not None:
            raise c.error("mode => applies to query text; a {term: weight} mapping is used as given", got["mode"].pos)
        if "syntax" in got:
            raise c.error("syntax => applies to query text; a {term: weight} mapping is used as given", got["syntax"].pos)
        return SparseSignal({t: float(w) for t, w in query.items()}, node.pos, field, label, fields=weights)
    if not isinstance(query, str):
        raise c.error(f"SPARSE(...) takes text, got {type(query).__name__}", node.query.pos)
    if not field.bm25 and field.model == "none":
        where = f"collection {info.name!r}" if len(info.sparse_fields) == 1 else f"sparse field {field.name!r}"
        raise c.error(
            f"{where} stores precomputed sparse vectors (no model reads text); bind SPARSE(:q) to a {{token: weight}} mapping",
            node.query.pos,
        )
    query = c.valid_text(query, node.query.pos, "query text")
    syntax = _syntax(c, got.get("syntax"), field)
    if syntax == "plain":
        return SparseSignal(query, node.pos, field, label, mode == "inference_free", fields=weights)
    try:
        text = search_syntax.parse(query)
    except search_syntax.SyntaxProblem as exc:
        raise c.error(f"{exc.message} (character {exc.offset + 1} of the search text)", _inside(c, node.query, exc.offset)) from None
    found = search_syntax.analysed(text)
    if found is not None and found.positional and not info.settings.positions:
        unit = found.positional[0].unit
        raise c.error(
            f"collection {info.name!r} was made before sparsesql stored word positions, so it cannot match {search_syntax.shown(unit)}; "
            "re-create it (CREATE COLLECTION) and add its documents again, or search without syntax => 'web'",
            _inside(c, node.query, unit.offset))
    return SparseSignal(text.scored, node.pos, field, label, False, found, weights)


MAX_FIELD_WEIGHT = 1000.0


def _field_weights(c: Checker, arg: ast.Arg, info: CollectionInfo, field: SparseField) -> tuple[float, ...]:
    """`fields => (title => 2.0, abstract => 1.0)` (or a parameter bound to such a mapping): a
    weight per text field, 0 for one not named. BM25F scores the BM25 field's text fields
    one by one, so collections made before the fields' own counts were stored cannot."""
    where = arg.value.pos
    if not field.bm25:
        raise c.error(f"fields => weighs the text fields BM25 analyses; {field.name!r} is a learned field", where)
    if isinstance(arg.value, ast.Pairs):
        named = [(a.name.lower(), c.value(a.value), a.pos) for a in arg.value.args]
    else:
        value = c.value(arg.value)
        if not isinstance(value, dict):
            raise c.error(f"fields => expects (field => weight, ...), got {value!r}", where)
        named = [(str(k).lower(), v, where) for k, v in value.items()]
    text_fields = info.settings.text_fields
    weights = dict.fromkeys(text_fields, 0.0)
    seen: set[str] = set()
    for name, weight, pos in named:
        if name not in weights:
            raise c.error(f"fields => names {name!r}, which is not a text field of {info.name!r} (text fields: {', '.join(text_fields) or 'none'})", pos)
        if name in seen:
            raise c.error(f"fields => names {name!r} twice", pos)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not finite(weight) or not 0 <= weight <= MAX_FIELD_WEIGHT:
            raise c.error(f"fields => gives {name!r} the weight {weight!r}; a weight is a number from 0 to {MAX_FIELD_WEIGHT:g}", pos)
        seen.add(name)
        weights[name] = float(weight)
    if not any(weights.values()):
        raise c.error("fields => needs a field with a weight above 0", where)
    if len(text_fields) > 1 and not info.settings.field_stats:
        raise c.error(f"collection {info.name!r} was made before sparsesql stored each text field's own term counts, so it cannot weigh "
                      "its fields; re-create it (CREATE COLLECTION) and add its documents again", where)
    return tuple(weights.values())


SYNTAXES = ("web", "plain")


def _syntax(c: Checker, arg: ast.Arg | None, field: SparseField) -> str:
    """`syntax => 'web'` (quotes, -, OR) or 'plain' (the text as words only: the default, since
    quotes in prose queries are quotations, and reading them as phrases cost 0.019 nDCG@10 on
    CISI, docs/decisions.md); a learned field's model reads the text as it is."""
    if arg is None:
        return "plain"
    value = c.value(arg.value)
    if not isinstance(value, str) or value.lower() not in SYNTAXES:
        raise c.error(f"syntax => expects one of {', '.join(SYNTAXES)}, got {value!r}", arg.value.pos)
    if value.lower() == "web" and not field.bm25:
        raise c.error(f"syntax => 'web' needs BM25's analyzer; {field.name!r} is a learned field, whose model reads the text as it is", arg.value.pos)
    return value.lower()


def _inside(c: Checker, node: ast.Literal | ast.Param, offset: int) -> ast.Pos:
    """Where character `offset` of a string literal's value is in the query text (a doubled
    quote is one character of the value); a parameter's own place when the text was bound."""
    lines = c.text.split("\n")
    start = sum(len(line) + 1 for line in lines[: node.pos.line - 1]) + node.pos.column - 1
    if not isinstance(node, ast.Literal) or c.text[start:start + 1] != "'":
        return node.pos
    at, seen = start + 1, 0
    while at < len(c.text) and seen < offset:
        at += 2 if c.text[at:at + 2] == "''" else 1
        seen += 1
    return ast.Pos(*position(c.text, at))


MAX_EF_SEARCH = 1000  # pgvector's own limit for hnsw.ef_search


def dense_signal(c: Checker, node: ast.Dense, info: CollectionInfo) -> DenseSignal:
    like = isinstance(node.query, ast.MoreLike)
    got = c.args(node.args, {"ef_search", *(("include_liked",) if like else ())}, "DENSE")
    ef = int(c.number(got["ef_search"], integer=True, low=1, high=MAX_EF_SEARCH)) if "ef_search" in got else None
    if like:
        return DenseSignal(check_like.liked(c, node.query, got, sparse=False), node.pos, ef_search=ef)
    query = c.param(node.query) if isinstance(node.query, ast.Param) else node.query.value
    if isinstance(query, str) and info.settings.dense == "none":
        # pgvector's text form ('[0.1, 0.2]'): how a client without parameters writes a vector
        try:
            query = vector_text(query) or query
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


def check_fusion(c: Checker, arg: ast.Arg | None, n_inputs: int) -> Fusion:
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
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and finite(w) and w >= 0 for w in raw)
        ):
            raise c.error(f"weights => expects a list of {n_inputs} non-negative numbers", got["weights"].value.pos)
        weights = tuple(float(w) for w in raw)
    else:
        weights = tuple([1.0 / n_inputs] * n_inputs)
    return Fusion("linear", weights=weights, norm=norm)


def check_search(c: Checker, node: ast.Search, info: CollectionInfo, limit: int) -> CheckedSearch:
    if isinstance(node, ast.Sparse):
        return CheckedSearch((sparse_signal(c, node, info),), None, limit)
    if isinstance(node, ast.Dense):
        return CheckedSearch((dense_signal(c, node, info),), None, limit)
    got = c.args(node.args, {"fusion", "candidates"}, "HYBRID")
    kinds = tuple("sparse" if isinstance(i, ast.Sparse) else "dense" for i in node.inputs)
    stored_inputs = tuple(info.extra.get(DEFAULTS_KEY, {}).get("HYBRID", {}).get("inputs", ()))
    built_in = {"fusion": DEFAULT_FUSION.text(), "candidates": str(DEFAULT_CANDIDATES)}
    # A tuned fusion holds for the inputs it was tuned on (its weights are theirs).
    got = c.with_defaults(got, info, "HYBRID", built_in, {"candidates", *(("fusion",) if stored_inputs == kinds else ())})
    signals: list[Signal] = []
    for item in node.inputs:
        if isinstance(item, ast.Sparse):
            signals.append(sparse_signal(c, item, info))
        elif isinstance(item, ast.Dense):
            signals.append(dense_signal(c, item, info))
        else:
            raise c.error("HYBRID(...) inputs are SPARSE(...) or DENSE(...), not a nested HYBRID", item.pos)
    if len(signals) < 2:
        raise c.error("HYBRID(...) needs at least two inputs", node.pos)
    candidates = DEFAULT_CANDIDATES
    if "candidates" in got:
        candidates = int(c.number(got["candidates"], integer=True, low=1, high=MAX_CANDIDATES))
    return CheckedSearch(tuple(signals), check_fusion(c, got.get("fusion"), len(signals)), max(candidates, limit))


def _side(c: Checker, arg: ast.Arg, choices: dict[str, set[str]]) -> tuple[str, dict[str, ast.Arg]] | None:
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


def _flag(c: Checker, arg: ast.Arg) -> bool:
    value = c.value(arg.value)
    if not isinstance(value, bool):
        raise c.error(f"{arg.name} => expects true or false, got {value!r}", arg.value.pos)
    return value


def check_prf(c: Checker, node: ast.Prf, search: CheckedSearch, info: CollectionInfo) -> CheckedPrf:
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


def vector_text(text: str) -> list[float] | None:
    """'[0.1, 0.2]' (pgvector) or '{0.1,0.2}' (a PostgreSQL array) as numbers; None if the text
    is neither; ValueError if it is bracketed but holds something that is not a number."""
    inner = text.strip()
    if len(inner) < 2 or (inner[0], inner[-1]) not in (("[", "]"), ("{", "}")):
        return None
    parts = inner[1:-1].split(",")
    return [] if parts == [""] else [float(part) for part in parts]


def check_diversify(c: Checker, node: ast.Diversify, limit: int) -> CheckedDiversify:
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
