"""Checked SELECT -> plan. Decides which stages run where; binds every value as a parameter.

    no SEARCH         one SQL statement: filter, insertion order, LIMIT
    SPARSE or DENSE   [encode] -> one SQL statement: candidates joined with their columns
                      (memory tier: SPARSE's top k from the postings, then the rows; DENSE's
                      candidates from the codes, scored exactly by the statement that fetches rows)
    HYBRID            [encode] -> candidates per signal (SQL, filtered) -> fuse (Python) -> fetch (SQL)
    ... WITH PRF      first pass as above -> [fuse: feedback list] -> one feedback statement per
                      side (SQL) -> fuse -> fetch
    ... DIVERSIFY BY  the search above keeps `candidates` -> diversify (pool vectors in SQL, [graph
                      neighbours, rescored per list, fusions replayed], selection in Python) -> fetch

The filter runs inside each candidate statement, never after it, so LIMIT rows come back whenever
that many documents match. PRF interpolation: `before` takes feedback from the fused first pass,
`after` lets each side take its own, `both` takes it from the fused first pass and fuses the
second-pass result with the first-pass one.
"""

from __future__ import annotations

from dataclasses import replace

from psycopg import sql

from sparsesql.analysis import analyze, stems
from sparsesql.db.catalog import CollectionInfo
from sparsesql.lang.check_search import DenseSignal, Fusion, Signal, SparseSignal
from sparsesql.lang.check_select import CheckedSelect
from sparsesql.plan import facets
from sparsesql.plan import stages as st
from sparsesql.plan.sql import filter_ids_sql, filtered_rows_sql, ranked_rows_sql, rows_by_ids_sql, where_sql
from sparsesql.graph import store as graph
from sparsesql.retrieval import dense, phrase, prf, sparse


def _labels(signals: tuple[Signal, ...]) -> list[str]:
    kinds = [s.label for s in signals]
    return [s.label if kinds.count(s.label) == 1 else f"{s.label}{i + 1}" for i, s in enumerate(signals)]


def _first_pass(q: CheckedSelect, signal: Signal, label: str, where: sql.Composable, bound: dict, k: int, *, exact: bool = False):
    """One signal's first pass: [encode stage], candidates statement, its parameters, and the
    settings it runs under (an HNSW scan's ef_search, at least k; `exact` ignores the index)."""
    info = q.collection
    prefix = f"{label}_"
    if isinstance(signal, DenseSignal):
        ann = signal.ef_search is not None and not exact
        statement = dense.candidates_sql(info, where, prefix, approximate=ann)
        settings = dense.ann_settings(max(signal.ef_search, k), q.where is not None) if ann else {}
        if isinstance(signal.query, str):
            return st.EncodeQuery(label, signal.query, info.settings.dense), statement, {**bound, prefix + "k": k}, settings
        return None, statement, {**bound, **dense.bind(dense.query_vector(info, signal.query), k, prefix)}, settings
    after = _after(q)
    statement = sparse.candidates_sql(info, signal.field, _signal_where(info, signal, where), prefix, idf=signal.idf, after=after is not None,
                                      fields=signal.fields)
    return None, statement, {**bound, **sparse.bind(signal.query, k, prefix, after)}, {}


def _signal_where(info: CollectionInfo, signal: SparseSignal, where: sql.Composable) -> sql.Composable:
    """The search's filter, and the signal's own phrases and exclusions (the search syntax)."""
    if signal.syntax is None:
        return where
    return sql.SQL("({}) AND {}").format(where, phrase.predicate(info, signal.field, signal.syntax))


def _after(q: CheckedSelect) -> tuple[float, int] | None:
    """A seeking page's cursor (score, doc id): its ranking starts after that row."""
    return (q.cursor.after.score, q.cursor.after.doc_id) if q.seek else None


