"""Pseudo-relevance feedback: the second-pass query of each side, built in SQL from the
first pass's top documents, so feedback costs one round trip per side.

Sparse, RM3 (Lavrenko and Croft's relevance model, as Anserini applies it to BM25): the
feedback documents' term distributions P(w|d) = tf / sum tf, weighted by P(d|q) (their
first-pass scores, normalised), summed; the `terms` heaviest form the expansion. The new query is
    weight * original + (1 - weight) * |original| * expansion / |expansion|
(|x| the sum of weights), so weight 1.0 is exactly the original query, scores included.
As in Anserini, terms found in more than `max_df` of the documents never become expansion terms:
they carry no evidence about relevance and, once weighted by the feedback model, drown it.
Term statistics come from the documents' stored term arrays and the vocabulary, never from
re-analysing text.

Dense, Vector-PRF (Li et al., "Improving Query Representations for Dense Retrieval with Pseudo
Relevance Feedback"): Average, the mean of the query and the feedback vectors; Rocchio,
alpha * query + beta * mean(feedback). Scored by cosine, so only the direction matters.
"""

from __future__ import annotations

import numpy as np
from pgvector import Vector
from psycopg import sql

from sparsesql.db.catalog import CollectionInfo, SparseField
from sparsesql.lang.check_search import Rm3, VectorPrf
from sparsesql.retrieval import dense, sparse


def feedback(ranked: list[tuple[int, float]], depth: int) -> tuple[list[int], list[float]]:
    """The top `depth` documents and their weights P(d|q): scores normalised to sum 1 when all
    are positive (BM25, cosine, RRF, min-max), uniform otherwise (z-scores can be negative)."""
    top = ranked[:depth]
    ids = [d for d, _ in top]
    scores = np.array([s for _, s in top], dtype=np.float64)
    if scores.size and scores.min() > 0:
        weights = scores / scores.sum()
    else:
        weights = np.full(len(top), 1.0 / max(len(top), 1))
    return ids, weights.tolist()


def flatness(scores: list[float]) -> float | None:
    """The normalised entropy of the positive scores (1: all alike, near 0: one stands out), or
    None for fewer than two: too few to say."""
    s = np.array([x for x in scores if x > 0], dtype=np.float64)
    if s.size < 2:
        return None
    p = s / s.sum()
    return float(-(p * np.log(p)).sum() / np.log(s.size))


def selective_weight(scores: list[float], weight: float) -> float:
    """The original query's weight for one query under selective expansion.

    The expansion keeps (1 - weight) x H^2 of the query's mass, H being the normalised entropy of
    the side's own first-pass scores over the feedback depth (a score-distribution predictor of
    how much the first pass already knows, in the spirit of Cronen-Townsend et al.'s selective
    query expansion): a flat top, where many documents are about equally good, gets nearly the
    full expansion; a top that stands out (an exact match of a rare term) gets almost none.
    """
    h = flatness(scores)
    return 1.0 if h is None else 1.0 - (1.0 - weight) * h * h


def _relevance(info: CollectionInfo, field: SparseField, prefix: str, *, idf: bool) -> sql.Composed:
    """The CTEs up to `rel`, the expansion terms (term_id, rw, idf) the feedback documents give;
    binds <prefix> fb_ids, fb_weights, rm3_terms, rm3_max_df, rm3_min_docs."""
    names = ("fb_ids", "fb_weights", "rm3_terms", "rm3_max_df", "rm3_min_docs")
    p = {n: sql.Placeholder(prefix + n) for n in names}
    weight = sparse.idf_sql(field, sql.SQL("v.df"), sql.SQL("(SELECT n FROM st)"), idf=idf)
    return sql.SQL(
        "WITH st AS (SELECT n_docs::float8 AS n FROM sparsesql.collections WHERE name = {name}), "
        "fb AS (SELECT * FROM unnest({fb_ids}::bigint[], {fb_weights}::float8[]) AS f(doc_id, w)), "
        "dist AS (SELECT p.term_id, fb.w * p.tf / sum(p.tf) OVER (PARTITION BY fb.doc_id) AS pw "
        "FROM fb JOIN {docs} AS d ON d.doc_id = fb.doc_id CROSS JOIN LATERAL unnest(d.{terms}, d.{weights}) AS p(term_id, tf)), "
        "rel AS (SELECT dist.term_id, sum(pw) AS rw, {idf} AS idf FROM dist JOIN {vocab} AS v ON v.term_id = dist.term_id "
        "WHERE v.df <= {max_df} * (SELECT n FROM st) "
        "GROUP BY dist.term_id, v.df HAVING count(*) >= {min_docs} ORDER BY rw DESC, dist.term_id LIMIT {n})"
    ).format(
        name=sql.Literal(info.name),
        fb_ids=p["fb_ids"],
        fb_weights=p["fb_weights"],
        docs=info.table("docs"),
        terms=field.column("term_ids"),
        weights=field.column("weights"),
        idf=weight,
        n=p["rm3_terms"],
        vocab=info.field_table(field, "vocab"),
        max_df=p["rm3_max_df"],
        min_docs=p["rm3_min_docs"],
    )


