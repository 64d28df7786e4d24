"""SQL-side sparse retrieval: BM25 computed at query time from raw term frequencies.

Lucene's BM25 (as Anserini and bm25s's "lucene" method):
    idf(t)      = ln(1 + (N - df + 0.5) / (df + 0.5))
    score(d, q) = sum over query terms t of  w_q(t) * idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))
N and avgdl come from the catalog row and df from the vocabulary, all kept exact by ingest, so a
score is never computed from stale statistics. Only the posting blocks of the query's terms are
read (the posting table's primary key starts with term_id), never the whole collection.
A learned field scores by dot product of the query's and the document's weights; its
inference-free mode (`idf`) weights each query token by the same idf over the field's df, as in
Geng et al., "Towards Competitive Search Relevance for Inference-Free Learned Sparse Retrievers".
Every field has its own vocabulary and posting tables (`CollectionInfo.field_table`).
On a distributed collection the postings join the documents on their shard too, and the
grouping includes it: Citus then runs the whole statement on every shard (a document's
postings are all on its shard, so each shard's top k is exact) and merges the shards' top k.
Each document's terms are summed in term-id order: floating-point addition is not associative,
and without the order the last bits of a score (and so the order of exact ties) would depend on
the join order the planner picked, which differs between custom and generic plans.
"""

from __future__ import annotations

from collections import Counter

from psycopg import sql

from sparsesql.analysis import analyze
from sparsesql.db.catalog import CollectionInfo, SparseField


def query_terms(field: SparseField, query: str | dict[str, float], *, idf: bool = False) -> dict[str, float]:
    """Query term weights: a mapping as given; text analysed (BM25), tokenized by the field's
    model (inference-free: each occurrence counts once, the idf comes in SQL or the tier) or
    encoded by it (full). A repeated term counts once per occurrence."""
    if isinstance(query, dict):
        return dict(query)
    if field.bm25:
        return {t: float(n) for t, n in Counter(analyze(query)).items()}
    from sparsesql.encoders.sparse import load_sparse_encoder

    encoder = load_sparse_encoder(field.model)
    if idf:
        return {t: float(n) for t, n in Counter(encoder.tokens(query)).items()}
    return encoder.encode([query])[0]


def query_cte(info: CollectionInfo, field: SparseField, prefix: str) -> sql.Composed:
    """`(term_id, w)` of the query's terms found in the vocabulary; binds <prefix>terms, <prefix>weights."""
    return sql.SQL(
        "SELECT v.term_id, x.w FROM unnest({terms}::text[], {weights}::float8[]) AS x(term, w) "
        "JOIN {vocab} AS v ON v.term = x.term"
    ).format(
        terms=sql.Placeholder(prefix + "terms"), weights=sql.Placeholder(prefix + "weights"), vocab=info.field_table(field, "vocab")
    )


def candidates_sql(info: CollectionInfo, field: SparseField, where: sql.Composable, prefix: str, *, idf: bool = False,
                   after: bool = False, fields: tuple[float, ...] | None = None) -> sql.Composed:
    """Top-k documents by sparse score; binds %(<prefix>terms)s, %(<prefix>weights)s, %(<prefix>k)s.
    With `after`, only documents ranking after a cursor's row in the order (score descending, doc
    id): after its document's score now, or while that document is no match, after the score the
    cursor carries; binds %(<prefix>after_score)s and %(<prefix>after_doc)s."""
    ctes = sql.SQL("WITH qw AS ({}), ").format(query_cte(info, field, prefix))
    if not after:
        return score_sql(info, field, ctes, where, prefix, idf=idf, fields=fields)
    score, doc = sql.Placeholder(prefix + "after_score"), sql.Placeholder(prefix + "after_doc")
    return sql.SQL(
        "WITH scored AS ({}), at AS (SELECT coalesce((SELECT s.score FROM scored AS s WHERE s.doc_id = {doc}), {score}) AS score) "
        "SELECT r.doc_id, r.score FROM scored AS r CROSS JOIN at WHERE r.score < at.score OR (r.score = at.score AND r.doc_id > {doc}) "
        "ORDER BY r.score DESC, r.doc_id LIMIT {k}"
    ).format(score_sql(info, field, ctes, where, prefix, idf=idf, limit=False, fields=fields), score=score, doc=doc, k=sql.Placeholder(prefix + "k"))


def idf_sql(field: SparseField, df: sql.Composable, n: sql.Composable, *, idf: bool = False) -> sql.Composable:
    """A term's share of the score per unit of query weight: Lucene's BM25 idf (BM25, and a
    learned field's inference-free queries), or 1 (learned weights carry their own importance)."""
    if field.bm25 or idf:
        return sql.SQL("ln(1 + ({n} - {df} + 0.5) / ({df} + 0.5))").format(n=n, df=df)
    return sql.SQL("1.0")