def _from_memory(q: CheckedSelect, signal: Signal, tier: frozenset[str]) -> bool:
    """The memory tier serves sparse signals ("sparse" in `tier`), and dense ones that name no
    HNSW search ("dense"); a filter reaches it as the doc ids it keeps (`_allowed`)."""
    if isinstance(signal, SparseSignal):
        return "sparse" in tier
    return "dense" in tier and signal.ef_search is None


def _allowed(q: CheckedSelect, where: sql.Composable) -> st.Allowed | None:
    return None if q.where is None else st.Allowed(q.where, q.params, filter_ids_sql(q.collection, where))


def _syntax_ids(info: CollectionInfo, signal: SparseSignal) -> st.SyntaxIds | None:
    if signal.syntax is None:
        return None
    statement, keeps = phrase.ids_sql(info, signal.field, signal.syntax)
    words = () if keeps or any(len(t.terms) > 1 for t in signal.syntax.excluded) else tuple(t.terms[0] for t in signal.syntax.excluded)
    return st.SyntaxIds(statement, keeps, signal.syntax.describe(), words)


def _syntax_lines(q: CheckedSelect) -> tuple[str, ...]:
    signals = q.search.signals if q.search else ()
    lines = []
    for s, label in zip(signals, _labels(signals)):
        if isinstance(s, SparseSignal) and s.syntax is not None:
            lines.append(f"syntax: [{label}] {s.syntax.describe()}; its list holds only the documents that meet that, its words scored as a bag")
        if isinstance(s, SparseSignal) and s.fields is not None:
            weights = ", ".join(f"{name} x {w:g}" for name, w in zip(q.collection.settings.text_fields, s.fields) if w > 0)
            lines.append(f"fields: [{label}] BM25F over {weights}, each field normalised by its own length")
    return tuple(lines)


def codes_k(k: int) -> int:
    """How many candidates the dense codes bring for a top k: the best 3k re-scored exactly gave
    the exact top k on 98-100% of held-out queries of the shared sets (tier/dense.py)."""
    return max(3 * k, 100)


def _tier_dense(q: CheckedSelect, label: str, where: sql.Composable, statement: sql.Composed, params: dict, k: int, slot: str | None,
                union: tuple[str, ...] = (), columns: tuple[str, ...] | None = None) -> st.TierDense:
    """A dense first pass from the tier: candidates from the codes, exact scores from the full
    vectors; a DENSE-only search (`columns`) then fetches its rows by id."""
    info = q.collection
    fetch = None
    if columns is not None:
        fetch, statement = rows_by_ids_sql(info, columns), ranked_rows_sql(info, statement, columns)
    return st.TierDense(label, info, k, codes_k(k), fetch, statement, params, slot, union, columns, allowed=_allowed(q, where))


def _candidates(q: CheckedSelect, plan: st.Plan, where: sql.Composable, bound: dict, k: int, tier: frozenset[str]) -> None:
    """Each signal's first pass as a candidate list of its top k. Dense lists from the codes come
    last: they verify the other lists' documents too, so the union of candidates is scored exactly."""
    signals, labels = q.search.signals, _labels(q.search.signals)
    later = []
    for signal, label in zip(signals, labels):
        encode, statement, params, settings = _first_pass(q, signal, label, where, bound, k)
        if encode:
            plan.stages.append(encode)
        slot = f"{label}_vector" if encode else None
        if _from_memory(q, signal, tier) and isinstance(signal, SparseSignal):
            plan.stages.append(
                st.TierCandidates(label, q.collection, signal.field, signal.idf, signal.query, k, statement, params, allowed=_allowed(q, where),
                                  after=_after(q), syntax=_syntax_ids(q.collection, signal), fields=signal.fields)
            )
        elif _from_memory(q, signal, tier):
            others = tuple(x for s, x in zip(signals, labels) if isinstance(s, SparseSignal))
            later.append(_tier_dense(q, label, where, statement, params, k, slot, others))
        else:
            absent = 0.0 if isinstance(signal, SparseSignal) else None
            plan.stages.append(st.Candidates(label, statement, params, k, slot, settings, absent))
    plan.stages.extend(later)