def rm3_sql(info: CollectionInfo, field: SparseField, where: sql.Composable, prefix: str, *, idf: bool = False) -> sql.Composed:
    """Expanded sparse query in one statement; binds <prefix> terms, weights, k, fb_ids,
    fb_weights, rm3_terms, rm3_weight, rm3_max_df, rm3_min_docs."""
    weight = sparse.idf_sql(field, sql.SQL("v.df"), sql.SQL("(SELECT n FROM st)"), idf=idf)
    ctes = _relevance(info, field, prefix, idf=idf) + sql.SQL(
        ", orig AS ({original}), "
        "mass AS (SELECT sum(orig.w * {idf}) AS m FROM orig JOIN {vocab} AS v ON v.term_id = orig.term_id), "
        "qw AS (SELECT term_id, sum(w) AS w FROM ("
        "SELECT term_id, {weight} * w AS w FROM orig UNION ALL "
        "SELECT term_id, (1 - {weight}) * (SELECT m FROM mass) * rw / sum(rw * idf) OVER () FROM rel"
        ") AS mix GROUP BY term_id HAVING sum(w) > 0), "
    ).format(
        idf=weight,
        vocab=info.field_table(field, "vocab"),
        original=sparse.query_cte(info, field, prefix),
        weight=sql.Placeholder(prefix + "rm3_weight"),
    )
    return sparse.score_sql(info, field, ctes, where, prefix, idf=idf)


def rm3_terms_sql(info: CollectionInfo, field: SparseField, prefix: str, *, idf: bool = False) -> sql.Composed:
    """The expansion terms themselves, heaviest first, with the same parameters as rm3_sql (for
    HIGHLIGHT, which marks them apart from the query's own)."""
    return _relevance(info, field, prefix, idf=idf) + sql.SQL(" SELECT v.term FROM rel JOIN {} AS v ON v.term_id = rel.term_id ORDER BY rel.rw DESC").format(
        info.field_table(field, "vocab")
    )


def rm3_bind(terms: dict[str, float], rm3: Rm3, k: int, prefix: str) -> dict:
    params = sparse.bind(terms, k, prefix)
    return {
        **params,
        prefix + "rm3_terms": rm3.terms,
        prefix + "rm3_weight": rm3.weight,
        prefix + "rm3_max_df": rm3.max_df,
        prefix + "rm3_min_docs": rm3.min_docs,
    }


def vector_prf_sql(info: CollectionInfo, where: sql.Composable, prefix: str, method: str) -> sql.Composed:
    """Dense search with the feedback-moved query vector; binds <prefix> vector, k, fb_ids,
    alpha, beta (alpha and beta as vectors filled with the scalar: pgvector multiplies
    element-wise). The vectors are summed in doc id order, so the last bits do not depend on
    the scan; the ordered subquery also makes Citus bring them to the coordinator instead of
    combining per-shard partial averages, which fails for pgvector's avg when a shard has none."""
    p = {n: sql.Placeholder(prefix + n) for n in ("vector", "fb_ids", "alpha", "beta")}
    ctes = sql.SQL(
        "WITH fb AS (SELECT {agg}(embedding) AS v FROM (SELECT embedding FROM {dense} WHERE doc_id = ANY({fb_ids}) "
        "ORDER BY doc_id LIMIT cardinality({fb_ids})) AS f), "
        "qv AS (SELECT CASE WHEN fb.v IS NULL THEN {vector}::vector "
        "ELSE {vector}::vector * {alpha}::vector + fb.v * {beta}::vector END AS v FROM fb) "
    ).format(
        agg=sql.SQL("sum" if method == "average" else "avg"),
        dense=info.table("dense"),
        fb_ids=p["fb_ids"],
        vector=p["vector"],
        alpha=p["alpha"],
        beta=p["beta"],
    )
    return dense.candidates_sql(info, where, prefix, ctes=ctes, query=sql.SQL("(SELECT v FROM qv)"))


def vector_prf_bind(info: CollectionInfo, prf: VectorPrf, k: int, prefix: str) -> dict:
    dim = info.settings.dim
    alpha, beta = (1.0, 1.0) if prf.method == "average" else (prf.alpha, prf.beta)
    return {
        prefix + "k": k,
        prefix + "alpha": Vector(np.full(dim, alpha, dtype=np.float32)),
        prefix + "beta": Vector(np.full(dim, beta, dtype=np.float32)),
    }