def bm25f_tf(info: CollectionInfo, fields: tuple[float, ...]) -> sql.Composable:
    """BM25F's pseudo term frequency of posting `p` (term `q`, document `d`): each text field's
    count of the term, weighted and normalised by that field's length over its average, summed
    (Robertson and Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond", 2009,
    section 3.7, with one b for every field). One text field: the posting's tf over the
    document's length, as BM25 normalises it."""
    b = sql.Literal(info.settings.b)
    if len(fields) == 1:
        return sql.SQL("{w} * p.tf / (1 - {b} + {b} * d.doc_len / s.avgdl)").format(w=sql.Literal(fields[0]), b=b)
    width = len(fields)
    parts = [
        sql.SQL("CASE WHEN d.field_tfs[k.at * {n} + {f}] = 0 THEN 0 ELSE {w} * d.field_tfs[k.at * {n} + {f}] / "
                "(1 - {b} + {b} * d.field_lens[{f}] / (s.fl[{f}]::float8 / greatest(s.n, 1))) END").format(
            n=sql.Literal(width), f=sql.Literal(i + 1), w=sql.Literal(w), b=b)
        for i, w in enumerate(fields) if w > 0
    ]
    return sql.SQL(" + ").join(parts)


def score_sql(info: CollectionInfo, field: SparseField, ctes: sql.Composable, where: sql.Composable, prefix: str, *, idf: bool = False,
              limit: bool = True, fields: tuple[float, ...] | None = None) -> sql.Composed:
    """Score documents against `qw(term_id, w)`, defined by `ctes` (which ends with a comma); the
    top k, or (`limit` False) every document that scores, in no order. With `fields`, BM25F:
    the term frequency `bm25f_tf` saturated as BM25 saturates tf, tf / (k1 + tf)."""
    k = sql.Placeholder(prefix + "k")
    at = sql.SQL("")
    if fields is not None:
        score = sql.SQL("sum(q.w * {idf} * t.tf / ({k1} + t.tf) ORDER BY q.term_id)").format(
            idf=idf_sql(field, sql.SQL("q.df"), sql.SQL("s.n")), k1=sql.Literal(info.settings.k1))
        at = sql.SQL(" CROSS JOIN LATERAL (SELECT {}) AS t(tf)").format(bm25f_tf(info, fields))
        where = sql.SQL("({}) AND t.tf > 0").format(where)  # a match in unweighted fields only is no match
        if len(fields) > 1:
            at = sql.SQL(" CROSS JOIN LATERAL (SELECT array_position(d.{}, q.term_id) - 1) AS k(at){}").format(field.column("term_ids"), at)
    elif field.bm25:
        score = sql.SQL(
            "sum(q.w * {idf} * p.tf / (p.tf + {k1} * (1 - {b} + {b} * d.doc_len / s.avgdl)) ORDER BY q.term_id)"
        ).format(
            idf=idf_sql(field, sql.SQL("q.df"), sql.SQL("s.n")),
            k1=sql.Literal(info.settings.k1),
            b=sql.Literal(info.settings.b),
        )
    elif idf:
        score = sql.SQL("sum(q.w * {idf} * p.tf ORDER BY q.term_id)").format(idf=idf_sql(field, sql.SQL("q.df"), sql.SQL("s.n"), idf=True))
    else:
        score = sql.SQL("sum(q.w * p.tf ORDER BY q.term_id)")
    return sql.SQL(
        "{ctes}q AS (SELECT v.term_id, v.df, qw.w FROM qw JOIN {vocab} AS v ON v.term_id = qw.term_id WHERE v.df > 0), "
        "s AS (SELECT n_docs::float8 AS n, sum_len::float8 / greatest(n_docs, 1) AS avgdl, field_len AS fl "
        "FROM sparsesql.collections WHERE name = {name}) "
        "SELECT d.doc_id, {score} AS score FROM q JOIN {postings} AS b ON b.term_id = q.term_id "
        "CROSS JOIN LATERAL unnest(b.doc_ids, b.tfs) AS p(doc_id, tf) "
        "JOIN {docs} AS d ON d.doc_id = p.doc_id{shard} CROSS JOIN s{at} WHERE {where} "
        "GROUP BY {group}d.doc_id{order}"
    ).format(
        ctes=ctes,
        order=sql.SQL(" ORDER BY score DESC, d.doc_id LIMIT {}").format(k) if limit else sql.SQL(""),
        vocab=info.field_table(field, "vocab"),
        postings=info.field_table(field, "postings"),
        docs=info.table("docs"),
        name=sql.Literal(info.name),
        score=score,
        where=where,
        shard=sql.SQL(" AND d.shard = b.shard" if info.buckets else ""),
        group=sql.SQL("d.shard, " if info.buckets else ""),
        at=at,
    )


def bind(terms: dict[str, float], k: int, prefix: str, after: tuple[float, int] | None = None) -> dict:
    values = {prefix + "terms": list(terms), prefix + "weights": list(terms.values()), prefix + "k": k}
    if after is not None:
        values.update({prefix + "after_score": after[0], prefix + "after_doc": after[1]})
    return values


def tier_stats_sql(info: CollectionInfo, field: SparseField) -> sql.Composed:
    """In one round trip for the memory tier: the collection's identity (creation time) and write
    version, N, total length, each text field's total length, and each query term's (term, id, df) (binds %(name)s, %(terms)s);
    a collection without the terms still gives its one row."""
    return sql.SQL(
        "SELECT c.created_at::text, c.version, c.n_docs, c.sum_len, c.field_len, v.term, v.term_id, v.df FROM sparsesql.collections AS c "
        "LEFT JOIN {vocab} AS v ON v.term = ANY(%(terms)s) WHERE c.name = %(name)s"
    ).format(vocab=info.field_table(field, "vocab"))