def _feedback(q: CheckedSelect, signal: Signal, label: str, source: str, where: sql.Composable, bound: dict, k: int):
    """The second-pass stage of one side, or None when that side takes no feedback."""
    info, fb = q.collection, q.prf
    prefix = f"{label}_"
    if isinstance(signal, SparseSignal) and fb.sparse is not None:
        params = {**bound, **prf.rm3_bind(signal.query, fb.sparse, k, prefix)}
        statement = prf.rm3_sql(info, signal.field, _signal_where(info, signal, where), prefix, idf=signal.idf)
        terms = prf.rm3_terms_sql(info, signal.field, prefix, idf=signal.idf) if q.highlights and signal.field.kind == "bm25" else None
        return st.Feedback(
            f"{label}_prf", label, fb.sparse.text(), source, fb.depth, statement, params, k, prefix, selective=fb.sparse.selective, absent=0.0,
            terms_statement=terms,
        )
    if isinstance(signal, DenseSignal) and fb.dense is not None:
        v = fb.dense
        params = {**bound, **prf.vector_prf_bind(info, v, k, prefix)}
        slot = f"{label}_vector" if isinstance(signal.query, str) else None
        if slot is None:
            params.update(dense.bind(dense.query_vector(info, signal.query), k, prefix))
        statement = prf.vector_prf_sql(info, where, prefix, v.method)
        return st.Feedback(f"{label}_prf", label, v.text(), source, fb.depth, statement, params, k, prefix, slot)
    return None


def _with_prf(q: CheckedSelect, plan: st.Plan, where: sql.Composable, bound: dict, keep: int, tier: frozenset[str]) -> str:
    """First pass, feedback and fusion stages; returns the label of the final ranked list."""
    signals, labels = q.search.signals, _labels(q.search.signals)
    hybrid = q.search.fusion is not None
    first_k = max(q.search.candidates, q.prf.depth)
    _candidates(q, plan, where, bound, first_k, tier)
    fused_feedback = hybrid and q.prf.interpolate in ("before", "both")
    if fused_feedback:
        plan.stages.append(st.Fuse(labels, q.search.fusion, first_k, out="first"))
    second = []
    for signal, label in zip(signals, labels):
        stage = _feedback(q, signal, label, "first" if fused_feedback else label, where, bound, max(q.search.candidates, keep))
        if stage:
            plan.stages.append(stage)
        second.append(stage.label if stage else label)
    if not hybrid:
        return second[0]
    if q.prf.interpolate == "both":
        plan.stages.append(st.Fuse(second, q.search.fusion, first_k, out="second"))
        f = q.search.fusion
        plan.stages.append(st.Fuse(["second", "first"], Fusion(f.method, f.k, (0.5, 0.5), f.norm), keep))
    else:
        plan.stages.append(st.Fuse(second, q.search.fusion, keep))
    return "final"


def _ranked(q: CheckedSelect, plan: st.Plan, where: sql.Composable, bound: dict, keep: int, tier: frozenset[str]) -> str:
    """Stages that rank at least `keep` documents; returns the label of the final ranked list."""
    if q.prf is not None:
        return _with_prf(q, plan, where, bound, keep, tier)
    signals, labels = q.search.signals, _labels(q.search.signals)
    _candidates(q, plan, where, bound, keep if len(signals) == 1 else max(q.search.candidates, keep), tier)
    if len(signals) == 1:
        return labels[0]
    plan.stages.append(st.Fuse(labels, q.search.fusion, keep))
    return "final"


def _inputs(plan: st.Plan, label: str) -> set[str]:
    """The candidate and feedback lists that list `label` is made from (itself if it is one)."""
    fuses = {s.out: s for s in plan.stages if isinstance(s, st.Fuse)}
    if label not in fuses:
        return {label}
    return set().union(*(_inputs(plan, x) for x in fuses[label].labels))


def _diversify(q: CheckedSelect, plan: st.Plan, source: str, where: sql.Composable, bound: dict) -> st.Diversify:
    """The selection stage; with hops, also how to score the graph's newcomers like the pool."""
    d, info = q.diversify, q.collection
    stage = st.Diversify(source, d.method, d.lam, d.candidates, d.hops, q.limit, graph.vectors_sql(info), bound)
    if d.hops == 0:
        return stage
    stage.expand = graph.expand_sql(info, where)
    stage.expand_filter = graph.walked_filter_sql(info, where) if info.buckets else None
    only = sql.SQL("({}) AND d.doc_id = ANY(%(rescore_ids)s)").format(where)
    wanted = _inputs(plan, source)
    by_label = dict(zip(_labels(q.search.signals), q.search.signals))
    for leaf in plan.stages:
        if not isinstance(leaf, (st.Candidates, st.TierCandidates, st.TierDense, st.Feedback)) or leaf.label not in wanted:
            continue
        if isinstance(leaf, (st.Candidates, st.TierCandidates, st.TierDense)):
            statement = _first_pass(q, by_label[leaf.label], leaf.label, only, bound, 0, exact=True)[1]
            stage.rescore.append(st.Rescore(leaf.label, statement, f"{leaf.label}_", leaf.vector_slot))
        else:
            again = _feedback(q, by_label[leaf.side], leaf.side, leaf.source, only, bound, 0)
            stage.rescore.append(st.Rescore(leaf.label, again.statement, again.prefix, again.vector_slot))
    stage.replay = [s for s in plan.stages if isinstance(s, st.Fuse)]
    return stage


def _with_terms(q: CheckedSelect) -> CheckedSelect:
    """Each sparse signal's query as the {term: weight} it searches with: analysed, tokenized or
    encoded once here, so every stage (first pass, tier, feedback, rescoring) uses the same."""
    if q.search is None:
        return q
    signals = tuple(
        replace(s, query=sparse.query_terms(s.field, s.query, idf=s.idf)) if isinstance(s, SparseSignal) else s
        for s in q.search.signals
    )
    return replace(q, search=replace(q.search, signals=signals))


def _highlighting(q: CheckedSelect) -> st.Highlighting | None:
    """What HIGHLIGHT marks: the stems of the BM25 signals' queries (a precomputed query's own
    terms), or, with none, the dense signal's nearest passages."""
    if not q.highlights or q.search is None:
        return None
    terms: set[str] = set()
    for s in q.search.signals:
        if isinstance(s, SparseSignal) and isinstance(s.query, str) and s.field.kind == "bm25":
            terms.update(analyze(s.query))
        elif isinstance(s, SparseSignal) and isinstance(s.query, dict):
            words = [t.lower() for t in s.query]
            terms.update(words + stems(words))
    dense_signal = next((s for s in q.search.signals if isinstance(s, DenseSignal)), None)
    expands = q.prf is not None and q.prf.sparse is not None and any(isinstance(s, SparseSignal) and s.field.kind == "bm25" for s in q.search.signals)
    return st.Highlighting(q.highlights, frozenset(terms), None if terms else dense_signal, q.collection, expands)


def _facets(q: CheckedSelect, plan: st.Plan, where: sql.Composable, bound: dict, tier: frozenset[str]) -> st.Plan:
    """GROUP BY over the hits (plan/facets.py says which): one statement for every match, or the
    search's stages to its candidates' depth, then the statement over their ids; with the memory
    tier on, the same hits grouped from its filter columns where it holds every column named."""
    info, f = q.collection, q.facets
    page = {"facet_limit": q.page_size, "facet_offset": q.offset}
    plan.facets = f.columns
    signals = q.search.signals if q.search else ()
    memory = st.FacetHits(f, _allowed(q, where)) if tier else None
    if not signals:
        stage = st.Facets(facets.facet_sql(info, f, where), {**bound, **page}, f.columns, memory=memory, collection=info)
    elif len(signals) == 1 and isinstance(signals[0], SparseSignal) and q.prf is None and not q.exclude:
        terms = list(signals[0].query)
        if memory is not None:  # phrases and exclusions are matched in SQL only
            memory = None if signals[0].syntax else st.FacetHits(f, memory.allowed, signals[0].field, tuple(terms))
        matching = facets.matching_sql(info, signals[0].field, _signal_where(info, signals[0], where))
        stage = st.Facets(facets.facet_sql(info, f, matching), {**bound, **page, "facet_terms": terms}, f.columns, memory=memory, collection=info)
    else:
        source = _ranked(q, plan, where, bound, q.limit, tier)
        hits = sql.SQL("d.doc_id = ANY(%(ids)s)")
        memory = st.FacetHits(f) if tier else None
        stage = st.Facets(facets.facet_sql(info, f, hits), page, f.columns, source, q.limit, memory, info)
    plan.stages.append(stage)
    return plan


def build_plan(q: CheckedSelect, *, tier: frozenset[str] = frozenset()) -> st.Plan:
    """The stages that answer a checked SELECT; `tier` names the signals served from memory
    ("sparse", "dense")."""
    highlighting = _highlighting(q)
    q = _with_terms(q)
    info = q.collection
    where, bound = where_sql(info, q.where, q.params, q.where_kinds)
    plan = st.Plan(info.name, [], q.columns, q.with_score, q.defaults, info.extra.get("distributed"), offset=q.offset, size=q.page_size,
                   cursor=q.cursor, ordered_by_score=q.diversify is None and q.boost is None, highlighting=highlighting, hidden=q.hidden,
                   collapse=q.collapse, version=info.version, search_key=q.fingerprint, seek=q.seek,
                   exclude=q.exclude, likes=q.likes, syntax=_syntax_lines(q))
    if q.facets is not None:
        return _facets(q, plan, where, bound, tier)
    if q.search is None:
        plan.stages.append(st.SqlRows(filtered_rows_sql(info, where, q.columns), {**bound, "limit": q.limit}, q.columns, False))
        return plan
    signals, labels = q.search.signals, _labels(q.search.signals)
    single = len(signals) == 1 and q.prf is None and q.diversify is None and q.boost is None and q.rerank is None
    if single and (not _from_memory(q, signals[0], tier) or isinstance(signals[0], DenseSignal)):
        encode, statement, params, settings = _first_pass(q, signals[0], labels[0], where, bound, q.limit)
        if encode:
            plan.stages.append(encode)
        slot = f"{labels[0]}_vector" if encode else None
        if _from_memory(q, signals[0], tier):
            plan.stages.append(_tier_dense(q, labels[0], where, statement, params, q.limit, slot, columns=q.columns))
        else:
            plan.stages.append(st.SqlRows(ranked_rows_sql(info, statement, q.columns), params, q.columns, True, vector_slot=slot, settings=settings))
        return plan
    keep = q.diversify.candidates if q.diversify else q.boost.depth if q.boost else q.rerank.candidates if q.rerank else q.limit
    source = _ranked(q, plan, where, bound, keep, tier)
    if q.diversify:
        plan.stages.append(_diversify(q, plan, source, where, bound))
        source = "chosen"
    if q.boost:
        plan.stages.append(st.Boost(source, q.boost, rows_by_ids_sql(info, ("id", *q.boost.fields)), q.boost.depth, info))
        source = "boosted"
    if q.rerank:
        plan.stages.append(st.Rerank(source, q.rerank, rows_by_ids_sql(info, (q.rerank.field,))))
        source = "reranked"
    plan.stages.append(st.FetchRows(rows_by_ids_sql(info, q.columns), q.columns, source, q.limit))
    return plan
